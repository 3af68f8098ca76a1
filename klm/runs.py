"""Run folders: what a training run leaves on disk (the layout only; `klm.pretrained.checkpoint.load_run`
loads one back, with its model and tokenizer).

Layout of `runs/NAME/` (written by `klm.train`):

    config.json       the fully resolved config ("task": "causal_lm" | "classifier")
    tokenizer/        tokenizer assets (`klm.data.save_tokenizer`)
    labels.json       classifier only: {"labels": [...], "multi_label": bool}
    last.keras        model after the most recent epoch (or interruption)
    best.keras        model with the best validation score so far
    backup/           Keras BackupAndRestore state, for resuming after a kill
    metrics.csv       one row per logged step / epoch
    tensorboard/      TensorBoard event files
    curves.png        loss and perplexity (or accuracy) curves
    summary.json      written last: a run with it is finished

Every file is written to a temporary name in the same folder and renamed into
place, so a kill never leaves a half-written checkpoint.
"""

import contextlib
import dataclasses
import json
import os
import tempfile
from pathlib import Path

from klm.errors import KlmError, RunDirError
from klm.tasks import get_task, model_families, task_for_config

CONFIG_FILE = "config.json"
SUMMARY_FILE = "summary.json"
LABELS_FILE = "labels.json"
TOKENIZER_DIR = "tokenizer"


