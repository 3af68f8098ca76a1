"""Loading a checkpoint: klm runs, keras-hub presets, Hugging Face models.

`load_checkpoint(spec)` returns a `Checkpoint` (model, tokenizer,
preprocessor, source); `load_backbone(spec)` the backbone alone, with or
without its weights (`klm estimate`); `causal_lm_class(backbone)` the
keras-hub `CausalLM` class that goes with a backbone. `spec` is any name
`klm.pretrained.resolve` recognizes (a klm run folder, a keras-hub preset
name, `kaggle://...`, `hf://ORG/NAME`, a local keras-hub or Transformers
folder) and is checked there first.

Everything except klm runs is loaded by keras-hub itself
(`keras_hub.models.CausalLM.from_preset`, whose Transformers loader converts
Hugging Face configs and safetensors weights with `keras_hub.src.utils.
transformers.convert_*`). Downloads go to the usual caches (`~/.cache/
huggingface`, `~/.cache/kagglehub`). keras-hub's own failures that a user can
fix (a missing file, no network, not a causal LM) are raised as
`CheckpointError` (a `KlmError`: exit status 2 in the CLI) that says which.
"""

import dataclasses
import json
import os
from pathlib import Path

from klm import runs
from klm.errors import RunDirError
from klm.pretrained.resolve import (
    CheckpointError,
    check_dtype,
    check_hf_dir,
    check_keras_hub_preset_name,
    check_model_type,
    classify,
    prepare_download,
    read_json,
    temporary_env,
)
from klm.pretrained.tokenizer_io import load_tokenizer
from klm.tasks import get_task


@dataclasses.dataclass
class Checkpoint:
    """A loaded checkpoint: model, tokenizer and where it came from.

    Attributes:
        model: the Keras model: a keras-hub `CausalLM` (`GPT2CausalLM`,
            `Llama3CausalLM`, `Qwen3CausalLM`, ...), a `KlmCausalLM`, or a
            `KlmClassifier` (a classifier run).
        tokenizer: the checkpoint's own tokenizer layer (keras-hub's for
            keras-hub and Hugging Face checkpoints, klm's for klm runs).
        preprocessor: the keras-hub `CausalLMPreprocessor`, or `None`.
        source: JSON-ready description to record in a run's `config.json`:
            `kind`, `name`, `architecture` (the task class), `backbone`,
            `dtype`, plus `model_type` for Hugging Face checkpoints.
        task: `"causal_lm"` or `"classifier"`.
        run: the `klm.runs.Run` when the checkpoint is a klm run folder.
        add_start_token: whether documents and prompts start with the
            tokenizer's start token; `None` follows the preprocessor.
    """

    model: object
    tokenizer: object
    preprocessor: object = None
    source: dict = dataclasses.field(default_factory=dict)
    task: str = "causal_lm"
    run: object = None
    add_start_token: bool = None

    @property
    def mode(self):
        """The registered `klm.tasks.Task` of this checkpoint (a klm run's own; else the model family's)."""
        return self.run.mode if self.run is not None else get_task(self.task)

    @property
    def causal_lm(self):
        """The causal LM (`CheckpointError` for a classifier run)."""
        if not self.mode.generates:
            raise CheckpointError(
                f"Expected a language-model checkpoint. Received: {self.source.get('name')!r} (task={self.task!r})"
            )
        return self.model

    @property
    def backbone(self):
        return self.model.backbone

    @property
    def config(self):
        """A run's `config.json`, or `{}` (lets a `Checkpoint` stand in for a `Run`)."""
        return self.run.config if self.run is not None else {}

    @property
    def path(self):
        return self.source.get("name")

    @property
    def start_token_id(self):
        """The id to put before a document, or `None` when the checkpoint adds none.

        keras-hub's `CausalLMPreprocessor`s add the tokenizer's start token
        (`add_start_token=True`: `<|endoftext|>` for GPT-2,
        `<|begin_of_text|>` for Llama 3); klm runs and Qwen (no start token)
        add none.
        """
        add = self.add_start_token
        if add is None:
            add = self.preprocessor is not None and bool(getattr(self.preprocessor, "add_start_token", False))
        return getattr(self.tokenizer, "start_token_id", None) if add else None

    @property
    def end_token_id(self):
        return getattr(self.tokenizer, "end_token_id", None)

    def __repr__(self):
        return f"<Checkpoint {self.source.get('kind')} {self.source.get('name')!r} {self.source.get('architecture')}>"


