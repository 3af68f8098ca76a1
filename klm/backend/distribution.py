"""Devices, processes and distribution strategies per backend (tf.distribute, keras.distribution)."""

import os
import sys

from klm.backend.selection import BackendError, current, resolve


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
