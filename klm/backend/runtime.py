"""Per-backend runtime details: framework log noise, global RNG state and seeding, compile options."""

import ctypes
import os
import platform
import re
import sys

from klm.backend.selection import BackendError, current

# Log lines the frameworks print while probing for a GPU on a machine that has
# none: errors in form only (a CPU-only run is what the user asked for).
_GPU_PROBE_NOISE = (
    re.compile(rb"^E0000 [^\]]*cuda_platform\.cc:\d+\] failed call to cuInit"),
    re.compile(rb"^[IWE]0000 [^\]]*cudart_stub\.cc:\d+\] Could not find cuda drivers"),
    re.compile(rb"^[IWE]0000 [^\]]*cuda_(executor|diagnostics|dnn|blas|fft)\.cc:\d+\] "),
)


def _nvidia_driver_present():
    return os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/nvidiactl")


# Whether this process's fd 2 already runs through `filter_gpu_probe_noise`'s
# pipe. Process state, as the file descriptor it describes is.
_stderr_filtered = False


def filter_gpu_probe_noise():
    """Drops the frameworks' GPU-probe error lines from stderr on machines without an NVIDIA driver.

    TensorFlow and JAX log `failed call to cuInit: ... CUDA error` at `E`
    (error) level whenever they look for a GPU, which reads as a failure to a
    user who trains on a CPU. This routes file descriptor 2 through a thread
    that drops exactly those lines and passes everything else through, in
    order. Nothing changes where a driver exists (a GPU was possible), or with
    `KLM_KEEP_FRAMEWORK_LOGS=1`. For the `klm` command only, before any
    framework is imported. Calls after the first do nothing: a second filter
    would hold the first one's pipe open, so that neither could end at exit
    (each cost a 2 s join timeout when a process ran `klm` many times, as a
    test session does through click's `CliRunner`).
    """
    global _stderr_filtered
    if _stderr_filtered or os.environ.get("KLM_KEEP_FRAMEWORK_LOGS") or _nvidia_driver_present():
        return
    _stderr_filtered = True
    import atexit
    import threading

    sys.stderr.flush()
    read_fd, write_fd = os.pipe()
    original = os.dup(2)
    os.dup2(write_fd, 2)
    os.close(write_fd)

    def keep(line):
        return not any(pattern.match(line) for pattern in _GPU_PROBE_NOISE)

    def pump():
        pending = b""
        while True:
            chunk = os.read(read_fd, 65536)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            out = b"".join(line + b"\n" for line in lines if keep(line))
            # A partial line is passed on at once (progress bars), unless it may be a framework log line.
            if pending and pending[:1] not in (b"I", b"W", b"E"):
                out, pending = out + pending, b""
            if out:
                os.write(original, out)
        if pending and keep(pending):
            os.write(original, pending)
        os.close(read_fd)

    thread = threading.Thread(target=pump, name="klm-stderr-filter", daemon=True)
    thread.start()

    def restore():
        sys.stderr.flush()
        os.dup2(original, 2)  # closes the pipe's write end: the pump sees EOF
        thread.join(timeout=2)
        if not thread.is_alive():
            os.close(original)

    atexit.register(restore)


# Everything below imports Keras lazily and branches on the backend. No other
# module in klm branches on the backend name.


def global_rng_state():
    """The backend's global random state that Keras `SeedGenerator`s do not hold, JSON-ready (or `None`).

    On PyTorch, Keras draws the masks of unseeded dropout layers from torch's
    global generator (its fast path), so a run resumes exactly only if that
    generator is restored too. TensorFlow and JAX draw every mask from a
    `SeedGenerator` state, which the model's variables hold.
    """
    import keras

    if keras.backend.backend() != "torch":
        return None
    import base64

    import torch

    def encode(tensor):
        return base64.b64encode(tensor.cpu().numpy().tobytes()).decode("ascii")

    state = {"cpu": encode(torch.get_rng_state())}
    if torch.cuda.is_available():
        state["cuda"] = [encode(s) for s in torch.cuda.get_rng_state_all()]
    return state