def load_checkpoint(spec, dtype=None, which="best"):
    """Loads the checkpoint `spec` names: a causal LM (or classifier run) and its tokenizer.

    Args:
        spec: a klm run folder, a keras-hub preset name, `kaggle://...`,
            `hf://ORG/NAME`, or a local keras-hub / Transformers folder.
        dtype: `None` (the checkpoint's own: float32 for Transformers
            float32/bfloat16 weights converted by keras-hub unless set),
            `"float32"`, `"bfloat16"`, `"float16"` or a mixed policy
            (`"mixed_bfloat16"`). `"bfloat16"` halves the memory of big
            checkpoints (`--precision bfloat16`). klm runs keep their dtype.
        which: klm runs only: `"best"` or `"last"`.

    Returns:
        A `Checkpoint`.

    Raises:
        CheckpointError: unknown name, missing file, architecture keras-hub
            cannot convert, no network (the message says which).

    Example:

    ```python
    ckpt = load_checkpoint("hf://openai-community/gpt2", dtype="bfloat16")
    ckpt.causal_lm.generate("The history of", max_length=30)
    ```
    """
    check_dtype(dtype)
    spec = os.fspath(spec)
    kind = classify(spec)
    import keras  # noqa: F401 - before keras_hub, so klm's classes register after Keras, not inside keras_hub

    if kind == "klm_run":
        return _load_klm_run(spec, which)
    model_type = None
    if kind == "keras_hub_preset":
        check_keras_hub_preset_name(spec)
    elif kind == "hf_dir":
        model_type = check_hf_dir(Path(spec))
    env = prepare_download(kind, spec)
    name = os.path.abspath(spec) if kind in ("hf_dir", "keras_hub_dir") else spec
    with temporary_env(env):
        causal_lm = _from_preset(spec, kind, dtype)
        if kind == "hf" and model_type is None:
            model_type = _hf_model_type(spec)
    preprocessor = causal_lm.preprocessor
    tokenizer = getattr(preprocessor, "tokenizer", None)
    if tokenizer is None:
        raise CheckpointError(
            f"{spec} has no tokenizer keras-hub can load (a preset saved without its preprocessor?). "
            f"Received: checkpoint={spec!r}"
        )
    source = {
        "kind": kind,
        "name": name,
        "architecture": type(causal_lm).__name__,
        "backbone": type(causal_lm.backbone).__name__,
        "tokenizer": type(tokenizer).__name__,
        "dtype": causal_lm.dtype_policy.name,
        "add_start_token": bool(getattr(preprocessor, "add_start_token", False)),
    }
    if model_type:
        source["model_type"] = model_type
    return Checkpoint(model=causal_lm, tokenizer=tokenizer, preprocessor=preprocessor, source=source)


def load_backbone(spec, dtype=None, which="best", load_weights=True):
    """The backbone of the checkpoint `spec` names, without task head, preprocessor or tokenizer.

    `spec` is resolved exactly as `load_checkpoint` resolves it (same kinds,
    same `CheckpointError`s). With `load_weights=False` only the model's
    configuration is read -- `config.json` of a Transformers or keras-hub
    checkpoint (the only file downloaded for `hf://` and keras-hub presets),
    the model config inside a klm run's `.keras` file -- and the backbone is
    built from it with freshly initialized weights (`klm estimate`). Called
    inside `keras.StatelessScope(initialize_variables=False)`, it allocates
    no weights at all: the variables keep only their shapes and dtypes.

    Args:
        spec, dtype, which: as for `load_checkpoint`.
        load_weights: read the checkpoint's weights (`False`: config only).

    Returns:
        `(backbone, source)`: a keras-hub `Backbone` of a causal LM (or a
        `KlmBackbone`) and a dict like `Checkpoint.source` (`kind`, `name`,
        `backbone`, `dtype`, `model_type` for Transformers checkpoints,
        `task` for klm runs, `weights_loaded`).

    Raises:
        CheckpointError: as `load_checkpoint`; also a Transformers or
            keras-hub model that is not a causal language model.
    """
    check_dtype(dtype)
    spec = os.fspath(spec)
    kind = classify(spec)
    import keras  # noqa: F401 - before keras_hub (see load_checkpoint)

    if kind == "klm_run":
        return _klm_run_backbone(spec, which, load_weights)
    import keras_hub

    model_type = None
    if kind == "keras_hub_preset":
        check_keras_hub_preset_name(spec)
    elif kind == "hf_dir":
        if load_weights:
            model_type = check_hf_dir(Path(spec))
        else:  # only config.json is read: weights and tokenizer files may be absent
            config = read_json(Path(spec) / "config.json")
            model_type = config.get("model_type")
            check_model_type(model_type, spec, config)
    env = prepare_download(kind, spec)
    name = os.path.abspath(spec) if kind in ("hf_dir", "keras_hub_dir") else spec
    with temporary_env(env):
        backbone = _from_preset(spec, kind, dtype, cls=keras_hub.models.Backbone, load_weights=load_weights)
        if kind == "hf" and model_type is None:
            model_type = _hf_model_type(spec)
    causal_lm_class(backbone, spec)
    source = {
        "kind": kind,
        "name": name,
        "backbone": type(backbone).__name__,
        "dtype": backbone.dtype_policy.name,
        "weights_loaded": bool(load_weights),
    }
    if model_type:
        source["model_type"] = model_type
    return backbone, source


