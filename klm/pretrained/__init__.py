"""Pretrained checkpoints: keras-hub presets and Hugging Face models in, Hugging Face folders out.

- `load_checkpoint(spec, dtype=None)` -> `Checkpoint` (`.causal_lm`,
  `.backbone`, `.tokenizer`, `.preprocessor`, `.source`): klm run folders,
  keras-hub preset names, `kaggle://...`, `hf://ORG/NAME`, local keras-hub or
  Transformers folders (`klm.pretrained.checkpoint`; names, and the errors for
  names that cannot be loaded, in `klm.pretrained.resolve`).
- `save_tokenizer`, `load_tokenizer`: a run's tokenizer folder, klm's or
  keras-hub's format (`klm.pretrained.tokenizer_io`).
- `evaluate_checkpoint`, `token_stream`, `lm_batches`, `hf_convention_loss`:
  perplexity with Transformers' causal-LM loss convention and tf.data
  batches with the checkpoint's tokenizer (`klm.pretrained.perplexity`).
- `apply_lora`, `merge_lora`, `parameter_counts`, `build_classifier`
  (`klm.pretrained.lora`).
- `export_hf(model, tokenizer, out_dir)`: a Transformers folder, verified
  by Transformers itself (`klm.export.hf_format`).
- `estimate_checkpoint`, `format_checkpoint_report`: parameters, memory and
  step time of fine-tuning a checkpoint, `klm estimate --from`
  (`klm.pretrained.checkpoint_estimate`; not imported here).

Importing this package imports no Keras; the functions import it lazily.
"""

from klm.pretrained.checkpoint import Checkpoint, load_checkpoint, load_run
from klm.pretrained.lora import apply_lora, build_classifier, lora_target_layers, merge_lora, parameter_counts
from klm.pretrained.perplexity import evaluate_checkpoint, hf_convention_loss, lm_batches, token_stream
from klm.pretrained.resolve import CheckpointError, classify, is_checkpoint_spec
from klm.pretrained.tokenizer_io import load_tokenizer, save_tokenizer

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "classify",
    "is_checkpoint_spec",
    "load_checkpoint",
    "load_run",
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
