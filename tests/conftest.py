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
    return subprocess.run(
        [sys.executable, *args], env=full_env, capture_output=True, text=True, timeout=timeout
    )
