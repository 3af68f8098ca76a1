"""klm: train causal Transformer language models on your own text with Keras 3.

Importing `klm` is cheap: it does not import Keras, so the backend can still
be chosen afterwards (`klm.backend.use_backend`). klm's saveable classes
(`KlmCausalLM`, `KlmClassifier`, its layers) are registered with Keras as
soon as both are imported, in either order, so `import klm` is all that
`keras.saving.load_model("run/last.keras")` needs.
"""

import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"


_registered = False


def _initializing(module):
    return getattr(getattr(module, "__spec__", None), "_initializing", False)


def _register_saveables():
    """Imports klm's layers and models (their decorators register them), once nothing is half-imported.

    keras_hub imports keras while it initialises, and klm's own modules import
    both: registering in the middle of any of those imports would import a
    half-made module, so it waits for the last of them to finish.
    """
    global _registered
    if _registered or "keras" not in sys.modules:
        return
    for name, module in list(sys.modules.items()):
        watched = name in ("keras", "keras_hub") or name.startswith(("keras.", "keras_hub.", "klm."))
        if watched and _initializing(module):
            return  # retried when that import completes
    _registered = True
    import klm.layers  # noqa: F401
    import klm.models  # noqa: F401


class _RegisterAfterKerasImport(importlib.abc.MetaPathFinder):
    """Retries `_register_saveables` each time keras, keras_hub or a klm module finishes importing."""

    _busy = set()

    def find_spec(self, name, path, target=None):
        if _registered or name in self._busy:
            return None
        if name not in ("keras", "keras_hub") and not name.startswith("klm."):
            return None
        self._busy.add(name)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self._busy.discard(name)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_register(module):
            exec_module(module)
            module.__spec__._initializing = False
            _register_saveables()
            if _registered and self in sys.meta_path:
                sys.meta_path.remove(self)

        spec.loader.exec_module = exec_and_register
        return spec


if "keras" in sys.modules:
    _register_saveables()
elif not any(isinstance(finder, _RegisterAfterKerasImport) for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegisterAfterKerasImport())
