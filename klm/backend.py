"""Backend selection and every piece of backend-specific code in klm.

Keras 3 reads its backend once, when `keras` is first imported. klm therefore
decides the backend here, before anything imports Keras:

1. an explicit choice (`klm pretrain --backend jax`, `use_backend("jax")`),
2. the `KERAS_BACKEND` environment variable,
3. Keras's own config file (`$KERAS_HOME/keras.json`, `~/.keras/keras.json`),
4. `tensorflow`.

Model code never asks which backend it runs on; the few places that must
(distribution, seeding, device discovery) call the helpers at the bottom of
this module.
"""

import importlib.util
import json
import os
import re
import sys

BACKENDS = ("tensorflow", "jax", "torch")
_ALIASES = {"tf": "tensorflow", "pytorch": "torch"}
# The package each backend needs, and how to install it.
_PACKAGES = {
    "tensorflow": ("tensorflow", 'pip install "klm"'),
    "jax": ("jax", 'pip install "klm[jax]"'),
    "torch": ("torch", 'pip install torch==2.13.0  (the CPU build; or "klm[torch]")'),
}


class BackendError(RuntimeError):
    """The requested backend cannot be used in this process."""


def normalize(name):
    """Returns the canonical backend name for `name` (accepts tf/pytorch)."""
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in BACKENDS:
        raise BackendError(f"Expected a backend in {', '.join(BACKENDS)}. Received: backend={name!r}")
    return key


def _config_file_backend():
    keras_home = os.environ.get("KERAS_HOME")
    if keras_home:
        candidates = [os.path.join(keras_home, "keras.json")]
    else:
        candidates = [os.path.join(os.path.expanduser("~"), ".keras", "keras.json")]
    for path in candidates:
        try:
            with open(path) as f:
                value = json.load(f).get("backend")
        except (OSError, ValueError):
            continue
        if value:
            return value
    return None


def resolve(explicit=None):
    """Returns the backend klm will use, without importing anything.

    Args:
        explicit: a backend name given by the user (flag or argument), or
            `None` to fall back to `KERAS_BACKEND`, then Keras's config file,
            then `"tensorflow"`.
    """
    for candidate in (explicit, os.environ.get("KERAS_BACKEND"), _config_file_backend()):
        if candidate:
            return normalize(candidate)
    return "tensorflow"


def use_backend(explicit=None):
    """Fixes the backend for this process; call before importing Keras.

    Checks that the backend's package is installed and that Keras has not
    already been imported with a different backend, and exports
    `KERAS_BACKEND` so that child processes agree.

    Returns:
        The canonical backend name.

    Raises:
        BackendError: with a message that says what to install or set.
    """
    name = resolve(explicit)
    package, install = _PACKAGES[name]
    if importlib.util.find_spec(package) is None:
        raise BackendError(
            f"The {name} backend needs the `{package}` package, which is not "
            f"installed. Install it with: {install}. Received: backend={name!r}"
        )
    if "keras" in sys.modules:
        current = sys.modules["keras"].backend.backend()
        if current != name:
            raise BackendError(
                f"Keras was already imported with the {current!r} backend in this "
                f"process, so klm cannot switch to {name!r}. Select the backend "
                f"before importing Keras (`--backend`, or KERAS_BACKEND={name}). "
                f"Received: backend={name!r}"
            )
    os.environ["KERAS_BACKEND"] = name
    if name == "torch":
        # PyTorch's OpenMP threads spin while they wait. On a CPU that other
        # processes also use (data pipeline threads, a second run), measured
        # here: the seed step with 2 threads took 2,090 ms instead of 600 ms
        # (see examples/benchmarks/README.md). Must be set before torch is
        # imported; a user's own setting wins.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return name


def current():
    """The backend of the imported Keras (imports Keras if needed)."""
    import keras

    return keras.backend.backend()


# === Backend-specific helpers ===
# Log lines the frameworks print while probing for a GPU on a machine that has
# none: errors in form only (a CPU-only run is what the user asked for).
_GPU_PROBE_NOISE = (
    re.compile(rb"^E0000 [^\]]*cuda_platform\.cc:\d+\] failed call to cuInit"),
    re.compile(rb"^[IWE]0000 [^\]]*cudart_stub\.cc:\d+\] Could not find cuda drivers"),
    re.compile(rb"^[IWE]0000 [^\]]*cuda_(executor|diagnostics|dnn|blas|fft)\.cc:\d+\] "),
)


