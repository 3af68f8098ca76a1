"""The training workers of examples/benchmarks/run.py, in this process on tiny shapes.

The benchmark runs them in subprocesses; here they run in-process (under
this test process's backend) so that a renamed reference class or a broken
klm build path fails a test instead of the benchmark.
"""

import importlib.util
import math
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "examples" / "benchmarks" / "run.py"

SPEC = dict(
    vocab_size=40,
    batch_size=2,
    seq_len=6,
    lr=0.5,
    clipnorm=0.5,
    warmup=1,
    dropout=0.1,
    optimizer="sgd",
    schedule="step",
    precision="float32",
    seed=0,
)


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("klm_benchmarks_run", _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check(result, steps):
    assert len(result["times"]) == steps and len(result["cpu_times"]) == steps
    assert all(t > 0 for t in result["times"])
    assert all(math.isfinite(loss) for loss in result["losses"])


def test_reference_worker_trains_the_reference_transformer(bench):
    pytest.importorskip("torch")
    worker = bench.RefTrainWorker(dict(SPEC, kind="ref_train", model="seed"))
    assert worker.info["backend"] == "pytorch-reference"
    _check(worker.measure(2), 2)
    assert worker.finish()["peak_rss_mb"] > 0


def test_klm_worker_trains_through_model_fit(bench):
    import keras

    policy = keras.config.dtype_policy()
    try:
        # reuse_freed_memory off: it would change malloc for the whole test process.
        worker = bench.KlmTrainWorker(dict(SPEC, kind="klm_train", preset="tiny", reuse_freed_memory=False))
    finally:
        keras.config.set_dtype_policy(policy)
    assert worker.info["backend"] == keras.backend.backend()
    _check(worker.measure(2), 2)
