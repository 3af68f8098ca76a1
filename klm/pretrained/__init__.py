"""Pretrained checkpoints: keras-hub presets and Hugging Face models in, Hugging Face folders out.

- `load_checkpoint(spec, dtype=None)` -> `Checkpoint` (`.causal_lm`,
  `.backbone`, `.tokenizer`, `.preprocessor`, `.source`): klm run folders,
  keras-hub preset names, `kaggle://...`, `hf://ORG/NAME`, local keras-hub or
  Transformers folders (`klm.pretrained.checkpoint`).
- `evaluate_checkpoint`, `token_stream`, `lm_batches`, `hf_convention_loss`:
  perplexity with Transformers' causal-LM loss convention and tf.data
  batches with the checkpoint's tokenizer (`klm.pretrained.perplexity`).
- `apply_lora`, `merge_lora`, `parameter_counts`, `build_classifier`
  (`klm.pretrained.lora`).
- `export_hf(model, tokenizer, out_dir)`: a Transformers folder, verified
  by Transformers itself (`klm.pretrained.hf_export`).

Importing this package imports no Keras; the functions import it lazily.
"""

from klm.pretrained.checkpoint import (
    Checkpoint,
    CheckpointError,
    classify,
    is_checkpoint_spec,
    load_checkpoint,
    load_tokenizer,
    save_tokenizer,
)
from klm.pretrained.lora import apply_lora, build_classifier, lora_target_layers, merge_lora, parameter_counts
from klm.pretrained.perplexity import evaluate_checkpoint, hf_convention_loss, lm_batches, token_stream

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "classify",
    "is_checkpoint_spec",
    "load_checkpoint",
    "load_tokenizer",
    "save_tokenizer",
    "apply_lora",
    "build_classifier",
    "lora_target_layers",
    "merge_lora",
    "parameter_counts",
    "evaluate_checkpoint",
    "hf_convention_loss",
    "lm_batches",
    "token_stream",
]
