"""klm: train causal Transformer language models on your own text with Keras 3.

Importing `klm` is cheap: it does not import Keras. Submodules that need Keras
(`klm.layers`, `klm.models`, `klm.train`, ...) import it when they are
imported, so choose the backend first (`klm.backend.use_backend`).
"""

__version__ = "0.1.0"
