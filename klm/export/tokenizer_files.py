"""The tokenizer written beside an ONNX or LiteRT model: `tokenizer.json` where it expresses the tokenizer exactly.

- keras-hub byte-pair tokenizers (GPT-2, Llama 3, Qwen, Mistral, Gemma: a
  run started from a pretrained checkpoint, a keras-hub preset, a
  Transformers folder): keras-hub's Transformers exporter writes the
  tokenizer files (`tokenizer.json` for Llama 3, `vocab.json` +
  `merges.txt` for GPT-2, which are turned into a `tokenizer.json` here with
  the `tokenizers` library: byte-level BPE with GPT-2's split rule). The
  export's check tokenizes sample texts with it and compares with klm's ids.
- klm's own tokenizers (`word`, `wordpiece`, `sentencepiece`, `byte`) are
  TensorFlow graphs (tensorflow-text ops) with no exact `tokenizer.json`
  counterpart: the `word` rule is torchtext's `basic_english` regex list,
  `byte` maps UTF-8 bytes past klm's special ids, and WordPiece /
  SentencePiece differ from the `tokenizers` models in normalisation and
  unknown-word handling. Their files (`vocab.txt`, the SentencePiece
  `.model`, klm's `tokenizer.json` metadata) are copied to `tokenizer/`
  instead, and the result says why no `tokenizer.json` was written.
"""

import json
import os
import shutil
import tempfile

from klm import runs
from klm.errors import ConfigError


def _gpt2_tokenizer_json(vocab_path, merges_path, specials, target):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    tokenizer = Tokenizer(models.BPE.from_file(vocab_path, merges_path))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in specials])
    tokenizer.save(target)


def hf_tokenizer_json(tokenizer, folder):
    """Writes keras-hub `tokenizer`'s Transformers files into `folder`, `tokenizer.json` included; returns its path.

    Raises:
        ConfigError: keras-hub has no Transformers exporter for the tokenizer.
    """
    from keras_hub.src.utils.transformers.export.hf_exporter import MODEL_TOKENIZER_CONFIGS, export_tokenizer

    name = type(tokenizer).__name__
    if name not in MODEL_TOKENIZER_CONFIGS:
        raise ConfigError(
            f"keras-hub has no Transformers tokenizer exporter for {name} (it has: "
            f"{', '.join(sorted(MODEL_TOKENIZER_CONFIGS))}). Received: tokenizer={name!r}"
        )
    target = os.path.join(folder, "tokenizer.json")
    if not os.path.exists(target):
        export_tokenizer(tokenizer, folder)
    if not os.path.exists(target):  # GPT-2: vocab.json + merges.txt
        specials = sorted({t for t in getattr(tokenizer, "special_tokens", []) or [] if isinstance(t, str)})
        _gpt2_tokenizer_json(os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt"), specials, target)
    return target


def write_tokenizer(checkpoint, folder):
    """Writes the tokenizer files of `checkpoint` into `folder`.

    Returns:
        A dict: `tokenizer_json` (the path, or `None`), `files`, `reason`
        (why no `tokenizer.json`, or `None`).
    """

    tokenizer = checkpoint.tokenizer
    if not type(tokenizer).__module__.startswith("keras_hub"):
        return _copy_klm_tokenizer(checkpoint, folder)
    with tempfile.TemporaryDirectory(prefix="klm-tokenizer-") as scratch:
        try:
            hf_tokenizer_json(tokenizer, scratch)
        except ConfigError as e:
            return {"tokenizer_json": None, "files": [], "reason": str(e)}
        files = []
        for name in ("tokenizer.json", "tokenizer_config.json"):
            if os.path.exists(os.path.join(scratch, name)):
                shutil.copy(os.path.join(scratch, name), os.path.join(folder, name))
                files.append(name)
    return {"tokenizer_json": os.path.join(folder, "tokenizer.json"), "files": files, "reason": None}


def _metadata(checkpoint):

    path = os.path.join(checkpoint.run.path, runs.TOKENIZER_DIR, "tokenizer.json")
    try:
        with open(path) as f:
            return json.load(f)
    except OSError:
        return {}


def _copy_klm_tokenizer(checkpoint, folder):

    source = os.path.join(checkpoint.run.path, runs.TOKENIZER_DIR)
    kind = _metadata(checkpoint).get("kind", type(checkpoint.tokenizer).__name__)
    shutil.copytree(source, os.path.join(folder, "tokenizer"))
    return {
        "tokenizer_json": None,
        "files": ["tokenizer/"],
        "reason": (
            f"klm's {kind} tokenizer runs tensorflow-text ops and has no exact tokenizer.json equivalent; its "
            "files are in tokenizer/ (klm loads them)"
        ),
    }
