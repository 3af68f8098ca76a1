"""A run's tokenizer folder in either format: klm's tokenizers or keras-hub's.

A run started from a pretrained checkpoint keeps the checkpoint's keras-hub
tokenizer (`GPT2Tokenizer`, `Llama3Tokenizer`, ...), saved with keras-hub's
`save_to_preset`; other runs keep klm's own format (`klm.data.save_tokenizer`).
`save_tokenizer` writes either, `load_tokenizer` reads either.
"""

import json
import os
from pathlib import Path

from klm.pretrained.resolve import CheckpointError, read_json


def is_keras_hub_tokenizer_folder(directory):
    path = Path(directory) / "tokenizer.json"
    if not path.exists():
        return False
    try:
        return "registered_name" in json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False


def save_tokenizer(tokenizer, directory):
    """Saves a run's tokenizer folder: klm's format for klm tokenizers, keras-hub's for the others.

    keras-hub tokenizers (`GPT2Tokenizer`, `Llama3Tokenizer`, ...) are saved
    with `save_to_preset` (`tokenizer.json` with a `registered_name` +
    `assets/tokenizer/`); `load_tokenizer` tells the two apart.
    """
    from klm.data.tokenizers.tokenizer_io import TOKENIZER_CLASSES

    if type(tokenizer) in TOKENIZER_CLASSES.values():
        from klm.data import save_tokenizer as save_klm_tokenizer

        return save_klm_tokenizer(tokenizer, directory)
    os.makedirs(directory, exist_ok=True)
    tokenizer.save_to_preset(os.fspath(directory))


def load_tokenizer(directory):
    """Loads a tokenizer folder written by `save_tokenizer` (either format)."""
    directory = os.fspath(directory)
    path = os.path.join(directory, "tokenizer.json")
    metadata = read_json(Path(path)) if os.path.exists(path) else {}
    if "registered_name" in metadata:
        import keras
        import keras_hub  # noqa: F401 - registers keras-hub's tokenizer classes

        try:
            tokenizer = keras.saving.deserialize_keras_object(metadata)
            tokenizer.load_preset_assets(directory)
            return tokenizer
        except (OSError, ValueError, TypeError) as e:
            raise CheckpointError(f"Cannot load the keras-hub tokenizer in {directory}: {e}") from None
    from klm.data import load_tokenizer as load_klm_tokenizer

    return load_klm_tokenizer(directory)