def _nvidia_driver_present():
    return os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/nvidiactl")


def filter_gpu_probe_noise():
    """Drops the frameworks' GPU-probe error lines from stderr on machines without an NVIDIA driver.

    TensorFlow and JAX log `failed call to cuInit: ... CUDA error` at `E`
    (error) level whenever they look for a GPU, which reads as a failure to a
    user who trains on a CPU. This routes file descriptor 2 through a thread
    that drops exactly those lines and passes everything else through, in
    order. Nothing changes where a driver exists (a GPU was possible), or with
    `KLM_KEEP_FRAMEWORK_LOGS=1`. For the `klm` command only; call it once,
    before any framework is imported.
    """
    if os.environ.get("KLM_KEEP_FRAMEWORK_LOGS") or _nvidia_driver_present():
        return
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


def local_devices(kind=None):
    """Lists local accelerator devices (`"gpu"`, `"tpu"`) or CPUs for `kind=None`.

    Returns a list of device strings in the backend's own naming.
    """
    backend = current()
    if backend == "jax":
        import jax

        devices = jax.local_devices()
        if kind:
            devices = [d for d in devices if d.platform == kind]
        return [f"{d.platform}:{d.id}" for d in devices]
    if backend == "tensorflow":
        import tensorflow as tf

        kinds = [kind.upper()] if kind else ["GPU", "TPU"]
        found = []
        for k in kinds:
            found += [d.name for d in tf.config.list_logical_devices(k)]
        if not found and not kind:
            found = [d.name for d in tf.config.list_logical_devices("CPU")]
        return found
    import torch

    if torch.cuda.is_available() and kind in (None, "gpu"):
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return ["cpu:0"] if kind in (None, "cpu") else []


def accelerator_name():
    """A short description of the device the backend computes on."""
    backend = current()
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
        return "cpu"
    if backend == "jax":
        import jax

        return jax.devices()[0].device_kind
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return gpus[0].name if gpus else "cpu"


class _NullScope:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def configure_cpu_devices(count, backend=None):
    """Splits the host CPU into `count` logical devices; call before Keras is imported.

    Lets data parallelism run (and be tested) without accelerators: JAX gets
    `--xla_force_host_platform_device_count`, TensorFlow logical CPU devices.
    PyTorch has no Keras distribution, so it is refused there.
    """
    if not count or int(count) <= 1:
        return
    backend = backend or resolve()
    count = int(count)
    if backend == "jax":
        flags = os.environ.get("XLA_FLAGS", "")
        if "xla_force_host_platform_device_count" not in flags:
            os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}".strip()
        if "jax" in sys.modules:
            import jax

            if len(jax.devices("cpu")) != count:
                raise BackendError(
                    f"JAX is already initialised with {len(jax.devices('cpu'))} CPU devices; set "
                    f"--cpu-devices before anything imports JAX. Received: --cpu-devices={count}"
                )
    elif backend == "tensorflow":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
        except RuntimeError as e:  # TF already initialised its devices
            raise BackendError(
                f"Cannot split the CPU into {count} devices: {e}. Received: --cpu-devices={count}"
            ) from e
    else:
        raise BackendError(
            "--cpu-devices needs a backend with Keras distribution support (jax or tensorflow); "
            f"Keras has none for PyTorch. Received: --cpu-devices={count} with backend {backend!r}"
        )


