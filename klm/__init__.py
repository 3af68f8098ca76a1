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


def _register_saveables():
    import klm.layers  # noqa: F401 - the decorators register the classes
    import klm.models  # noqa: F401


class _RegisterAfterKerasImport(importlib.abc.MetaPathFinder):
    """Runs `_register_saveables` right after the first `import keras` of the process."""

    def find_spec(self, name, path, target=None):
        if name != "keras":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec("keras")
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_register(module):
            exec_module(module)
            _register_saveables()

        spec.loader.exec_module = exec_and_register
        return spec


if "keras" in sys.modules:
    _register_saveables()
elif not any(isinstance(finder, _RegisterAfterKerasImport) for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegisterAfterKerasImport())
