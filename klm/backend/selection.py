"""Which backend klm runs on, decided before anything imports Keras (see `klm.backend`)."""

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