def initialize_cluster(coordinator=None, num_processes=None, process_id=None):
    """Starts multi-process (multi-host) training; JAX only.

    Values come from the arguments, else from the variables that Keras and
    cluster launchers set (`KERAS_DISTRIBUTION_JOB_ADDRESSES`,
    `KERAS_DISTRIBUTION_NUM_PROCESSES`, `KERAS_DISTRIBUTION_PROCESS_ID`).
    On CPU the collectives use gloo.

    Returns:
        `(process_index, process_count)`.
    """
    coordinator = coordinator or os.environ.get("KERAS_DISTRIBUTION_JOB_ADDRESSES")
    if num_processes is None and os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES"):
        num_processes = int(os.environ["KERAS_DISTRIBUTION_NUM_PROCESSES"])
    if process_id is None and os.environ.get("KERAS_DISTRIBUTION_PROCESS_ID"):
        process_id = int(os.environ["KERAS_DISTRIBUTION_PROCESS_ID"])
    if not num_processes or int(num_processes) <= 1:
        return 0, 1
    import keras

    backend = keras.backend.backend()
    if backend != "jax":
        hint = (
            " (TensorFlow multi-worker fails inside Keras 3 fit, keras-team/keras#20585)"
            if backend == "tensorflow"
            else ""
        )
        raise BackendError(
            f"Multi-process training runs on the JAX backend only{hint}; use --backend jax. "
            f"Received: --num-processes={num_processes} with backend {backend!r}"
        )
    if not coordinator or process_id is None:
        raise BackendError(
            "Multi-process training needs --coordinator HOST:PORT and --process-id (or "
            "KERAS_DISTRIBUTION_JOB_ADDRESSES / KERAS_DISTRIBUTION_PROCESS_ID). "
            f"Received: --coordinator={coordinator!r} --process-id={process_id!r}"
        )
    import jax

    # CPU collectives across processes need gloo; it does not affect GPUs.
    # (Asking jax for its devices here would initialise XLA too early.)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    keras.distribution.initialize(
        job_addresses=coordinator, num_processes=int(num_processes), process_id=int(process_id)
    )
    return jax.process_index(), jax.process_count()


def process_count():
    """The number of processes training together (1 when single-process)."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return jax.process_count()
    return 1


def process_index():
    """This process's rank in a multi-process run (0 when single-process)."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return jax.process_index()
    return 0


