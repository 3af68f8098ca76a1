"""What an export is asked to do: `ExportConfig`, `ExportError`, defaults, and the checks that need no Keras.

Holds the constants shared by the other modules (signature names, the
modules the TensorFlow-only check blocks, the verification defaults), the
tokenizer metadata of a run folder and the `--portable` rule, and the choice
of the version folder in a model base path. Nothing here imports Keras or
TensorFlow: the parent process of `klm export` runs it on any backend.
"""

import dataclasses
import math
import os
from collections.abc import Sequence
from pathlib import Path

from klm import backend as backend_lib
from klm import runs
from klm.errors import ConfigError, KlmError, RunDirError
from klm.tasks.causal_lm_task import LM_SIGNATURES  # noqa: F401 (re-exported)
from klm.tasks.classifier_task import CLASSIFIER_SIGNATURES  # noqa: F401 (re-exported)

CHECKPOINTS = ("best", "last")
# Tokenizers whose graph is made of core TensorFlow ops only.
PORTABLE_TOKENIZERS = ("word", "byte")
# Modules the serving check refuses to import: a SavedModel must not need them.
BLOCKED_MODULES = ("keras", "keras_hub", "keras_nlp", "tf_keras", "klm", "tensorflow_text")
DEFAULT_TOLERANCE = 1e-4
DEFAULT_VERIFY_TEXTS = (
    "the cat sat on the mat .",
    "Hello, world! This is a short test of the exported model.",
    "a",
)
DEFAULT_VERIFY_PROMPTS = ("the", "hello world", "")
TEMP_PREFIX = ".klm-export-"


class ExportError(KlmError):
    """Writing the SavedModel or checking it failed; nothing was left in OUT."""


@dataclasses.dataclass
class ExportConfig:
    """What `export_run` exports, and where.

    Attributes:
        run_dir: a finished run folder (`klm pretrain` / `klm finetune`).
        out_dir: the model base path; versions go to `out_dir/<version>/`.
        version: int >= 1, or `None` for one more than the highest version
            already in `out_dir` (1 for a new folder). An existing version is
            never overwritten.
        portable: require a graph of core TensorFlow ops only (stock TF
            Serving, no tensorflow-text custom ops); only `word` and `byte`
            tokenizers allow it.
        checkpoint: `"best"` (falls back to `last.keras`) or `"last"`.
        verify: reload and check the SavedModel in a TensorFlow-only process
            before publishing the version (recommended; off only skips the
            calls, the signatures are still printed).
        verify_texts: texts for the check (defaults to a few fixed ones).
        verify_prompts: prompts for the generation check (language models).
        verify_max_new_tokens: tokens generated per prompt in the check.
        tolerance: largest accepted absolute difference on probabilities and
            log-likelihoods between the SavedModel and the Keras model.
        backend: the Keras backend of the calling process (recorded only;
            the export itself always runs under TensorFlow in a subprocess).
        timeout_s: time limit of each subprocess, or `None`.
    """

    run_dir: str
    out_dir: str
    version: int | None = None
    portable: bool = False
    checkpoint: str = "best"
    verify: bool = True
    verify_texts: Sequence[str] | None = None
    verify_prompts: Sequence[str] | None = None
    verify_max_new_tokens: int = 8
    tolerance: float = DEFAULT_TOLERANCE
    backend: str | None = None
    timeout_s: float | None = None

    def __post_init__(self):
        for name in ("run_dir", "out_dir"):
            value = getattr(self, name)
            if not isinstance(value, (str, os.PathLike)) or not str(value):
                raise ConfigError(f"Expected {name} to be a non-empty path. Received: {name}={value!r}")
            setattr(self, name, os.fspath(value))
        if self.version is not None and (
            isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 1
        ):
            raise ConfigError(f"Expected --version to be an integer >= 1. Received: version={self.version!r}")
        for name in ("portable", "verify"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"Expected {name} to be True or False. Received: {name}={getattr(self, name)!r}")
        if self.checkpoint not in CHECKPOINTS:
            raise ConfigError(
                f"Expected --checkpoint in {', '.join(CHECKPOINTS)}. Received: checkpoint={self.checkpoint!r}"
            )
        for name in ("verify_texts", "verify_prompts"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, (str, bytes)) or not all(isinstance(t, str) for t in value) or not list(value):
                raise ConfigError(f"Expected {name} to be a non-empty list of strings. Received: {name}={value!r}")
            setattr(self, name, list(value))
        if (
            isinstance(self.verify_max_new_tokens, bool)
            or not isinstance(self.verify_max_new_tokens, int)
            or self.verify_max_new_tokens < 1
        ):
            raise ConfigError(
                "Expected verify_max_new_tokens to be an integer >= 1. "
                f"Received: verify_max_new_tokens={self.verify_max_new_tokens!r}"
            )
        if (
            isinstance(self.tolerance, bool)
            or not isinstance(self.tolerance, (int, float))
            or not (self.tolerance > 0 and math.isfinite(self.tolerance))
        ):
            raise ConfigError(f"Expected tolerance to be a positive number. Received: tolerance={self.tolerance!r}")
        if self.backend is not None:
            try:
                self.backend = backend_lib.normalize(self.backend)
            except backend_lib.BackendError as e:
                raise ConfigError(str(e)) from None
        if self.timeout_s is not None and not (
            isinstance(self.timeout_s, (int, float)) and not isinstance(self.timeout_s, bool) and self.timeout_s > 0
        ):
            raise ConfigError(
                f"Expected timeout_s to be a positive number or None. Received: timeout_s={self.timeout_s!r}"
            )


