"""The shared run lifecycle: evaluation every N steps, best checkpoint by step, early stopping, registration."""

import csv
import json
import os
import signal
import subprocess
import sys

import keras
import pytest
from resume_test import TINY, klm, make_corpus

BACKEND = keras.backend.backend()


def rows(run):
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_eval_every_validates_at_those_steps_and_picks_best_by_step(tmp_path):
    corpus = make_corpus(tmp_path / "c.txt", lines=200)
    run = tmp_path / "run"
    result = klm(
        [
            "pretrain",
            "--data",
            corpus,
            "--run-dir",
            str(run),
            *TINY,
            "--max-steps",
            "12",
            "--eval-every",
            "4",
            "--valid-fraction",
            "0.1",
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    val_steps = [int(r["step"]) for r in rows(run) if r["val_loss"]]
    assert val_steps == [4, 8, 12]
    losses = {int(r["step"]): float(r["val_loss"]) for r in rows(run) if r["val_loss"]}
    best = json.loads((run / "best.json").read_text())
    assert best["step"] == min(losses, key=losses.get) and best["value"] == pytest.approx(min(losses.values()))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best_step"] == best["step"]
    for key in ("train_tokens_per_second", "compile_seconds", "eval_seconds", "wall_seconds"):
        assert summary[key] >= 0
    assert summary["eval_seconds"] > 0 and summary["wall_seconds"] > summary["train_seconds"] + summary["eval_seconds"]


@pytest.mark.slow
def test_early_stopping_stops_where_it_would_have_across_a_kill(tmp_path):
    corpus = make_corpus(tmp_path / "c.txt", lines=200)
    # A min-delta no change can beat: the first evaluation is the best, and two more without improvement stop the run.
    args = [
        *TINY,
        "--data",
        corpus,
        "--max-steps",
        "40",
        "--eval-every",
        "2",
        "--backup-every",
        "1",
        "--early-stop-patience",
        "2",
        "--early-stop-min-delta",
        "100",
        "--valid-fraction",
        "0.1",
    ]
    straight = klm(["pretrain", "--run-dir", str(tmp_path / "a"), *args])
    assert straight.returncode == 0, straight.stderr[-3000:]
    assert "early stopping at step 6" in straight.stderr
    killed = klm(["pretrain", "--run-dir", str(tmp_path / "b"), *args], env={"KLM_FAULT_POINT": "eval:3"})
    assert killed.returncode == -signal.SIGKILL
    resumed = klm(["pretrain", "--run-dir", str(tmp_path / "b"), *args])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for run in (tmp_path / "a", tmp_path / "b"):
        summary = json.loads((run / "summary.json").read_text())
        assert summary["stopped_early"] is True and summary["steps"] == 6 and summary["best_step"] == 2
    again = klm(["pretrain", "--run-dir", str(tmp_path / "b"), *args])
    assert again.returncode == 0 and "already stopped early at step 6" in again.stderr


@pytest.mark.smoke
@pytest.mark.heavy
def test_early_stopping_needs_validation_data(tmp_path):
    corpus = make_corpus(tmp_path / "c.txt", lines=60)
    result = klm(["pretrain", "--data", corpus, "--run-dir", str(tmp_path / "r"), *TINY, "--early-stop-patience", "2"])
    assert result.returncode == 2 and "--early-stop-patience needs validation data" in result.stderr
    assert not (tmp_path / "r").exists()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One finished 2-step run and its stderr, shared by the tests below (each import-order test loads it in a
    fresh process)."""
    folder = tmp_path_factory.mktemp("tiny_run")
    corpus = make_corpus(folder / "c.txt", lines=40)
    run = folder / "run"
    result = klm(["pretrain", "--data", corpus, "--run-dir", str(run), *TINY, "--max-steps", "2"])
    assert result.returncode == 0, result.stderr[-2000:]
    return run, result.stderr


@pytest.mark.parametrize("first", ["keras", "keras_hub", "klm.data"])
def test_import_klm_models_is_enough_to_load_a_keras_file(tiny_run, first):
    run = tiny_run[0]
    code = (
        f"import {first}\nimport klm.models\nimport keras\n"
        f"m = keras.saving.load_model({str(run / 'last.keras')!r})\nprint(type(m).__name__)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=dict(os.environ, KERAS_BACKEND=BACKEND),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("KlmCausalLM")


def test_cpu_runs_do_not_print_the_gpu_probe_error(tiny_run):
    if os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/nvidiactl"):
        pytest.skip("an NVIDIA driver is present: the probe lines are not noise here")
    stderr = tiny_run[1]
    assert "cuInit" not in stderr and "Could not find cuda drivers" not in stderr
    assert "klm pretrain: backend=" in stderr  # the rest of stderr still comes through


def test_pretrain_strict_and_scrub_privacy_on_raw_text(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(("the cat sat on the mat .\n" * 30).encode() + b"a broken \xff byte here\n")
    run = tmp_path / "strict"
    result = klm(["pretrain", "--data", str(bad), "--run-dir", str(run), *TINY, "--max-steps", "2", "--strict"])
    assert result.returncode == 2, result.stderr[-2000:]
    assert "bad.txt" in result.stderr and "line 31" in result.stderr and "Traceback" not in result.stderr
    assert not run.exists()
    pii = tmp_path / "pii.txt"
    pii.write_text("the cat wrote to jane.doe@example.com from 10.0.0.7 .\n" * 40)
    run = tmp_path / "scrubbed"
    result = klm(["pretrain", "--data", str(pii), "--run-dir", str(run), *TINY, "--max-steps", "2", "--scrub-privacy"])
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((run / "config.json").read_text())["cleaning_report"]
    assert report["privacy_email"] == 40 and report["privacy_ip"] == 40
    vocabulary = " ".join(p.read_text() for p in (run / "tokenizer").rglob("*") if p.is_file())
    assert "jane" not in vocabulary and "10.0.0.7" not in vocabulary
