"""`klm export SOURCE OUT --format litert`: `OUT/model.tflite` + the tokenizer, checked in the LiteRT interpreter alone.

Keras's `model.export(format="litert")` converts the model with TensorFlow
Lite's converter, so the export runs on the TensorFlow backend (`--backend
tensorflow`; `.keras` files and pretrained checkpoints load on any backend).
Shapes are fixed: `token_ids` and `padding_mask` are int32 `(batch,
seq_len)` (`--litert-shape`, default 1 x the run's `seq_len`, or 1 x 128); the
first output is the LM's logits `(batch, seq_len, vocab)` (a classifier's
probabilities). A fresh process that can import `ai_edge_litert`, NumPy and
`tokenizers` only runs it on two batches (one padded); outputs must equal
the Keras model's to `tolerance` (1e-4 in float32).
"""

import os

import numpy as np

from klm.errors import ConfigError
from klm.export.onnx_format import TOLERANCE, inference_model, input_signature, verify_runtime
from klm.export.publish import file_sizes, require_runtime, staged_output
from klm.export.tokenizer_files import write_tokenizer

DEFAULT_SEQUENCE_LENGTH = 128


def fixed_batches(vocabulary_size, batch, length, pad_id=0, seed=0):
    """Two batches of the model's one shape, the second with padding at the end of its rows."""
    rng = np.random.default_rng(seed)
    batches = []
    for padded in (0, max(1, length // 3)):
        token_ids = rng.integers(0, vocabulary_size, size=(batch, length)).astype("int32")
        padding_mask = np.ones((batch, length), "int32")
        if padded:
            padding_mask[:, length - padded :] = 0
            token_ids[:, length - padded :] = pad_id
        batches.append({"token_ids": token_ids, "padding_mask": padding_mask})
    return batches


def export_litert(checkpoint, out_dir, verify=True, tolerance=TOLERANCE, batch_size=1, sequence_length=None):
    """Writes `checkpoint` as `out_dir/model.tflite` + tokenizer, checked in LiteRT before `out_dir` appears.

    Args:
        checkpoint: a `klm.pretrained.Checkpoint`.
        out_dir: the folder to create (must not exist, or be empty).
        verify: run the LiteRT interpreter check (recommended).
        tolerance: largest accepted absolute difference from Keras.
        batch_size, sequence_length: the model's fixed input shape
            (`sequence_length=None`: the run's `seq_len`, else 128).

    Returns:
        A dict like `klm.export.onnx_format.export_onnx`'s.
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        raise ConfigError(
            "The LiteRT export converts a TensorFlow graph: run it with --backend tensorflow (the run or checkpoint "
            f"loads the same on every backend). Received: --backend={keras.backend.backend()}"
        )
    require_runtime("ai_edge_litert", "litert", "Checking the LiteRT export")
    model = inference_model(checkpoint)
    if sequence_length is None:
        sequence_length = int(checkpoint.config.get("seq_len", DEFAULT_SEQUENCE_LENGTH))
    vocabulary_size = int(checkpoint.model.backbone.vocabulary_size)
    pad_id = int(getattr(checkpoint.tokenizer, "pad_token_id", 0) or 0)
    batches = fixed_batches(vocabulary_size, batch_size, sequence_length, pad_id)
    with staged_output(out_dir) as temp:
        path = os.path.join(temp, "model.tflite")
        model.export(path, format="litert", verbose=False, input_signature=input_signature(batch_size, sequence_length))
        tokenizer = write_tokenizer(checkpoint, temp)
        result = {
            "path": os.path.abspath(out_dir),
            "format": "litert",
            "backend": "tensorflow",
            "input_shape": [batch_size, sequence_length],
            "verified": False,
        }
        if verify:
            result.update(verify_runtime("litert", path, checkpoint, model, batches, tokenizer, tolerance, temp))
        result["tokenizer"] = {k: v for k, v in tokenizer.items() if k != "tokenizer_json"}
        result["files"] = file_sizes(temp)
    return result
