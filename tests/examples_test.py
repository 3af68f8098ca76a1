"""The examples run end to end at a tiny size (KLM_EXAMPLE_TINY=1)."""

import keras
import pytest
from cli_test import make_corpus
from conftest import REPO, run_in_backend

BACKEND = keras.backend.backend()


def test_reference_tutorial(tmp_path):
    train = make_corpus(tmp_path / "train.txt", lines=300)
    held_out = make_corpus(tmp_path / "test.txt", lines=100, seed=1)
    proc = run_in_backend(
        BACKEND, [str(REPO / "examples" / "reference_tutorial.py"), train, held_out], env={"KLM_EXAMPLE_TINY": "1"}
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "| epoch   1 |" in proc.stdout
    assert "| End of training | test loss" in proc.stdout


@pytest.mark.skipif(BACKEND != "torch", reason="a library walkthrough: CI runs it once, in the torch suite")
def test_pretrain_finetune_walkthrough(tmp_path):
    proc = run_in_backend(
        BACKEND, [str(REPO / "examples" / "pretrain_finetune.py"), str(tmp_path)], env={"KLM_EXAMPLE_TINY": "1"}
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert proc.stdout.count("accuracy:") == 2
    for name in ("lm", "finetuned", "scratch"):
        assert (tmp_path / name / "summary.json").exists()
