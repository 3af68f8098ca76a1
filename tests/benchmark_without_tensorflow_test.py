"""The GPU comparison runs where TensorFlow is not installed (a GPU machine with only PyTorch and JAX).

Each test starts the benchmark in subprocesses that cannot import TensorFlow: Python's path finder is replaced by
one that cannot see it, installed by a `sitecustomize` on PYTHONPATH, so that every process the benchmark starts
inherits it. The tests check that klm's model-building and training path never imported it. The JAX rows run in
the jax suite and the PyTorch rows in the torch suite (the TensorFlow suite has nothing to show here).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

BACKEND = keras.backend.backend()
REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "examples" / "benchmarks"

BLOCKER = """
import sys
from importlib.machinery import PathFinder


class NoTensorFlow(PathFinder):
    # Python's path finder, blind to TensorFlow: importing it fails and `find_spec` says None, as if not installed.
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            return None
        return PathFinder.find_spec(name, path, target)


sys.meta_path[:] = [NoTensorFlow if finder is PathFinder else finder for finder in sys.meta_path]
"""

pytestmark = pytest.mark.skipif(BACKEND == "tensorflow", reason="the rows without TensorFlow are JAX and PyTorch")


@pytest.fixture
def no_tensorflow_env(tmp_path):
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(BLOCKER)
    env = dict(os.environ, KERAS_BACKEND=BACKEND, OMP_WAIT_POLICY="PASSIVE")
    env["PYTHONPATH"] = os.pathsep.join([str(shim), str(REPO), env.get("PYTHONPATH", "")])
    return env


def test_the_blocker_blocks(no_tensorflow_env):
    result = subprocess.run(
        [sys.executable, "-c", "import tensorflow"], env=no_tensorflow_env, capture_output=True, text=True
    )
    assert result.returncode != 0 and "No module named 'tensorflow'" in result.stderr


@pytest.mark.slow
def test_gpu_check_runs_its_rows_without_tensorflow(no_tensorflow_env, tmp_path):
    pytest.importorskip("torch")  # the plain PyTorch rows
    out = tmp_path / "gpu.json"
    plan = f"seed:pytorch,base:{BACKEND},base-attn:{BACKEND}"
    result = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "gpu_check.py"),
            "--tiny",
            "--plan",
            plan,
            "--out",
            str(out),
            "--row-timeout",
            "500",
        ],
        env=no_tensorflow_env,
        capture_output=True,
        text=True,
        timeout=3000,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = {(r["config"], r["kind"]): r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {("seed", "pytorch"), ("base", BACKEND), ("base-attn", BACKEND)}
    for row in rows.values():
        assert row["tokens_per_s"] > 0 and row["tflops"] > 0, row
        assert row["tensorflow_imported"] is False, row
    base, dropped = rows[("base", BACKEND)], rows[("base-attn", BACKEND)]
    assert base["peak_host_rss_mb"] > 0 and base["peak_device_memory_mb"] is None  # a CPU
    # The modern presets train without attention dropout: the fused kernel; with it, the backend's dropout path.
    assert base["settings"]["attention_dropout"] == 0.0 and base["attention_path"] == "fused-causal"
    assert dropped["settings"]["attention_dropout"] == 0.1
    assert dropped["attention_path"] == {"torch": "sdpa-dropout-causal", "jax": "explicit-dropout"}[BACKEND]
    assert "tok/s" in result.stdout and "vs eager" in result.stdout  # the printed table


def test_run_py_training_worker_feeds_numpy_without_tensorflow(no_tensorflow_env):
    spec = dict(
        kind="klm_train",
        preset="tiny",
        vocab_size=64,
        batch_size=2,
        seq_len=8,
        lr=1e-3,
        clipnorm=1.0,
        warmup=1,
        dropout=0.1,
        optimizer="adamw",
        schedule="constant",
        precision="float32",
    )
    commands = json.dumps({"cmd": "measure", "steps": 2}) + "\n" + json.dumps({"cmd": "finish"}) + "\n"
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "run.py"), "--worker", json.dumps(spec)],
        input=commands,
        env=no_tensorflow_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    replies = [json.loads(line.split(" ", 1)[1]) for line in result.stdout.splitlines() if line.startswith("@@")]
    ready, measured, finished = replies
    assert ready["info"]["feed"] == "numpy" and ready["info"]["backend"] == BACKEND
    assert len(measured["times"]) == 2 and all(loss > 0 for loss in measured["losses"])
    assert finished["peak_rss_mb"] > 0
