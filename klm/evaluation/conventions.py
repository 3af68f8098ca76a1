"""What lm-eval's `hf` model would do with a checkpoint, read without Transformers.

lm-eval's `HFLM` encodes every string with the checkpoint's Transformers
tokenizer (`tokenizer.encode(text)`, so with the special tokens that
tokenizer adds by default) and takes the model's context from its
`config.json`. klm tokenizes with its own keras-hub tokenizer, so to score
the same token ids it needs those two facts, read here from the checkpoint's
files:

- `adds_start_token(checkpoint)`: does `tokenizer.encode(text)` put the
  start (BOS) token first? Read from `tokenizer.json`'s post-processor (a
  `TemplateProcessing` whose single-sequence template starts with a special
  token, as Llama 3's does) or `tokenizer_config.json`'s `add_bos_token`.
  Without Transformers files (keras-hub presets, klm's own runs): when the
  checkpoint's preprocessor adds a start token distinct from its end token
  (Llama 3, Gemma, Mistral: yes; GPT-2, whose keras-hub preprocessor adds
  `<|endoftext|>` while Transformers' GPT-2 tokenizer adds nothing, and Qwen
  and klm runs: no).
- `context_length(checkpoint)`: `n_positions`, `max_position_embeddings` or
  `n_ctx` of `config.json` (what lm-eval's `resolve_max_length` reads first),
  else the backbone's positions, else lm-eval's default of 2048.
"""

import json
from pathlib import Path

from klm.generate import position_limit
from klm.sft.chat_template import _find_file

DEFAULT_MAX_LENGTH = 2048
_LENGTH_KEYS = ("n_positions", "max_position_embeddings", "n_ctx")


def transformers_source(checkpoint):
    """The Transformers checkpoint (local folder or `hf://` name) behind `checkpoint`, or `None`."""
    source = checkpoint.source or {}
    if source.get("kind") in ("hf_dir", "hf"):
        return source.get("name")
    pretrained = (checkpoint.config or {}).get("pretrained") or {}
    if pretrained.get("kind") in ("hf_dir", "hf"):
        return pretrained.get("name")
    return None


def _read_json(spec, name):
    """`name` of a Transformers checkpoint as a dict, or `None` when absent or unreadable."""

    path = _find_file(spec, name) if spec else None
    if path is None or not Path(path).is_file():
        return None
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _template_starts_with_special(processor):
    if not isinstance(processor, dict):
        return None
    if processor.get("type") == "Sequence":
        found = [_template_starts_with_special(p) for p in processor.get("processors", [])]
        found = [f for f in found if f is not None]
        return found[0] if found else None
    if processor.get("type") == "TemplateProcessing":
        single = processor.get("single") or []
        return bool(single) and "SpecialToken" in single[0]
    if processor.get("type") in ("BertProcessing", "RobertaProcessing"):
        return True
    return None


def adds_start_token(checkpoint):
    """Whether Transformers' `tokenizer.encode(text)` of this checkpoint starts with the start token."""
    spec = transformers_source(checkpoint)
    if spec is not None:
        config = _read_json(spec, "tokenizer_config.json") or {}
        tokenizer = _read_json(spec, "tokenizer.json")
        from_processor = _template_starts_with_special((tokenizer or {}).get("post_processor"))
        if from_processor is not None:
            return from_processor
        if isinstance(config.get("add_bos_token"), bool) and tokenizer is None:
            return config["add_bos_token"]  # a slow (SentencePiece) tokenizer reads it
        if tokenizer is not None:
            return False
    start = checkpoint.start_token_id
    return start is not None and start != checkpoint.end_token_id


def context_length(checkpoint):
    """The model's context in tokens, as lm-eval's `hf` model resolves it (module docstring)."""
    spec = transformers_source(checkpoint)
    config = _read_json(spec, "config.json") if spec is not None else None
    if config:
        sources = [config.get("text_config") or {}, config]
        for source in sources:
            for key in _LENGTH_KEYS:
                if isinstance(source.get(key), int):
                    return int(source[key])

    model = checkpoint.model
    limit = position_limit(model)
    if limit:
        return int(limit)
    length = getattr(model.backbone, "max_sequence_length", None)
    return int(length) if length else DEFAULT_MAX_LENGTH
