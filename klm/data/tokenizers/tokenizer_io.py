"""Saving tokenizers to a folder and loading them back.

A tokenizer folder holds `tokenizer.json` and the tokenizer's asset file:

- `tokenizer.json`: `{"format": "klm-tokenizer", "format_version": 1,
  "kind": "word" | "wordpiece" | "sentencepiece" | "byte",
  "class": "WordTokenizer", "config": {...layer config...},
  "vocabulary_size": N, "special_token_ids": {"pad": 0, "unk": 1,
  "start": 2, "end": 3}}`;
- `vocabulary.txt` (word, wordpiece: one token a line, ids in line order) or
  `vocabulary.spm` (sentencepiece: the serialized model proto); byte
  tokenizers have no asset.
"""

import json
import os

from klm.data.tokenizers.byte_tokenizer import ByteTokenizer
from klm.data.tokenizers.sentence_piece_tokenizer import SentencePieceTokenizer
from klm.data.tokenizers.word_piece_tokenizer import WordPieceTokenizer
from klm.data.tokenizers.word_tokenizer import WordTokenizer
from klm.errors import DataError

TOKENIZER_FILE = "tokenizer.json"
FORMAT_VERSION = 1
TOKENIZER_CLASSES = {
    "word": WordTokenizer,
    "wordpiece": WordPieceTokenizer,
    "sentencepiece": SentencePieceTokenizer,
    "byte": ByteTokenizer,
}
# Layer-config keys that describe one Keras object rather than the tokenizer.
_RUNTIME_KEYS = ("name", "trainable", "dtype", "config_file")


def tokenizer_kind(tokenizer):
    """The kind name (`"word"`, ...) of a klm tokenizer instance."""
    for kind, cls in TOKENIZER_CLASSES.items():
        if type(tokenizer) is cls:
            return kind
    raise DataError(
        f"Expected a klm tokenizer ({', '.join(c.__name__ for c in TOKENIZER_CLASSES.values())}). "
        f"Received: {type(tokenizer).__name__}"
    )


def special_token_ids(tokenizer):
    """A dict of the special-token ids: `pad`, `unk`, `start`, `end` (or None)."""
    return {name: getattr(tokenizer, f"{name}_token_id", None) for name in ("pad", "unk", "start", "end")}


def save_tokenizer(tokenizer, directory):
    """Saves a klm tokenizer into `directory` (created if needed).

    Args:
        tokenizer: a `WordTokenizer`, `WordPieceTokenizer`,
            `SentencePieceTokenizer` or `ByteTokenizer`.
        directory: the folder to write `tokenizer.json` and the asset into.

    Example:

    ```python
    save_tokenizer(tokenizer, "run/tokenizer")
    tokenizer = load_tokenizer("run/tokenizer")
    ```
    """
    kind = tokenizer_kind(tokenizer)
    os.makedirs(directory, exist_ok=True)
    config = {k: v for k, v in tokenizer.get_config().items() if k not in _RUNTIME_KEYS}
    config = {k: v for k, v in config.items() if k not in ("vocabulary", "proto")}
    if kind != "byte":
        tokenizer.save_assets(directory)
    metadata = {
        "format": "klm-tokenizer",
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "class": type(tokenizer).__name__,
        "config": config,
        "vocabulary_size": int(tokenizer.vocabulary_size()),
        "special_token_ids": special_token_ids(tokenizer),
    }
    with open(os.path.join(directory, TOKENIZER_FILE), "w", encoding="utf-8") as f:
        json.dump(metadata, f, indent=2, sort_keys=True)
        f.write("\n")


def read_tokenizer_metadata(directory):
    """Reads and checks `tokenizer.json` of a tokenizer folder."""
    path = os.path.join(directory, TOKENIZER_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            metadata = json.load(f)
    except FileNotFoundError:
        raise DataError(
            f"Expected a tokenizer folder with {TOKENIZER_FILE} (written by klm prepare or save_tokenizer). "
            f"Received: path={os.fspath(directory)!r}"
        ) from None
    except (OSError, ValueError) as e:
        raise DataError(f"Cannot read {path}: {e}. Received: path={path!r}") from None
    if metadata.get("format") != "klm-tokenizer" or metadata.get("kind") not in TOKENIZER_CLASSES:
        raise DataError(
            f"Expected {path} to describe a klm tokenizer of kind {', '.join(TOKENIZER_CLASSES)}. "
            f"Received: format={metadata.get('format')!r}, kind={metadata.get('kind')!r}"
        )
    if metadata.get("format_version", 0) > FORMAT_VERSION:
        raise DataError(
            f"Expected tokenizer format version <= {FORMAT_VERSION} (upgrade klm to read it). "
            f"Received: format_version={metadata.get('format_version')}"
        )
    return metadata


def load_tokenizer(directory):
    """Loads a tokenizer saved by `save_tokenizer` (or `klm prepare`).

    Args:
        directory: the tokenizer folder.

    Returns:
        The tokenizer layer, with the same vocabulary and special-token ids.

    Raises:
        DataError: when the folder or its files are missing or malformed, or
            when the loaded vocabulary size differs from the recorded one.
    """
    metadata = read_tokenizer_metadata(directory)
    cls = TOKENIZER_CLASSES[metadata["kind"]]
    tokenizer = cls(**metadata.get("config", {}))
    if metadata["kind"] != "byte":
        asset = tokenizer.file_assets[0]
        if not os.path.isfile(os.path.join(directory, asset)):
            raise DataError(f"Expected the tokenizer file {asset} in {directory}. Received: a folder without it")
        try:
            tokenizer.load_assets(directory)
        except (OSError, ValueError, RuntimeError) as e:
            raise DataError(f"Cannot load the tokenizer in {directory}: {e}") from None
    if tokenizer.vocabulary_size() != metadata.get("vocabulary_size"):
        raise DataError(
            f"Expected the tokenizer in {directory} to have {metadata.get('vocabulary_size')} tokens, as "
            f"{TOKENIZER_FILE} records. Received: vocabulary_size={tokenizer.vocabulary_size()}"
        )
    return tokenizer