def backbone_max_positions(backbone):
    """The most positions `backbone` can encode, or `None` when it has no position table.

    klm's backbones with learned positions and keras-hub's (GPT-2: its
    `n_positions`) have a `max_sequence_length`; rotary and sinusoidal
    positions have no table, hence no hard limit.
    """
    from klm.models import KlmBackbone

    if isinstance(backbone, KlmBackbone) and backbone.position_encoding != "learned":
        return None
    limit = getattr(backbone, "max_sequence_length", None)
    return int(limit) if isinstance(limit, int) else None


def check_backbone_seq_len(backbone, seq_len, spec, flag="--seq-len"):
    """`ConfigError` when `seq_len` exceeds the positions of the checkpoint `spec`'s `backbone`."""
    from klm.models.presets import check_seq_len

    check_seq_len(seq_len, backbone_max_positions(backbone), f"the max positions of {spec}", flag)


def causal_lm_class(backbone, spec=None):
    """The keras-hub `CausalLM` class for `backbone` (`KlmCausalLM` for a `KlmBackbone`).

    Raises:
        CheckpointError: no causal LM uses this backbone (an encoder such as BERT).
    """
    from klm.models import KlmBackbone, KlmCausalLM

    if isinstance(backbone, KlmBackbone):
        return KlmCausalLM
    from keras_hub.models import CausalLM
    from keras_hub.src.utils.preset_utils import list_subclasses

    for cls in list_subclasses(CausalLM):
        if cls.backbone_cls is type(backbone):
            return cls
    raise CheckpointError(
        f"{type(backbone).__name__} is not the backbone of a causal language model keras-hub can load as a "
        f"CausalLM. Received: checkpoint={spec!r}"
    )


def _klm_run_backbone(spec, which, load_weights):
    """`load_backbone` for a klm run folder: the backbone of its best (or last) `.keras` model."""
    if load_weights:
        checkpoint = _load_klm_run(spec, which)
        source = dict(checkpoint.source, task=checkpoint.task, weights_loaded=True)
        source.pop("architecture", None)
        source.pop("tokenizer", None)
        return checkpoint.backbone, source
    import zipfile

    import keras

    import klm.layers  # noqa: F401 - registers klm's serializable classes
    import klm.models  # noqa: F401

    try:
        config = runs.read_run_config(spec)
        path = runs.checkpoint_path(spec, which)
    except RunDirError as e:
        raise CheckpointError(str(e)) from None
    try:
        with zipfile.ZipFile(path) as archive:
            model_config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"Cannot read the model config in {path}: {e}. Received: checkpoint={spec!r}") from None
    backbone_config = model_config.get("config", {}).get("backbone")
    if not isinstance(backbone_config, dict):
        raise CheckpointError(
            f"{path} holds no backbone config (a {model_config.get('class_name')}). Received: checkpoint={spec!r}"
        )
    if "keras_hub" in json.dumps(backbone_config):
        import keras_hub  # noqa: F401 - registers keras-hub's classes
    # The backbone alone: a task would compile (optimizer variables) as it is built.
    backbone = keras.saving.deserialize_keras_object(backbone_config)
    return backbone, {
        "kind": "klm_run",
        "name": os.path.abspath(spec),
        "backbone": type(backbone).__name__,
        "dtype": backbone.dtype_policy.name,
        "task": config["task"],
        "weights_loaded": False,
    }


