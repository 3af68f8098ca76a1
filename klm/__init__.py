"""klm: train causal Transformer language models on your own text with Keras 3.

Importing `klm` is cheap: it does not import Keras, so the backend can still
be chosen afterwards (`klm.backend.use_backend`). klm's saveable classes
(`KlmCausalLM`, `KlmClassifier`, its layers and tokenizers) register with
Keras where they are defined, as keras-hub's do: `import klm.models` before
`keras.saving.load_model("run/last.keras")`. klm's own loaders
(`klm.runs.load_model` and every command) import it themselves.
"""

__version__ = "0.1.0"
