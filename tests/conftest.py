import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def shared_data_dir():
    """`../shared/data` beside the checkout (or $KLM_SHARED_DATA), or None."""
    path = Path(os.environ.get("KLM_SHARED_DATA", REPO.parent / "shared" / "data"))
    return path if path.is_dir() else None


@pytest.fixture
def shared_data():
    path = shared_data_dir()
    if path is None:
        pytest.skip("../shared/data is absent (set KLM_SHARED_DATA to point at it)")
    return path


def run_in_backend(backend, args, timeout=600, env=None):
    """Runs `python args...` with KERAS_BACKEND=backend; returns the CompletedProcess."""
    full_env = dict(os.environ, KERAS_BACKEND=backend, **(env or {}))
    return subprocess.run([sys.executable, *args], env=full_env, capture_output=True, text=True, timeout=timeout)


def pytest_collection_modifyitems(config, items):
    """Marks the unit tests; `KLM_SLOW_BACKENDS="tensorflow torch"` runs tests marked `slow` on those backends only.

    Every test in a `*_test.py` beside a module of klm/ is marked `unit`:
    with the end-to-end tests marked `smoke`, they are the quick tier of
    tests/run.sh.

    tests/run.sh sets it so that the whole-job fault-injection and resume
    suites run twice, not three times, within CI's time; each skip says so.
    Unset (plain pytest), every test runs.
    """
    package = REPO / "klm"
    for item in items:
        if Path(str(item.fspath)).is_relative_to(package):
            item.add_marker(pytest.mark.unit)
    allowed = os.environ.get("KLM_SLOW_BACKENDS", "").split()
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if not allowed or backend in allowed:
        return
    skip = pytest.mark.skip(
        reason=f"slow end-to-end test: tests/run.sh runs these on {' and '.join(allowed)} only "
        "(KLM_SLOW_BACKENDS='tensorflow jax torch' runs them everywhere)"
    )
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
