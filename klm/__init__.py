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
# keras_hub imports keras while it initialises; klm's classes import both, so
# they are registered once neither is half-imported.
_WATCHED = ("keras", "keras_hub")


def _register_saveables():
    global _registered
    if _registered:
        return
    for name in _WATCHED:
        module = sys.modules.get(name)
        if module is not None and getattr(getattr(module, "__spec__", None), "_initializing", False):
            return  # registered when that import completes
    _registered = True
    import klm.layers  # noqa: F401 - the decorators register the classes
    import klm.models  # noqa: F401


class _RegisterAfterKerasImport(importlib.abc.MetaPathFinder):
    """Registers klm's classes right after `keras` (and `keras_hub`, if it comes first) finish importing."""

    def find_spec(self, name, path, target=None):
        if name not in _WATCHED or _registered:
            return None
        spec = importlib.util.find_spec(name) if self._enter(name) else None
        self._leave(name)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_register(module):
            exec_module(module)
            module.__spec__._initializing = False
            if name == "keras" or "keras" in sys.modules:
                _register_saveables()
            if _registered and self in sys.meta_path:
                sys.meta_path.remove(self)

        spec.loader.exec_module = exec_and_register
        return spec

    # find_spec above calls importlib.util.find_spec, which consults this
    # finder again: answer None to that inner call.
    _busy = set()

    def _enter(self, name):
        if name in self._busy:
            return False
        self._busy.add(name)
        return True

    def _leave(self, name):
        self._busy.discard(name)


if "keras" in sys.modules:
    _register_saveables()
elif not any(isinstance(finder, _RegisterAfterKerasImport) for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegisterAfterKerasImport())
