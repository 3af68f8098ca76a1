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
        raise BackendError(
            f"Expected a backend in {', '.join(BACKENDS)}. Received: backend={name!r}"
        )
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
    return name


def current():
    """The backend of the imported Keras (imports Keras if needed)."""
    import keras

    return keras.backend.backend()


# === Backend-specific helpers ===
# Everything below imports Keras lazily and branches on the backend. No other
# module in klm branches on the backend name.


def set_seed(seed):
    """Seeds Python, NumPy, the backend and TensorFlow (tf.data) at once."""
    import keras

    keras.utils.set_random_seed(int(seed))


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


def distribution_scope(strategy="auto"):
    """A context manager under which klm builds and compiles its models.

    Args:
        strategy: `"auto"` spreads the batch over all local accelerators when
            there are several (TF `MirroredStrategy`, JAX
            `keras.distribution.DataParallel`) and uses one device otherwise;
            `"single"` always uses one device; `"data"`/`"mirrored"` ask for
            data parallelism explicitly.

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
            "and klm does not fall back silently to one worker. For several hosts use "
            "--backend jax (keras.distribution). Received: --strategy=multi-worker"
        )
    if strategy in ("model", "fsdp"):
        raise BackendError(
            f"--strategy {strategy} (sharded weights) is not available yet; use --strategy data or auto. "
            f"Received: --strategy={strategy}"
        )
    if backend == "torch":
        if strategy in ("data", "mirrored"):
            raise BackendError(
                f"--strategy {strategy} needs several devices, but Keras {keras.__version__} has no "
                "distribution support for the PyTorch backend; use --backend jax or --backend "
                f"tensorflow for data parallelism, or --strategy single. Received: --strategy={strategy}"
            )
        return _NullScope(), f"single device ({accelerator_name()})"
    if strategy == "single":
        return _NullScope(), f"single device ({accelerator_name()})"
    if backend == "jax":
        import jax

        devices = jax.devices()
        if strategy == "auto" and len(devices) == 1:
            return _NullScope(), f"single device ({devices[0].device_kind})"
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        return _NullScope(), f"keras.distribution.DataParallel over {len(devices)} devices"
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if strategy == "auto" and len(gpus) <= 1:
        return _NullScope(), f"single device ({accelerator_name()})"
    devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
    mirrored = tf.distribute.MirroredStrategy(devices=devices)
    return mirrored.scope(), f"tf.distribute.MirroredStrategy over {len(devices)} devices"
