"""`ExportOptions`: the options of `klm export`, for every `--format`, checked before anything is loaded.

Each field with a help text is a `klm export` flag (`klm.cli.options.options_from`).
`klm.export.formats.export_with(options)` runs the export they describe. Nothing
here imports Keras.
"""

import dataclasses
import os

from klm.config import check_fields, option
from klm.errors import ConfigError
from klm.export.config import CHECKPOINTS, ExportConfig

FORMATS = ("savedmodel", "hf", "onnx", "litert", "gguf")
GGUF_TYPES = ("f32", "f16", "q8_0")


@dataclasses.dataclass
class ExportOptions:
    """Options of `klm export RUN OUT` (`export_to`'s arguments).

    Args:
        source: RUN: a klm run folder (every format) or, except for
            `savedmodel`, any checkpoint name `load_checkpoint` takes.
        out_dir: OUT (`savedmodel`: the model base path that gets a new
            version; others: a new folder).
        version, portable: `savedmodel` only: the version folder (default:
            the next one) and whether the graph must use core TensorFlow ops only.
        checkpoint: `"best"` or `"last"` (klm runs).
        verify: check the export in its own runtime before publishing it.
        max_new_tokens: greedy tokens compared by the `savedmodel` and `gguf` checks.
        format: one of `FORMATS`.
        gguf_type: `gguf` only: `"f32"`, `"f16"`, `"q8_0"` or `None` (the model's precision).
        litert_sequence_length: `litert` only: the fixed sequence length.
        json: `klm export` prints the result as JSON.
        backend: the Keras backend (recorded).

    `savedmodel_config` is the `ExportConfig` of a `savedmodel` export (else `None`).

    Example:

    ```python
    from klm.export.formats import export_with
    from klm.export.options import ExportOptions
    export_with(ExportOptions(source="runs/lm", out_dir="out/lm-gguf", format="gguf", gguf_type="q8_0"))
    ```
    """

    source: str
    out_dir: str
    version: int | None = option(
        None,
        "Version folder to write (an integer >= 1). An existing version is never overwritten.",
        default_help="one more than the highest version in OUT, 1 for a new OUT",
    )
    portable: bool = option(
        False,
        "Require a graph of core TensorFlow ops only, for stock TF Serving without the tensorflow-text "
        "ops (word and byte tokenizers).",
    )
    checkpoint: str = option(
        "best", "Which checkpoint of the run to export (best falls back to last).", choices=CHECKPOINTS
    )
    verify: bool = option(
        True,
        "Reload the SavedModel in a TensorFlow-only process and compare every signature with the Keras "
        "model before publishing the version.",
        flag="--verify/--no-verify",
        default_help="verify",
    )
    max_new_tokens: int = option(
        8, "Tokens generated per prompt when checking a language model's generate signatures.", check="positive"
    )
    format: str = option(
        "savedmodel",
        "savedmodel: a TF SavedModel version for TF Serving. hf: a Hugging Face Transformers folder OUT "
        "(config.json, model.safetensors, tokenizer files) for a causal LM whose architecture keras-hub can export "
        "(GPT-2, Llama 3, Mistral, Qwen 2, Gemma). onnx: OUT/model.onnx (token_ids + padding_mask in, logits or a "
        "classifier's probabilities out, dynamic batch and sequence) + tokenizer.json, checked in ONNX Runtime. "
        "litert: OUT/model.tflite (fixed shape, --backend tensorflow), checked in the LiteRT interpreter. gguf: "
        "OUT/model.gguf for llama.cpp (GPT-2, Llama, Qwen 3), checked in llama-cpp-python. For every format but "
        "savedmodel RUN may also be any checkpoint name (keras-hub preset, hf://ORG/NAME, a local folder).",
        choices=FORMATS,
    )
    gguf_type: str | None = option(
        None,
        "--format gguf: the weights' type.",
        choices=GGUF_TYPES,
        default_help="the model's own precision (f32 for a float32 model)",
    )
    litert_sequence_length: int | None = option(
        None,
        "--format litert: the fixed sequence length of the model's inputs.",
        check="positive",
        default_help="the run's seq_len, else 128",
    )
    json: bool = option(False, "Print the result as JSON.")
    backend: str | None = None
    savedmodel_config: ExportConfig | None = dataclasses.field(default=None, init=False)

    def __post_init__(self):
        for name, label in (("source", "RUN"), ("out_dir", "OUT")):
            value = getattr(self, name)
            value = os.fspath(value) if isinstance(value, os.PathLike) else value
            if not isinstance(value, str) or not value:
                raise ConfigError(f"Expected {label} to be a non-empty path. Received: {label}={value!r}")
            setattr(self, name, value)
        check_fields(self)
        if self.version is not None and self.version < 1:
            raise ConfigError(f"Expected a version >= 1. Received: --version={self.version}")
        if self.format != "savedmodel" and (self.version is not None or self.portable):
            raise ConfigError(
                f"--version and --portable apply to --format savedmodel only. Received: --format={self.format}"
            )
        if self.gguf_type is not None and self.format != "gguf":
            raise ConfigError(f"--gguf-type applies to --format gguf only. Received: --format={self.format}")
        if self.litert_sequence_length is not None and self.format != "litert":
            raise ConfigError(
                f"--litert-sequence-length applies to --format litert only. Received: --format={self.format}"
            )
        if self.format == "savedmodel":
            self.savedmodel_config = ExportConfig(
                run_dir=self.source,
                out_dir=self.out_dir,
                version=self.version,
                portable=self.portable,
                checkpoint=self.checkpoint,
                verify=self.verify,
                verify_max_new_tokens=self.max_new_tokens,
                backend=self.backend,
            )