def set_global_rng_state(state):
    """Restores `global_rng_state()`'s result (a no-op for `None` or another backend's state)."""
    import keras

    if not state or keras.backend.backend() != "torch":
        return
    import base64

    import numpy as np
    import torch

    def decode(text):
        return torch.from_numpy(np.frombuffer(base64.b64decode(text), dtype=np.uint8).copy())

    torch.set_rng_state(decode(state["cpu"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([decode(s) for s in state["cuda"]])


def set_seed(seed):
    """Seeds Python, NumPy, the backend and TensorFlow (tf.data) at once."""
    import keras

    keras.utils.set_random_seed(int(seed))


def check_steps_per_execution(steps_per_execution, backend):
    """Raises BackendError when the backend cannot run several steps per call.

    Keras 3's PyTorch trainer runs one step per call and rejects more only
    once `fit` starts; checking here fails before the data is loaded.
    """
    if steps_per_execution > 1 and backend == "torch":
        raise BackendError(
            "Expected --steps-per-execution 1 with the torch backend (Keras's PyTorch trainer runs one "
            f"step per call). Received: --steps-per-execution={steps_per_execution}"
        )


def supports_jit(backend=None):
    """Whether `model.compile(jit_compile=True)` compiles with XLA here."""
    backend = backend or current()
    return backend in ("tensorflow", "jax")


# glibc's mallopt() parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def reuse_freed_memory():
    """Makes glibc's malloc keep freed memory for reuse instead of unmapping it; returns whether it did.

    glibc serves each allocation above 32 MiB with a fresh `mmap` and
    returns it to the OS when it is freed, so every training step pays a
    page fault per 4 KiB of every large buffer, again and again. The
    reference preset's logits, their log-softmax and its gradient are each
    700 x 12,000 float32 = 33.6 MB: measured on a 2-core AMD EPYC, the
    logits matmul took 26 ms into a fresh buffer and 17 ms into a reused
    one, and matmul + log-softmax + softmax 50 ms instead of 23 ms. PyTorch
    on CPU allocates with plain `malloc`, with no caching allocator; this is
    what tcmalloc/jemalloc preloads do for CPU training, done with glibc's
    own switches: no mmap'd chunks (`M_MMAP_MAX=0`, so large buffers come
    from the heap and are reused) and no trimming of the heap's free top
    below 2 GiB (`M_TRIM_THRESHOLD`). The price is that the process keeps its
    peak heap instead of returning it to the OS, as a GPU caching
    allocator does.

    Called once by training (`klm.training.session.setup`). A no-op where
    the C library is not glibc, or when `KLM_MALLOC_TUNING=0`.
    """
    if os.environ.get("KLM_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    # mallopt returns 1 on success.
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def peak_memory():
    """This process's peak memory so far, in MiB: `{"peak_device_memory_mb", "peak_host_rss_mb"}`.

    Device memory is the accelerator's own count of the most it held at once
    (PyTorch `torch.cuda.max_memory_allocated`, JAX `memory_stats()
    ["peak_bytes_in_use"]`, TensorFlow `get_memory_info("GPU:0")["peak"]`) on
    the first local accelerator, `None` on a CPU, where the host figure is the
    one that counts: the peak resident set size (`getrusage`), which holds
    the model, the optimizer and the activations there. Returns `None` for a
    figure the backend cannot give.
    """
    import resource

    import keras

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    host = rss / 2**20 if sys.platform == "darwin" else rss / 2**10
    device = None
    backend = keras.backend.backend()
    try:
        if backend == "torch":
            import torch

            if torch.cuda.is_available():
                device = torch.cuda.max_memory_allocated() / 2**20
        elif backend == "jax":
            import jax

            accelerator = jax.local_devices()[0]
            if accelerator.platform != "cpu":
                device = (accelerator.memory_stats() or {}).get("peak_bytes_in_use", 0) / 2**20 or None
        elif backend == "tensorflow":
            import tensorflow as tf

            if tf.config.list_logical_devices("GPU"):
                device = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    except (RuntimeError, ValueError, KeyError, AttributeError):  # a device without memory statistics
        device = None
    return {
        "peak_device_memory_mb": None if device is None else round(device, 1),
        "peak_host_rss_mb": round(host, 1),
    }
