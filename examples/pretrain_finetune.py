"""Walkthrough: pretrain a language model, fine-tune a sentiment classifier, evaluate.

    KERAS_BACKEND=torch python examples/pretrain_finetune.py [OUT_DIR]

1. pretrain the `seed` model on WikiText-2 (valid.txt as training text,
   test.txt held out) from ../shared/data;
2. fine-tune a classifier on SST-2 from that checkpoint, and train the same
   classifier from scratch as a baseline;
3. evaluate both on the SST-2 test set (accuracy, macro-F1, confusion matrix).

The same steps on the command line:

    klm pretrain --data wikitext-2/valid.txt --test wikitext-2/test.txt --valid-fraction 0.1 --run-dir runs/lm
    klm finetune --from runs/lm --train sst2/train.txt --valid sst2/dev.txt --test sst2/test.txt --run-dir runs/sst2
    klm evaluate runs/sst2 --data sst2/test.txt

`KLM_EXAMPLE_TINY=1` runs every step for a few batches on small synthetic
data instead (CI runs it that way).
"""

import os
import sys
import tempfile
from pathlib import Path

from klm import backend

backend.use_backend()

from klm.config import FinetuneConfig, PretrainConfig  # noqa: E402
from klm.evaluate import evaluate_run, format_result  # noqa: E402
from klm.finetune import finetune  # noqa: E402
from klm.train import pretrain  # noqa: E402

TINY = os.environ.get("KLM_EXAMPLE_TINY") == "1"
out = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="klm-walkthrough-"))
shared = Path(__file__).resolve().parents[2] / "shared" / "data"


def tiny_data(folder):
    """Small synthetic corpus and labelled sentences (positive words vs negative words)."""
    import random

    rng = random.Random(0)
    words = "the a film story actor plot scene and of it was is".split()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corpus.txt").write_text(
        "".join(" ".join(rng.choice(words) for _ in range(10)) + " .\n" for _ in range(300))
    )
    lines = []
    for i in range(200):
        label = i % 2
        mood = rng.choice(["great", "good", "fine"] if label else ["bad", "dull", "poor"])
        lines.append(f"{label} {' '.join(rng.choice(words) for _ in range(5))} {mood}\n")
    (folder / "labels.txt").write_text("".join(lines))
    return (
        folder / "corpus.txt",
        folder / "corpus.txt",
        folder / "labels.txt",
        folder / "labels.txt",
        folder / "labels.txt",
    )


if TINY or not shared.exists():
    corpus, held_out, train, dev, test = tiny_data(out / "data")
    small = dict(preset="tiny", batch_size=8, seq_len=16, max_steps=20, log_every=10)
    head = dict(epochs=2, batch_size=16, seq_len=16, log_every=10)
else:
    corpus, held_out = shared / "wikitext-2" / "valid.txt", shared / "wikitext-2" / "test.txt"
    train, dev, test = (shared / "sst2" / f"{name}.txt" for name in ("train", "dev", "test"))
    small = dict(preset="seed")
    head = dict(epochs=3, batch_size=32, seq_len=64)

# 1. Pretraining: maximise sum_t log P(w_t | w_<t).
lm_summary = pretrain(
    PretrainConfig(
        data=str(corpus), test=str(held_out), valid_fraction=0.1, run_dir=str(out / "lm"), verbose="lines", **small
    )
)
print("pretrained:", lm_summary["test_ppl"], "test perplexity")

# 2. Fine-tuning: maximise sum_i log P(y_i | x_i), from the pretrained backbone and from scratch.
for name, source in (("finetuned", str(out / "lm")), ("scratch", "none")):
    finetune(
        FinetuneConfig(
            from_run=source,
            train=str(train),
            valid=str(dev),
            test=str(test),
            run_dir=str(out / name),
            preset=small.get("preset", "seed"),
            verbose="lines",
            **head,
        )
    )

# 3. Evaluation.
for name in ("finetuned", "scratch"):
    print(f"\n== {name} ==")
    print(format_result(evaluate_run(out / name, test)))
