"""Tests for klm.backend.runtime: malloc tuning and the GPU-probe stderr filter (in child processes)."""

import json
import os
import platform
import subprocess
import sys

import pytest

from klm import backend as backend_lib

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc's malloc only"
)

# Allocates and frees a 64 MiB buffer and reports glibc's count of bytes in
# mmap'd chunks while it is alive (mallinfo2().hblkhd, glibc >= 2.33).
_CHILD = r"""
import ctypes, json, sys
from klm import backend as backend_lib

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = (ctypes.c_void_p,)
tuned = backend_lib.reuse_freed_memory() if sys.argv[1] == "tune" else None
before = libc.mallinfo2().hblkhd
pointer = libc.malloc(64 << 20)
during = libc.mallinfo2().hblkhd
libc.free(pointer)
print(json.dumps({"tuned": tuned, "mmapped": during - before}))
"""


def _child(mode, **env):
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, mode],
        capture_output=True,
        text=True,
        check=True,
        cwd=repo,
        env={**os.environ, "PYTHONPATH": repo, **env},
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_large_buffers_come_from_the_heap_after_reuse_freed_memory():
    untuned = _child("plain")
    assert untuned["mmapped"] >= 64 << 20  # glibc's default: a fresh mmap per large buffer
    tuned = _child("tune")
    assert tuned["tuned"] is True
    assert tuned["mmapped"] == 0  # served from the heap, so freeing it keeps it for the next step


def test_klm_malloc_tuning_0_turns_it_off():
    result = _child("tune", KLM_MALLOC_TUNING="0")
    assert result["tuned"] is False
    assert result["mmapped"] >= 64 << 20


def test_training_setup_tunes_malloc(monkeypatch):
    import keras

    from klm.config import PretrainConfig
    from klm.training import session

    calls = []
    monkeypatch.setattr(backend_lib, "reuse_freed_memory", lambda: calls.append(True) or True)
    policy = keras.config.dtype_policy()
    try:
        session.setup(PretrainConfig(data="unused.txt", preset="tiny"))
    finally:
        keras.config.set_dtype_policy(policy)
    assert calls == [True]


_FILTER_CHILD = r"""
import os, threading
from klm import backend as backend_lib

backend_lib.filter_gpu_probe_noise()
backend_lib.filter_gpu_probe_noise()  # as each `CliRunner().invoke(main, ...)` in one process does
print(sum(thread.name == "klm-stderr-filter" for thread in threading.enumerate()))
os.write(2, b"E0000 00:00:1.0 123 cuda_platform.cc:51] failed call to cuInit: UNKNOWN ERROR (303)\nkept line\n")
"""


def test_gpu_probe_filter_drops_only_the_probe_lines_and_is_installed_once():
    if os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/nvidiactl"):
        pytest.skip("an NVIDIA driver is present: the filter is not installed here")
    env = {k: v for k, v in os.environ.items() if k != "KLM_KEEP_FRAMEWORK_LOGS"}
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    result = subprocess.run(
        [sys.executable, "-c", _FILTER_CHILD],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=repo,
        env={**env, "PYTHONPATH": repo},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1"]
    assert "kept line" in result.stderr and "cuInit" not in result.stderr