def tokenizer_metadata(run_dir):
    """`tokenizer/tokenizer.json` of a run folder (kind, config), without Keras."""
    path = Path(run_dir) / runs.TOKENIZER_DIR / "tokenizer.json"
    try:
        metadata = runs.read_json(path)
    except FileNotFoundError:
        raise RunDirError(
            f"{run_dir} has no tokenizer ({path} is missing). Expected a run folder written by "
            f"`klm pretrain` or `klm finetune`. Received: run_dir={str(run_dir)!r}"
        ) from None
    except (OSError, ValueError) as e:
        raise RunDirError(f"Cannot read {path}: {e}. Received: run_dir={str(run_dir)!r}") from None
    return metadata


def tokenizer_kind(metadata):
    """klm's tokenizer kind (`word`, `byte`, ...), or the keras-hub class of a pretrained run's (`GPT2Tokenizer`)."""
    return metadata.get("kind") or metadata.get("class_name")


def check_portable(metadata):
    """Raises `ConfigError` when the tokenizer needs ops outside core TensorFlow."""
    kind = tokenizer_kind(metadata)
    config = metadata.get("config") or {}
    if "registered_name" in metadata:  # a keras-hub tokenizer (a run started from a pretrained checkpoint)
        raise ConfigError(
            f"--portable needs a tokenizer made of core TensorFlow ops, but this run uses its pretrained "
            f"checkpoint's {kind}, which runs tensorflow-text custom ops (byte-pair regex splitting or "
            "SentencePiece). Export without --portable and serve the model with a TensorFlow Serving build that "
            f"includes the tensorflow-text ops. Received: tokenizer={kind!r}"
        )
    if kind not in PORTABLE_TOKENIZERS:
        raise ConfigError(
            f"--portable needs a tokenizer made of core TensorFlow ops ({' or '.join(PORTABLE_TOKENIZERS)}), "
            f"but this run uses a {kind} tokenizer, which runs tensorflow-text custom ops. Export without "
            "--portable and serve the model with a TensorFlow Serving build that includes the tensorflow-text "
            "ops, or train the run with --tokenizer word or --tokenizer byte. Received: tokenizer="
            f"{kind!r}"
        )
    if kind == "byte" and (config.get("lowercase") or config.get("normalization_form")):
        raise ConfigError(
            "--portable needs core TensorFlow ops only, but this run's byte tokenizer lower-cases or "
            "normalizes Unicode with tensorflow-text ops. Export without --portable (and serve with the "
            "tensorflow-text ops), or train with a plain byte or word tokenizer. Received: "
            f"lowercase={config.get('lowercase')!r}, normalization_form={config.get('normalization_form')!r}"
        )


def existing_versions(out_dir):
    """Sorted integer versions (numeric sub-folders) in a model base path."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return []
    return sorted(int(p.name) for p in out_dir.iterdir() if p.name.isdigit() and p.is_dir())


def choose_version(out_dir, version=None):
    """The version folder to write: `version`, or one past the highest present.

    Raises:
        ConfigError: `out_dir` is a file, or `version` already exists.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(
            f"Expected OUT to be a folder (the model base path that holds version folders), but it is a "
            f"file. Received: out_dir={str(out_dir)!r}"
        )
    versions = existing_versions(out_dir)
    if version is None:
        return (versions[-1] + 1) if versions else 1
    if (out_dir / str(version)).exists():
        raise ConfigError(
            f"Version {version} already exists in {out_dir}, and klm never overwrites a version. Use "
            f"--version {(versions[-1] + 1) if versions else version + 1} (or leave --version out to take the "
            f"next one), or remove {out_dir / str(version)} first. Received: version={version}"
        )
    return version