def parse_mesh(text, num_devices):
    """Parses `--mesh data=N,model=M` into `(data, model)`; fills a missing side."""
    sizes = {}
    for part in filter(None, (text or "").split(",")):
        name, _, value = part.partition("=")
        if name.strip() not in ("data", "model") or not value.strip().isdigit() or int(value) < 1:
            raise BackendError(f"Expected --mesh like data=2,model=2. Received: --mesh={text!r}")
        sizes[name.strip()] = int(value)
    data = sizes.get("data", num_devices // sizes.get("model", 1) if sizes.get("model") else 1)
    model = sizes.get("model", num_devices // data)
    if data * model != num_devices:
        raise BackendError(
            f"Expected --mesh sizes whose product is the number of devices ({num_devices}). "
            f"Received: --mesh={text!r} (data={data}, model={model})"
        )
    return data, model


# Model-parallel sharding of klm's large weights over the "model" mesh axis:
# the vocabulary-sized matrices along the hidden axis (vocabulary sizes are
# arbitrary, e.g. 28,782, while hidden sizes divide evenly), feed-forward and
# attention kernels Megatron-style (column-parallel in, row-parallel out).
_MODEL_PARALLEL_LAYOUT = {
    "token_embedding/embeddings": (None, "model"),
    "token_embedding/reverse_embeddings": ("model", None),
    ".*attention/qkv/kernel": (None, "model"),
    ".*attention/output/kernel": ("model", None),
    ".*feedforward_intermediate/kernel": (None, "model"),
    ".*feedforward_output/kernel": ("model", None),
}


class _StrategyScope:
    """`strategy.scope()` that remembers its tf.distribute strategy."""

    def __init__(self, strategy):
        self.strategy = strategy
        self._scope = None

    def __enter__(self):
        self._scope = self.strategy.scope()
        return self._scope.__enter__()

    def __exit__(self, *exc):
        return self._scope.__exit__(*exc)


def clips_per_replica(scope):
    """Whether `--clipnorm` acts per replica under `scope` (Keras 3's TF optimizer under tf.distribute)."""
    return isinstance(scope, _StrategyScope)


def distribution_scope(strategy="auto", mesh=None):
    """A context manager under which klm builds and compiles its models.

    Args:
        strategy: `"auto"` spreads the batch over all local accelerators when
            there are several (TF `MirroredStrategy`, JAX
            `keras.distribution.DataParallel`) and uses one device otherwise;
            `"single"` always uses one device; `"data"`/`"mirrored"` ask for
            data parallelism over every device (on JAX, of every process);
            `"model"`/`"fsdp"` (JAX) shard the large weights over the `model`
            axis of a `DeviceMesh` (`mesh="data=N,model=M"`).

    Returns:
        `(scope, description)`: the context manager and a short text for logs.

    Raises:
        BackendError: for strategies the backend does not offer (PyTorch has
            no Keras distribution in Keras 3.15; TensorFlow's multi-worker
            strategy fails inside Keras 3 `fit`, keras-team/keras#20585).
    """
    import keras

    backend = keras.backend.backend()
    if strategy == "multi-worker":
        raise BackendError(
            "--strategy multi-worker is not supported: TensorFlow's MultiWorkerMirroredStrategy fails "
            "inside Keras 3 fit ('Attempt to convert a value (PerReplica ...)', keras-team/keras#20585), "
            "and klm does not fall back silently to one worker. For several hosts use --backend jax "
            "with --coordinator/--num-processes/--process-id. Received: --strategy=multi-worker"
        )
    if backend == "torch":
        if strategy not in ("auto", "single"):
            raise BackendError(
                f"--strategy {strategy} needs Keras distribution support, which Keras {keras.__version__} "
                "does not have for the PyTorch backend; use --backend jax or --backend tensorflow, or "
                f"--strategy single. Received: --strategy={strategy}"
            )
        return _NullScope(), f"single device ({accelerator_name()})"
    if strategy == "single":
        return _NullScope(), f"single device ({accelerator_name()})"
    if backend == "jax":
        import jax

        devices = jax.devices()
        if strategy == "auto" and len(devices) == 1:
            return _NullScope(), f"single device ({devices[0].device_kind})"
        if strategy in ("model", "fsdp"):
            data, model = parse_mesh(mesh, len(devices))
            device_mesh = keras.distribution.DeviceMesh(
                shape=(data, model), axis_names=("data", "model"), devices=devices
            )
            layout_map = keras.distribution.LayoutMap(device_mesh)
            for pattern, axes in _MODEL_PARALLEL_LAYOUT.items():
                layout_map[pattern] = axes
            keras.distribution.set_distribution(
                keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name="data")
            )
            return _NullScope(), f"keras.distribution.ModelParallel, mesh data={data} x model={model}"
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        return _NullScope(), (
            f"keras.distribution.DataParallel over {len(devices)} devices in {jax.process_count()} process(es)"
        )
    if strategy in ("model", "fsdp"):
        raise BackendError(
            f"--strategy {strategy} (sharded weights) runs on the JAX backend (keras.distribution "
            f"ModelParallel); use --backend jax. Received: --strategy={strategy}"
        )
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if strategy == "auto" and len(gpus) <= 1:
        return _NullScope(), f"single device ({accelerator_name()})"
    devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
    mirrored = tf.distribute.MirroredStrategy(devices=devices)
    return _StrategyScope(mirrored), f"tf.distribute.MirroredStrategy over {len(devices)} devices"


def barrier(name):
    """Waits until every process of a multi-process JAX run gets here."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices(name)


# === Kernels with a backend-specific fast path ===


def dense(inputs, kernel, bias=None):
    """`inputs @ kernel + bias` in the dtype of `inputs` (the compute dtype).

    Under mixed precision the (float32) kernel and bias are cast to the
    inputs' dtype first, so the matmul runs in bfloat16 with the backends'
    float32 accumulation (oneDNN on CPU, cuBLAS on GPU) instead of being
    promoted to a float32 matmul. PyTorch gets the bias fused into the matmul
    (`F.linear`, i.e. `addmm`) instead of a separate broadcast add over the
    output; JAX asks XLA for a float32-accumulating dot of bfloat16 operands
    (`preferred_element_type`), which its CPU backend runs faster than a
    bfloat16-output dot.

    Args:
        inputs: `(..., in)` float tensor.
        kernel: `(in, out)` weight (tensor or Keras variable).
        bias: `(out,)` or `None`.
    """
    import keras
    from keras import ops

    backend = keras.backend.backend()
    inputs = ops.convert_to_tensor(inputs)
    dtype = keras.backend.standardize_dtype(inputs.dtype)
    kernel = ops.convert_to_tensor(kernel)
    if keras.backend.standardize_dtype(kernel.dtype) != dtype:
        kernel = ops.cast(kernel, dtype)
    if bias is not None:
        bias = ops.convert_to_tensor(bias)
        if keras.backend.standardize_dtype(bias.dtype) != dtype:
            bias = ops.cast(bias, dtype)
    if backend == "torch":
        import torch

        return torch.nn.functional.linear(inputs, kernel.t(), bias)
    if backend == "jax" and dtype in ("bfloat16", "float16"):
        import jax.numpy as jnp

        outputs = jnp.matmul(inputs, kernel, preferred_element_type=jnp.float32)
        if bias is not None:
            outputs = outputs + bias.astype(jnp.float32)
        return outputs.astype(dtype)
    outputs = ops.matmul(inputs, kernel)
    return outputs if bias is None else ops.add(outputs, bias)


def sparse_softmax_cross_entropy(labels, logits):
    """Per-row `logsumexp(logits) - logits[label]` of float32 `(N, V)` logits and int `(N,)` labels.

    Each backend's fused kernel where it has one: PyTorch's
    `F.cross_entropy` (one vectorised log-softmax forward and backward
    instead of separate max, subtract, exp, sum, log and gather ops over the
    logits) and TensorFlow's `sparse_softmax_cross_entropy_with_logits`
    (loss and gradient in one kernel); under JAX the log-sum-exp and a gather,
    which XLA fuses. The result is float32.
    """
    import keras
    from keras import ops

    backend = keras.backend.backend()
    logits = ops.cast(logits, "float32")
    if backend == "torch":
        import torch

        labels = ops.convert_to_tensor(labels)
        return torch.nn.functional.cross_entropy(logits, labels.long(), reduction="none")
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=ops.cast(labels, "int32"), logits=logits)
    labels = ops.reshape(ops.cast(labels, "int32"), (-1, 1))
    log_normalizer = ops.logsumexp(logits, axis=-1)
    return log_normalizer - ops.squeeze(ops.take_along_axis(logits, labels, axis=-1), axis=-1)


# === Key/value-cache decoding ===
#
# PyTorch runs eagerly, so a decoding step costs what its Python does: every
# Keras op and copy counts, on one token's worth of arithmetic. There the
# cache is written in place and attention calls SDPA directly on views of
# it. JAX and TensorFlow compile the step (jit, tf.function, tf.while_loop
# in exported graphs) and keep the functional updates, which XLA turns into
# in-place ones.


def decoding_scope():
    """A context manager for eager decoding loops: no autograd on PyTorch, nothing elsewhere."""
    import contextlib

    import keras

    if keras.backend.backend() == "torch":
        import torch

        return torch.no_grad()
    return contextlib.nullcontext()


def cache_index(index):
    """`index` (a position in the cache) in the form the cached attention takes best.

    On PyTorch a Python int (one read of a scalar tensor per step instead of
    one per layer, and plain slicing of the cache); elsewhere unchanged (a
    traced scalar under jit / tf.function).
    """
    import keras

    if keras.backend.backend() == "torch" and not isinstance(index, int):
        return int(index)
    return index


def cached_attention(query, key, value, cache, start_index):
    """Writes `key`/`value` into a layer's cache at `start_index` and attends over it.

    Query `i` (absolute position `start_index + i`) sees the cached keys
    `0 .. start_index + i`.

    Args:
        query, key, value: `(batch, seq, heads, head_dim)`, in the cache's dtype.
        cache: `(batch, 2, max_len, heads, head_dim)`: keys, values.
        start_index: int or scalar int tensor (see `cache_index`).

    Returns:
        `(outputs, cache)`: `(batch, seq, heads, head_dim)` and the cache
        with this step written. On PyTorch the given cache is updated in
        place (and returned); elsewhere a new tensor.
    """
    import keras
    from keras import ops

    if keras.backend.backend() == "torch" and isinstance(start_index, int):
        import torch

        seq_len = query.shape[1]
        end = start_index + seq_len
        cache[:, 0, start_index:end] = key
        cache[:, 1, start_index:end] = value
        # Attend over the filled part only: one new token then needs no mask,
        # and a prompt written from position 0 is plain causal attention.
        keys = cache[:, 0, :end].transpose(1, 2)  # (batch, heads, end, head_dim)
        values = cache[:, 1, :end].transpose(1, 2)
        mask = None
        if seq_len > 1 and start_index > 0:
            positions = torch.arange(end, device=cache.device)
            mask = positions[start_index:, None] >= positions[None, :]  # (seq, end)
        outputs = torch.nn.functional.scaled_dot_product_attention(
            query.transpose(1, 2), keys, values, attn_mask=mask, is_causal=seq_len > 1 and mask is None
        )
        return outputs.transpose(1, 2), cache
    key_cache = ops.slice_update(cache[:, 0], [0, start_index, 0, 0], key)
    value_cache = ops.slice_update(cache[:, 1], [0, start_index, 0, 0], value)
    cache = ops.stack((key_cache, value_cache), axis=1)
    # Query i (absolute position start + i) may see keys 0..start + i.
    seq_len = ops.shape(query)[1]
    query_positions = ops.arange(seq_len) + start_index
    key_positions = ops.arange(ops.shape(key_cache)[1])
    mask = ops.expand_dims(query_positions, 1) >= ops.expand_dims(key_positions, 0)
    mask = mask[None, None, :, :]  # (1, 1, seq, max_len)
    return ops.dot_product_attention(query, key_cache, value_cache, mask=mask), cache


def stack_layer_caches(cache, layer_caches):
    """The model's cache `(batch, layers, 2, max_len, heads, head_dim)` after each layer wrote its own.

    Args:
        cache: the model's cache the step started from.
        layer_caches: per layer, the `(batch, 2, max_len, heads, head_dim)`
            cache `cached_attention` returned for `cache[:, i]`.

    On PyTorch those are views of `cache` written in place, so `cache` is
    returned as is (a layer cache that is not such a view is copied in);
    elsewhere they are stacked.
    """
    import keras
    from keras import ops

    if keras.backend.backend() == "torch":
        for i, layer_cache in enumerate(layer_caches):
            target = cache[:, i]
            if layer_cache.data_ptr() != target.data_ptr() or layer_cache.stride() != target.stride():
                target.copy_(layer_cache)
        return cache
    return ops.stack(layer_caches, axis=1)


# === Precision ===

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


def fuse_global_clipnorm(optimizer):
    """Makes `optimizer`'s global-norm clipping one fused pass on PyTorch; returns it.

    Keras clips with a square, a sum and a multiply per gradient (three
    passes over every weight-sized tensor, Python per op). On PyTorch this
    replaces it with `torch._foreach_norm` (one multi-tensor kernel, as
    `torch.nn.utils.clip_grad_norm_` does) and one `torch._foreach_mul` by
    `clipnorm / max(norm, clipnorm)`: the same
    result, NaN/inf included (the scale is NaN then, as in Keras). Other
    backends compile the step (XLA / tf.function), which fuses Keras's ops.
    """
    import keras

    if keras.backend.backend() != "torch" or not optimizer.global_clipnorm or optimizer.clipnorm:
        return optimizer
    import types

    import torch

    def clip_gradients(self, grads):
        if not self.global_clipnorm or self.global_clipnorm <= 0:
            return type(self)._clip_gradients(self, grads)
        present = [g for g in grads if g is not None]
        if not present:
            return grads
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(present)))
        clip = torch.as_tensor(float(self.global_clipnorm), dtype=norm.dtype, device=norm.device)
        scale = clip / torch.maximum(norm, clip) + (norm - norm)  # NaN for a NaN/inf norm, as in Keras
        # Out of place: with gradient accumulation these are the accumulators.
        scaled = iter(torch._foreach_mul(present, scale))
        return [next(scaled) if g is not None else None for g in grads]

    optimizer._clip_gradients = types.MethodType(clip_gradients, optimizer)
    return optimizer
