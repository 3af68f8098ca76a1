"""What the device offers (CPU flags, GPUs) and `--precision auto`: a pure function of that description."""

import os

# CPU flags of bfloat16 matrix units: AMX tiles, or the AVX512-BF16 dot
# product (`vdpbf16ps`, 32 bf16 multiply-adds per instruction).
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
# Backends whose mixed_bfloat16 training step measured faster than float32
# on a CPU with bf16 units (examples/benchmarks/README.md: seed preset on an
# AVX512-BF16 AMD EPYC): their CPU matmuls go through oneDNN, which has
# bf16 kernels. XLA's CPU backend (JAX) measured no faster in bf16.
BF16_FASTER_ON_CPU = ("tensorflow", "torch")


def _read_cpu_flags():
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return sorted(set(line.split(":", 1)[1].split()))
    except OSError:
        pass
    return []


def _nvidia_gpus():
    """`[(name, compute_capability)]` from `nvidia-smi`, without importing a framework."""
    import shutil
    import subprocess

    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1") or not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        name, _, capability = line.rpartition(",")
        gpus.append((name.strip(), capability.strip()))
    return gpus


def describe_device():
    """The machine's compute device, as `resolve_precision` reads it; imports no framework.

    Returns:
        `{"kind": "gpu", "name": ..., "compute_capability": "8.0"}` for an
        NVIDIA GPU (found with `nvidia-smi`), else `{"kind": "cpu", "name":
        ..., "cpu_flags": [the bf16 flags of /proc/cpuinfo]}`.
    """
    gpus = _nvidia_gpus()
    if gpus:
        name, capability = gpus[0]
        return {"kind": "gpu", "name": name, "compute_capability": capability}
    import platform

    flags = _read_cpu_flags()
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), name)
    except OSError:
        pass
    return {"kind": "cpu", "name": name, "cpu_flags": [f for f in flags if f in BF16_CPU_FLAGS]}


def resolve_precision(precision, backend, device):
    """Resolves `--precision auto` to a Keras dtype policy name; a pure function.

    `"auto"` is `mixed_bfloat16` where the device has bfloat16 units and the
    backend's bf16 step measured faster there, float32 otherwise:

    - NVIDIA GPU with compute capability >= 8.0 (Ampere and later, bf16
      tensor cores): `mixed_bfloat16` on every backend; older GPUs: float32.
    - CPU with AMX-BF16 or AVX512-BF16: `mixed_bfloat16` on TensorFlow and
      PyTorch (oneDNN bf16 matmuls), float32 on JAX (XLA's CPU matmuls are
      no faster in bf16); without them bf16 is emulated, so float32.

    Args:
        precision: a `--precision` value; anything but `"auto"` is returned as is.
        backend: canonical backend name.
        device: a dict as `describe_device()` returns.

    Returns:
        `(policy, reason)`: the dtype policy and a one-line reason.

    Example:

    >>> resolve_precision("auto", "torch", {"kind": "cpu", "name": "x", "cpu_flags": ["avx512_bf16"]})[0]
    'mixed_bfloat16'
    """
    if precision != "auto":
        return precision, "requested"
    kind = device.get("kind", "cpu")
    name = device.get("name") or kind
    if kind == "gpu":
        try:
            major = int(str(device.get("compute_capability") or "0").split(".")[0])
        except ValueError:
            major = 0
        if major >= 8:
            return "mixed_bfloat16", f"{name} has bf16 tensor cores (compute capability {device['compute_capability']})"
        return "float32", f"{name} has no bf16 tensor cores (compute capability {device.get('compute_capability')})"
    if kind == "tpu":
        return "mixed_bfloat16", f"{name}: TPUs compute in bf16"
    units = [flag for flag in BF16_CPU_FLAGS if flag in (device.get("cpu_flags") or [])]
    if not units:
        return "float32", f"{name} has no bf16 units (no {' / '.join(BF16_CPU_FLAGS)}): bf16 would be emulated"
    if backend in BF16_FASTER_ON_CPU:
        return (
            "mixed_bfloat16",
            f"{name} has bf16 units ({', '.join(units)}) and {backend}'s oneDNN bf16 matmuls measured faster",
        )
    return (
        "float32",
        f"{name} has bf16 units ({', '.join(units)}), but {backend}'s CPU bf16 step measured no faster than float32",
    )
