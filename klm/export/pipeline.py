"""`export_run`: the export from start to finish, in the parent process (any backend, no Keras).

Checks the run folder and the output folder, starts the TensorFlow build
worker, runs the TensorFlow-only check, compares it with the Keras model's
reference outputs, and only then renames the temporary folder to
`OUT/<version>` (a failure removes it, and any folder the export created).
"""

import os
import shutil
import tempfile
from pathlib import Path

from klm import runs
from klm.errors import ConfigError, RunDirError
from klm.export.cleanup import make_owned_dir, owned_name, stop_on_signals, sweep_stale
from klm.export.config import (
    DEFAULT_VERIFY_PROMPTS,
    DEFAULT_VERIFY_TEXTS,
    TEMP_PREFIX,
    ExportConfig,
    ExportError,
    check_portable,
    choose_version,
    tokenizer_kind,
    tokenizer_metadata,
)
from klm.export.verify import compare_with_reference, verification_calls
from klm.export.worker import TF_ONLY_PREFIX, call_in_tensorflow_only_process, run_build_worker
from klm.pretrained.resolve import CheckpointError, classify

# The build worker's scratch folder in $TMPDIR (named with the export's pid: see klm.export.cleanup).
SCRATCH_PREFIX = "klm-export-"


def _pretrained_spec(run_dir):
    """The checkpoint name when RUN is a pretrained checkpoint (not a klm run folder), else `None`."""

    try:
        kind = classify(run_dir)
    except CheckpointError:
        return None  # not a checkpoint name either: the run folder checks below say what is wrong
    if kind == "klm_run":
        return None
    return os.path.abspath(run_dir) if kind in ("hf_dir", "keras_hub_dir") else os.fspath(run_dir)


def _check_run(config):
    """Reads what the export needs from the run folder; raises `RunDirError`.

    RUN may also be a pretrained causal LM (a Transformers or keras-hub
    folder, `hf://`, a keras-hub preset): it is exported as it is, with its
    own tokenizer, like a run started from it.
    """
    spec = _pretrained_spec(config.run_dir)
    if spec is not None:
        # Its keras-hub tokenizer runs tensorflow-text ops (check_portable says so for --portable).
        metadata = {"class_name": "the checkpoint's keras-hub tokenizer", "registered_name": "keras_hub"}
        return {"task": "causal_lm", "export_checkpoint": spec}, spec, metadata, None
    run_dir = Path(config.run_dir)
    run_config = runs.read_run_config(run_dir)
    if not (run_dir / runs.SUMMARY_FILE).exists():
        raise RunDirError(
            f"{run_dir} is an unfinished run (no {runs.SUMMARY_FILE}): export a run after its training "
            f"finished (or resume it with the same command). Received: run_dir={str(run_dir)!r}"
        )
    checkpoint = runs.checkpoint_path(run_dir, config.checkpoint)
    metadata = tokenizer_metadata(run_dir)
    labels = None
    if runs.run_task(run_config).has_labels:
        try:
            labels = runs.read_json(run_dir / runs.LABELS_FILE)["labels"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise RunDirError(
                f"Expected {run_dir / runs.LABELS_FILE} with the class names of the classifier run ({e}). "
                f"Received: run_dir={str(run_dir)!r}"
            ) from None
    return run_config, checkpoint, metadata, labels


def export_run(config):
    """Exports a finished run folder as a TF Serving model version.

    Args:
        config: an `ExportConfig`.

    Returns:
        A dict: `path` (the version folder), `version`, `out_dir`,
        `run_dir`, `task`, `tokenizer`, `checkpoint`, `portable`,
        `signatures` (name -> inputs/outputs), `signatures_text` (as
        `saved_model_cli show` prints them), `custom_ops` (ops outside core
        TensorFlow), `verified` and `max_abs_diff` (per compared output).

    Raises:
        RunDirError: missing, unfinished or malformed run folder.
        ConfigError: OUT is a file, the version exists, `--portable` with a
            tokenizer that needs tensorflow-text.
        ExportError: the export or its check failed; the version folder is
            not written.

    Example:

    ```python
    result = export_run(ExportConfig(run_dir="runs/lm", out_dir="serving/lm"))
    print(result["path"])  # serving/lm/1
    ```
    """
    if not isinstance(config, ExportConfig):
        raise ConfigError(f"Expected an ExportConfig. Received: config of type {type(config).__name__}")
    run_config, checkpoint, metadata, labels = _check_run(config)
    if config.portable:
        check_portable(metadata)
    out_dir = Path(config.out_dir)
    version = choose_version(out_dir, config.version)
    task = run_config["task"]
    texts = list(config.verify_texts or DEFAULT_VERIFY_TEXTS)
    prompts = list(config.verify_prompts or DEFAULT_VERIFY_PROMPTS)

    with stop_on_signals():
        return _export(config, run_config, checkpoint, metadata, labels, out_dir, version, task, texts, prompts)


def _export(config, run_config, checkpoint, metadata, labels, out_dir, version, task, texts, prompts):
    """`export_run` once the run and OUT are checked (inside `stop_on_signals`: SIGTERM cleans up too)."""
    created = []
    for parent in reversed([out_dir, *out_dir.parents]):
        if not parent.exists():
            created.append(parent)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Folders a killed export left (named with its pid; klm's names only).
    sweep_stale(out_dir, TEMP_PREFIX)
    for prefix in (SCRATCH_PREFIX, TF_ONLY_PREFIX):
        sweep_stale(tempfile.gettempdir(), prefix)
    temp = out_dir / owned_name(TEMP_PREFIX)
    scratch = None
    try:
        scratch = make_owned_dir(SCRATCH_PREFIX)
        build = run_build_worker(
            {
                "run_dir": str(Path(config.run_dir).resolve()),
                "pretrained": run_config.get("export_checkpoint"),
                "checkpoint": config.checkpoint,
                "path": str(temp.resolve()),
                "texts": texts,
                "prompts": prompts,
                "max_new_tokens": config.verify_max_new_tokens,
                "reference": config.verify,
            },
            scratch,
            config.timeout_s,
        )
        check = call_in_tensorflow_only_process(
            temp,
            calls=verification_calls(task, texts, prompts, config.verify_max_new_tokens) if config.verify else (),
            load_text_ops=not config.portable,
            load=config.verify,
            timeout_s=config.timeout_s,
        )
        max_abs_diff = {}
        if config.verify:
            max_abs_diff = compare_with_reference(task, check, build["reference"], labels, config.tolerance)
        final = out_dir / str(version)
        if final.exists():  # another export took the version meanwhile
            raise ExportError(f"Version {version} appeared in {out_dir} during the export. Received: version={version}")
        os.rename(temp, final)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        for folder in reversed(created):
            try:
                folder.rmdir()  # only if still empty
            except OSError:
                break
        raise
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    return {
        "path": str(final),
        "version": version,
        "out_dir": str(out_dir),
        "run_dir": str(config.run_dir),
        "task": task,
        "tokenizer": build.get("tokenizer") or tokenizer_kind(metadata),
        "checkpoint": Path(checkpoint).name,
        "portable": config.portable,
        "backend": config.backend,
        "signatures": check["signatures"],
        "signatures_text": check["signatures_text"],
        "custom_ops": check["custom_ops"],
        "verified": config.verify,
        "max_abs_diff": max_abs_diff,
        "build": {k: v for k, v in build.items() if k != "reference"},
    }