@contextlib.contextmanager
def atomic_path(path, suffix=""):
    """Yields a temporary path beside `path`; renames it onto `path` on success.

    Works for files and folders. On error the temporary path is removed and
    `path` keeps its previous content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    os.unlink(tmp)
    try:
        yield tmp
        if Path(tmp).is_dir() and path.is_dir():
            import shutil

            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if os.path.isdir(tmp):
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path, data):
    """Writes JSON atomically (temp file + rename)."""
    with atomic_path(path, ".json") as tmp:
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True, default=str)
            f.write("\n")


def read_json(path):
    with open(path) as f:
        return json.load(f)


def save_model(model, path, write=True):
    """Saves a `.keras` file atomically (a kill leaves the old file intact).

    With `write=False` (processes other than 0 of a multi-process run) the
    model is still serialised, to a scratch file that is then deleted:
    reading sharded weights is a collective operation that every process
    must join, but only process 0 keeps the file.
    """
    if not write:
        with tempfile.TemporaryDirectory(prefix="klm-scratch-") as scratch:
            model.save(os.path.join(scratch, "model.keras"))
        return
    with atomic_path(path, ".keras") as tmp:
        model.save(tmp)


def load_model(path):
    """Loads a `.keras` checkpoint for inference or further training (safe mode).

    The optimizer state saved beside the weights is for `BackupAndRestore`
    resumes; a model loaded here gets a fresh `compile()`, so Keras's
    warning about skipping that state is silenced.
    """
    import warnings
    import zipfile

    import keras

    import klm.layers  # noqa: F401 - registers klm's serializable classes
    import klm.models  # noqa: F401

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        try:
            return own_quantization_policies(keras.saving.load_model(str(path), safe_mode=True, compile=False))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            if not Path(path).exists():
                raise RunDirError(f"Checkpoint not found. Received: path={str(path)!r}") from e
            if not zipfile.is_zipfile(path):
                raise RunDirError(
                    f"{path} is damaged or incomplete: not a complete .keras (zip) archive, e.g. a truncated copy. "
                    "If the run folder has a resume backup, re-run the training command to rebuild it; or delete "
                    "the file (best.keras falls back to last.keras)."
                ) from e
            raise RunDirError(
                f"{path} could not be read: it is damaged or incomplete ({type(e).__name__}: "
                f"{str(e).splitlines()[0] if str(e) else 'no detail'}). If the run folder has a resume backup, re-run "
                "the training command to rebuild it; or delete the file (best.keras falls back to last.keras)."
            ) from e


def own_quantization_policies(model):
    """Gives each quantized layer of a loaded `model` its own dtype policy; returns `model`.

    A quantized backbone reloads with a `DTypePolicyMap` (`{layer path:
    policy}`) as its `dtype`, and every sublayer holds that map. Keras 3.15.1
    resolves the map in `Layer.quantization_mode`, but `Dense`, `EinsumDense`
    and `Embedding` read `self.dtype_policy.quantization_mode` (the map's:
    None) when they save, so a reloaded int8/int4 model (QLoRA included)
    saved its scales as `None` ("Invalid dtype: object"). With the layer's
    own policy both agree, as they do right after `model.quantize()`. The
    backbone keeps the map: its config is what reloads the file.
    """
    from keras.dtype_policies import DTypePolicyMap

    for layer in model._flatten_layers(include_self=False):
        policy = getattr(layer, "_dtype_policy", None)
        if isinstance(policy, DTypePolicyMap) and layer.path and layer.quantization_mode is not None:
            # Not the `dtype_policy` setter: with a map it writes into the map instead.
            layer._dtype_policy = policy[layer.path]
    return model


@dataclasses.dataclass
class Run:
    """A loaded run folder.

    Attributes:
        path: the run folder.
        config: the resolved config dict (`config.json`).
        task: `"causal_lm"` or `"classifier"`.
        model: the Keras model (`KlmCausalLM` or `KlmClassifier`).
        tokenizer: the tokenizer layer.
        labels: class names (classifier) or `None`.
        multi_label: bool.
        summary: `summary.json` content.
    """

    path: Path
    config: dict
    task: str
    model: object
    tokenizer: object
    labels: list = None
    multi_label: bool = False
    summary: dict = None

    @property
    def seq_len(self):
        return int(self.config.get("seq_len", 128))

    @property
    def mode(self):
        """The registered `klm.tasks.Task` that made this run (what callers ask instead of comparing `task`)."""
        return run_task(self.config) if self.config.get("task") else get_task(self.task)


def read_run_config(run_dir):
    """Reads `config.json` of a run folder with clear errors; imports no Keras."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise RunDirError(f"Run folder does not exist. Received: run_dir={str(run_dir)!r}")
    if not run_dir.is_dir():
        raise RunDirError(f"Expected a run folder, got a file. Received: run_dir={str(run_dir)!r}")
    config_path = run_dir / CONFIG_FILE
    if not config_path.exists():
        raise RunDirError(
            f"{run_dir} is not a klm run folder (no {CONFIG_FILE}). "
            f"Expected the --run-dir of `klm pretrain` or `klm finetune`. Received: run_dir={str(run_dir)!r}"
        )
    config = read_json(config_path)
    if config.get("task") not in model_families():
        raise RunDirError(f"{config_path}: expected task in {model_families()}. Received: task={config.get('task')!r}")
    run_task(config, config_path)  # a run of a known model family with an unknown finetune_task fails here
    return config


def run_task(config, source=CONFIG_FILE):
    """The registered `klm.tasks.Task` that wrote a run folder's `config` (its `config.json`).

    Raises:
        RunDirError: no registered task matches the config's `task`/`finetune_task`.
    """
    try:
        return task_for_config(config, source=str(source))
    except KlmError as error:
        raise RunDirError(str(error)) from None


def checkpoint_path(run_dir, which="best"):
    """Path of `best.keras` (falling back to `last.keras`) or `last.keras`."""
    run_dir = Path(run_dir)
    candidates = ["best.keras", "last.keras"] if which == "best" else [f"{which}.keras"]
    for name in candidates:
        if (run_dir / name).exists():
            return run_dir / name
    raise RunDirError(
        f"{run_dir} holds no checkpoint ({' or '.join(candidates)}): the run has not finished an epoch yet. "
        f"Resume it with the same `klm pretrain`/`klm finetune` command. Received: run_dir={str(run_dir)!r}"
    )