def _hf_model_type(spec):
    try:
        from keras_hub.src.utils.preset_utils import load_json

        return load_json(spec, "config.json").get("model_type")
    except Exception:  # noqa: BLE001 - only informative
        return None


def _from_preset(spec, kind, dtype, cls=None, **kwargs):
    import keras_hub

    cls = cls or keras_hub.models.CausalLM
    if dtype is not None:
        kwargs["dtype"] = dtype
    try:
        return cls.from_preset(spec, **kwargs)
    except CheckpointError:
        raise
    except FileNotFoundError as e:
        raise CheckpointError(f"{spec}: a file is missing: {e} Received: checkpoint={spec!r}") from None
    except ImportError as e:
        raise CheckpointError(f"Loading {spec} needs a package: {e}") from None
    except Exception as e:  # noqa: BLE001 - translated below, or re-raised as is
        message = str(e)
        if _is_network_error(e):
            raise CheckpointError(
                f"Cannot download {spec}: {type(e).__name__}: {message[:300]} (no network?). "
                f"Received: checkpoint={spec!r}"
            ) from None
        if kind == "hf" and "has no config.json" in message:
            raise CheckpointError(
                f"{spec}: no such Hugging Face model, or it has no config.json, or it is gated (log in with "
                f"`hf auth login`). Received: checkpoint={spec!r}"
            ) from None
        if "Unable to find a subclass of CausalLM" in message:
            raise CheckpointError(
                f"{spec} is not a causal language model: {message} Received: checkpoint={spec!r}"
            ) from None
        if "KerasHub has no converter" in message:
            raise CheckpointError(f"{spec}: {message} Received: checkpoint={spec!r}") from None
        if isinstance(e, (ValueError, KeyError)):
            raise CheckpointError(
                f"keras-hub cannot load {spec}: {type(e).__name__}: {message[:500]} Received: checkpoint={spec!r}"
            ) from None
        raise


def _is_network_error(e):
    names = {cls.__name__ for cls in type(e).__mro__}
    return bool(
        names & {"ConnectionError", "Timeout", "NameResolutionError", "MaxRetryError", "OfflineModeIsEnabled"}
    ) or "Failed to resolve" in str(e)


def _load_klm_run(spec, which):
    try:
        run = load_run(spec, which=which)
    except RunDirError as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(str(e)) from None
    model = run.model
    source = {
        "kind": "klm_run",
        "name": os.path.abspath(spec),
        "architecture": type(model).__name__,
        "backbone": type(model.backbone).__name__,
        "tokenizer": type(run.tokenizer).__name__,
        "dtype": model.dtype_policy.name,
    }
    preprocessor = getattr(model, "preprocessor", None)
    # A run started from a pretrained checkpoint records its source (with
    # add_start_token) under "pretrained" in config.json.
    pretrained = run.config.get("pretrained") or {}
    return Checkpoint(
        model=model,
        tokenizer=run.tokenizer,
        preprocessor=preprocessor,
        source=source,
        task=run.task,
        run=run,
        add_start_token=pretrained.get("add_start_token"),
    )


def load_run(run_dir, which="best", require_finished=True):
    """Loads a run folder: config, tokenizer, labels and a checkpoint.

    Args:
        run_dir: path of the run folder.
        which: `"best"` (falls back to `"last"`) or `"last"`.
        require_finished: refuse runs without `summary.json`.

    Raises:
        RunDirError: missing, unfinished or malformed run folder.
    """
    run_dir = Path(run_dir)
    config = runs.read_run_config(run_dir)
    summary_path = run_dir / runs.SUMMARY_FILE
    if require_finished and not summary_path.exists():
        raise RunDirError(
            f"{run_dir} is an unfinished run (no {runs.SUMMARY_FILE}). Finish or resume it first. "
            f"Received: run_dir={str(run_dir)!r}"
        )
    model = runs.load_model(runs.checkpoint_path(run_dir, which))
    tokenizer = load_tokenizer(str(run_dir / runs.TOKENIZER_DIR))
    labels, multi_label = None, False
    if runs.run_task(config).has_labels:
        label_info = runs.read_json(run_dir / runs.LABELS_FILE)
        labels, multi_label = label_info["labels"], bool(label_info.get("multi_label", False))
    summary = runs.read_json(summary_path) if summary_path.exists() else None
    return runs.Run(run_dir, config, config["task"], model, tokenizer, labels, multi_label, summary)
