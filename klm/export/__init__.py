"""`export_run`: a finished run folder -> a TF SavedModel that TF Serving loads.

Layout written (what `tensorflow_model_server --model_base_path=OUT` expects):

    OUT/
      1/                  one folder per version, never overwritten
        saved_model.pb    the graph (tokenizer vocabularies included)
        variables/        the weights
      2/ ...

Signatures (every one takes a batch of raw strings, `tf.string [None]`):

- classifier run: `serving_default(texts)` -> `probabilities` (float32
  `[batch, classes]`: softmax, or one sigmoid per class for multi-label
  runs), `label_id` (int32 `[batch]`, the most probable class) and `label`
  (string `[batch]`, its name from `labels.json`).
- language-model run: `serving_default(texts)` and `score(texts)` ->
  `log_likelihood` (float32 `[batch]`, natural log), `num_tokens` (int32) and
  `perplexity` (float32, `exp(-log_likelihood / num_tokens)`, 1 for an empty
  text). Each text is scored as a new document, truncated to the run's
  `seq_len` tokens: conditioned on the tokenizer's end-of-text token (the
  separator the training stream puts between documents), or, for a run
  started from a checkpoint whose preprocessor adds a start token (GPT-2,
  Llama 3), on that start token, as `klm evaluate` starts its documents.
  `generate(prompts, max_new_tokens)` -> `generated_text` (string, the
  continuation without the prompt) and `num_generated_tokens` (int32), greedy
  decoding. `generate_top_k(prompts, max_new_tokens, top_k, temperature,
  seed)` samples among the `top_k` most likely tokens, reproducibly for a
  seed. Generation runs in the graph: the prompts fill a key/value cache
  once (`klm.decoding.build_cache`: klm's `KlmCausalLM` or a keras-hub
  `CausalLM` such as GPT-2 or Llama, each with its own cache layout), then a
  `tf.while_loop` adds one token per step and stops when every row has
  produced the end-of-text token or `max_new_tokens` tokens. Prompts start
  as in `klm generate`: with the checkpoint's start token for a pretrained
  run that adds one, and an empty prompt starts from the end-of-text token.
- SFT run (`klm finetune --task sft`): the same signatures, but `generate`
  and `generate_top_k` take the user's RAW prompts and apply the run's
  prompt template inside the graph (`before + prompt + after` with the
  template's text, then the start token the run used, if any), exactly as
  `klm generate` does; the check compares the SavedModel's greedy text with
  `klm generate`'s (`klm.generate.generate_reply`) on the verify prompts.

How it runs: the parent process (any backend, it imports no Keras) checks the
run folder and the output folder, then starts a TensorFlow-backend worker
(`python -m klm.export build REQUEST.json`) that loads the `.keras`
checkpoint (the format is backend-neutral, so JAX and PyTorch runs export
too), writes the SavedModel through `keras.export.ExportArchive` into a
temporary folder inside OUT, and computes reference outputs with the Keras
model. A second, fresh process that can import only TensorFlow (the script
`tf_only_check.py`, run by its path; imports of `keras`, `keras_hub`,
`klm`, `tensorflow_text` fail there) loads the SavedModel, calls every
signature and reports what it got; the parent compares, and only then renames the
temporary folder to `OUT/<version>`. Non-portable exports load the
tensorflow-text op libraries (`tf.load_op_library`), as a TF Serving build
with those custom ops would; `portable=True` loads none, so the check proves
that stock TF Serving can run the model.

Modules (one concern each):

- `config`: `ExportConfig`, `ExportError`, constants, the `--portable` rule,
  the version folder.
- `pipeline`: `export_run` (parent process, no Keras).
- `worker`: the build worker and the TensorFlow-only check subprocesses.
- `tf_only_check`: the standalone script of that check (TensorFlow only).
- `archive`: the `keras.export.ExportArchive` and its endpoints.
- `signatures`: `classify_function`, `score_function` and the token rules.
- `generation`: the in-graph generation loop (`generate_function`).
- `core_ops`: tracing without XLA-only ops (the one private-Keras workaround).
- `reference`: the Keras model's outputs the check compares with.
- `verify`: the check's calls and comparison.

The other formats (`klm export --format hf|onnx|litert|gguf`) go through
`formats.export_to`, the dispatch by format: `onnx_format`,
`litert_format`, `gguf_format` (+ `gguf_tensors`), and
`klm.export.hf_format`; `publish` (temporary folder -> OUT, optional
runtimes, the isolated check), `tokenizer_files` and the standalone check
script `runtime_check.py` are theirs.
"""

from klm.export.archive import build_export_archive, tokenizer_resources
from klm.export.config import (
    BLOCKED_MODULES,
    CHECKPOINTS,
    CLASSIFIER_SIGNATURES,
    DEFAULT_TOLERANCE,
    DEFAULT_VERIFY_PROMPTS,
    DEFAULT_VERIFY_TEXTS,
    LM_SIGNATURES,
    PORTABLE_TOKENIZERS,
    TEMP_PREFIX,
    ExportConfig,
    ExportError,
    check_portable,
    choose_version,
    existing_versions,
    tokenizer_kind,
    tokenizer_metadata,
)
from klm.export.generation import generate_function
from klm.export.pipeline import export_run
from klm.export.reference import keras_reference
from klm.export.signatures import classify_function, score_function, sft_prompt_parts
from klm.export.verify import compare_with_reference, verification_calls
from klm.export.worker import call_in_tensorflow_only_process

__all__ = [
    "BLOCKED_MODULES",
    "CHECKPOINTS",
    "CLASSIFIER_SIGNATURES",
    "DEFAULT_TOLERANCE",
    "DEFAULT_VERIFY_PROMPTS",
    "DEFAULT_VERIFY_TEXTS",
    "LM_SIGNATURES",
    "PORTABLE_TOKENIZERS",
    "TEMP_PREFIX",
    "ExportConfig",
    "ExportError",
    "build_export_archive",
    "call_in_tensorflow_only_process",
    "check_portable",
    "choose_version",
    "classify_function",
    "compare_with_reference",
    "existing_versions",
    "export_run",
    "generate_function",
    "keras_reference",
    "score_function",
    "sft_prompt_parts",
    "tokenizer_kind",
    "tokenizer_metadata",
    "tokenizer_resources",
    "verification_calls",
]
