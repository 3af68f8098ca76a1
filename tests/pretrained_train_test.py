"""Training from pretrained checkpoints through the CLI: continued pretraining and classifiers, with LoRA.

The checkpoints are tiny random Transformers models written by Transformers
itself (`klm.pretrained.testing`), so nothing is downloaded.
"""

import json
import os
import signal
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest

pytest.importorskip("transformers")

from klm.pretrained import testing  # noqa: E402

BACKEND = keras.backend.backend()
PRETRAIN = [
    "--batch-size",
    "4",
    "--seq-len",
    "16",
    "--optimizer",
    "adamw",
    "--lr",
    "1e-3",
    "--schedule",
    "constant",
    "--log-every",
    "4",
    "--verbose",
    "lines",
    "--valid-fraction",
    "0.1",
    "--batching",
    "shuffled",
]


def klm(args, env=None):
    full_env = dict(os.environ, KERAS_BACKEND=BACKEND, **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "klm.cli.main", *args], env=full_env, capture_output=True, text=True, timeout=900
    )


def corpus(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text(testing.CORPUS * 3, encoding="utf-8")
    return str(path)


def labelled(tmp_path):
    rng = np.random.default_rng(0)
    words = testing.CORPUS.split()[:40]
    path = tmp_path / "labels.txt"
    with open(path, "w") as f:
        for i in range(64):
            label = i % 2
            marker = ["good", "fine"] if label else ["bad", "poor"]
            f.write(f"{label} {' '.join(rng.choice(words, 4))} {' '.join(marker)}\n")
    return str(path)


def weights(path):
    import h5py

    with zipfile.ZipFile(path) as archive, archive.open("model.weights.h5") as f, h5py.File(f, "r") as h5:
        out = {}
        h5.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


@pytest.mark.slow
def test_continued_pretraining_with_lora_resumes_exactly(tmp_path):
    """`--init-from` a Transformers GPT-2 with LoRA; a run killed mid-backup ends equal to an uninterrupted one."""
    checkpoint = testing.cached_hf_checkpoint("gpt2")
    text = corpus(tmp_path)
    args = [
        *PRETRAIN,
        "--init-from",
        checkpoint,
        "--data",
        text,
        "--max-steps",
        "14",
        "--backup-every",
        "3",
        "--lora-rank",
        "2",
        "--dropout",
        "0.1",
    ]
    straight = klm(["pretrain", *args, "--run-dir", str(tmp_path / "a")])
    assert straight.returncode == 0, straight.stderr[-3000:]
    killed = klm(["pretrain", *args, "--run-dir", str(tmp_path / "b")], env={"KLM_FAULT_POINT": "backup-write:3"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    resumed = klm(["pretrain", *args, "--run-dir", str(tmp_path / "b")])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from the backup" in resumed.stderr
    wa, wb = weights(tmp_path / "a" / "last.keras"), weights(tmp_path / "b" / "last.keras")
    assert wa.keys() == wb.keys()
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert config["pretrained"]["architecture"] == "GPT2CausalLM" and config["init_from"] == checkpoint
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["lora"]["rank"] == 2 and summary["lora"]["trainable"] < summary["lora"]["total"] / 5
    # The run is a checkpoint for every command.
    generated = klm(
        ["generate", str(tmp_path / "a"), "--prompt", "the", "--max-new-tokens", "4", "--sampler", "greedy"]
    )
    assert generated.returncode == 0, generated.stderr[-2000:]
    # Its SavedModel export (`klm export RUN OUT`) is tested in tests/pretrained_export_test.py.


@pytest.mark.slow
@pytest.mark.parametrize("lora", [False, True])
def test_classifier_on_a_pretrained_llama(tmp_path, lora):
    checkpoint = testing.cached_hf_checkpoint("llama")
    data = labelled(tmp_path)
    run = tmp_path / "clf"
    extra = ["--lora-rank", "4"] if lora else []
    result = klm(
        [
            "finetune",
            "--from",
            checkpoint,
            "--train",
            data,
            "--valid",
            data,
            "--run-dir",
            str(run),
            "--batch-size",
            "8",
            "--seq-len",
            "24",
            "--epochs",
            "2",
            "--verbose",
            "lines",
            *extra,
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["task"] == "classifier" and 0 <= summary["valid_accuracy"] <= 1
    if lora:
        assert summary["lora"]["trainable"] < summary["lora"]["total"] / 5
    evaluated = klm(["evaluate", str(run), "--data", data, "--json"])
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert "accuracy" in json.loads(evaluated.stdout[evaluated.stdout.index("{") :])
    if lora:
        # The SavedModel holds the merged weights; export verifies it against the Keras model (<= 1e-4).
        exported = klm(["export", str(run), str(tmp_path / "serving")])
        assert exported.returncode == 0, exported.stderr[-3000:]
        assert (tmp_path / "serving" / "1" / "saved_model.pb").exists()


def test_finetune_from_a_checkpoint_refuses_tokenizer_options(tmp_path):
    result = klm(
        [
            "finetune",
            "--from",
            testing.cached_hf_checkpoint("gpt2"),
            "--train",
            labelled(tmp_path),
            "--tokenizer",
            "word",
            "--run-dir",
            str(tmp_path / "x"),
        ]
    )
    assert result.returncode == 2
    assert "brings its own tokenizer" in result.stderr
    assert not (tmp_path / "x").exists()
