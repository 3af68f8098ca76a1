"""The founding document's PyTorch tutorial, on one page, with klm's Python API.

Same model (2 layers, 2 heads, width 200, ffn 200, dropout 0.2, post-LN,
sinusoidal positions, untied decoder), same data handling (`basic_english`
tokens, `batchify` into 20 columns, bptt 35), same optimiser (SGD lr 5.0,
gradient clipping 0.5, learning rate x0.95 per epoch) and the same log lines.

    KERAS_BACKEND=jax python examples/reference_tutorial.py [TRAIN.txt HELD_OUT.txt]

Without arguments it uses WikiText-2 from ../shared/data (valid.txt as
training text, test.txt held out). `KLM_EXAMPLE_TINY=1` shrinks it to a few
steps on the first lines (CI runs it that way).
"""

import math
import os
import sys
from pathlib import Path

from klm import backend

backend.use_backend()  # KERAS_BACKEND or Keras's config; must precede `import keras`

import keras  # noqa: E402
import numpy as np  # noqa: E402

from klm import data  # noqa: E402
from klm.callbacks import StepLogger  # noqa: E402
from klm.data.lm.model_inputs import lm_model_inputs  # noqa: E402
from klm.models import KlmCausalLM, backbone_from_preset  # noqa: E402

TINY = os.environ.get("KLM_EXAMPLE_TINY") == "1"
shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "wikitext-2"
train_path, test_path = sys.argv[1:3] if len(sys.argv) > 2 else (shared / "valid.txt", shared / "test.txt")


def read_lines(path, limit=None):
    with open(path, encoding="utf-8") as f:
        lines = [line for line in f]
    return lines[:limit] if limit else lines


# === Data: basic_english tokens, a vocabulary from the training text ===
keras.utils.set_random_seed(0)
train_lines = read_lines(train_path, 300 if TINY else None)
test_lines = read_lines(test_path, 100 if TINY else None)
tokenizer = data.train_tokenizer("word", train_lines)  # torchtext basic_english + <unk>


def token_stream(lines):
    """One flat stream of ids, lines concatenated like the reference's data_process()."""
    rows = tokenizer.tokenize(lines)  # ragged: a tf.RaggedTensor, or lists on JAX/PyTorch
    rows = rows.to_list() if hasattr(rows, "to_list") else rows
    return np.array([int(i) for row in rows for i in row], dtype="int32")


train_ids = token_stream(train_lines)
test_ids = token_stream(test_lines)
ntokens = int(tokenizer.vocabulary_size())
batch_size, eval_batch_size, bptt = 20, 10, 35
epochs = 1 if TINY else 3
# batchify + get_batch, as (inputs, targets) for the backbone's two inputs; like
# the seed, each epoch ends with a shorter step when the columns do not divide.
train_data = lm_model_inputs(data.lm_dataset(train_ids, bptt, batch_size, mode="contiguous"))
test_data = lm_model_inputs(data.lm_dataset(test_ids, bptt, eval_batch_size, mode="contiguous"))
steps_per_epoch = data.lm_steps_per_epoch(len(train_ids), bptt, batch_size, mode="contiguous")
tokens_per_epoch = data.lm_tokens_per_epoch(len(train_ids), bptt, batch_size, mode="contiguous")

# === Model: TransformerModel(ntokens, 200, 2, 200, 2, dropout=0.2) ===
model = KlmCausalLM(backbone_from_preset("seed", vocabulary_size=ntokens))
print(model)

# === Optimiser: SGD lr 5.0, clip_grad_norm_ 0.5, StepLR(1.0, gamma=0.95) per epoch ===
lr = keras.optimizers.schedules.ExponentialDecay(5.0, decay_steps=steps_per_epoch, decay_rate=0.95, staircase=True)
model.compile(
    optimizer=keras.optimizers.SGD(learning_rate=lr, global_clipnorm=0.5),
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),  # nn.CrossEntropyLoss
    weighted_metrics=[],
)

# === Train: the reference's loop is model.fit; StepLogger prints its lines every 200 batches ===
logger = StepLogger(
    None,
    steps_per_epoch,
    batch_size * bptt,
    every=10 if TINY else 200,
    last_step_tokens=tokens_per_epoch - (steps_per_epoch - 1) * batch_size * bptt,
)
model.fit(train_data, epochs=epochs, validation_data=test_data, callbacks=[logger], verbose=0)

# === Evaluate ===
test_loss = model.evaluate(test_data, verbose=0, return_dict=True)["loss"]
print("=" * 89)
print(f"| End of training | test loss {test_loss:5.2f} | test ppl {math.exp(test_loss):8.2f}")
print("=" * 89)
