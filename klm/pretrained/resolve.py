"""Naming a checkpoint: what a spec is, and clear errors before anything is loaded.

One string names a checkpoint everywhere (`--from`, `--init-from`, the RUN
argument of `evaluate`/`generate`/`export`):

| spec | kind |
|---|---|
| `runs/lm` (a folder with klm's `config.json`) | `klm_run` |
| `gpt2_base_en` (a keras-hub preset name) | `keras_hub_preset` |
| `kaggle://keras/gpt2/keras/gpt2_base_en[/2]` | `kaggle` |
| `hf://openai-community/gpt2`, `hf://Qwen/Qwen3-0.6B` | `hf` |
| a folder saved by keras-hub (`save_to_preset`) | `keras_hub_dir` |
| a folder saved by Transformers (`config.json` + `*.safetensors` + tokenizer files) | `hf_dir` |

`classify` tells the kinds apart without importing Keras. The `check_*`
functions and `prepare_download` turn every failure a user can fix -- an
unknown name, a missing file, a `model_type` keras-hub cannot convert, no
network -- into a `CheckpointError` (a `KlmError`: exit status 2 in the CLI)
that says which, before keras-hub sees the checkpoint. Loading is
`klm.pretrained.checkpoint`.
"""

import contextlib
import difflib
import os
import socket
from pathlib import Path

from klm.errors import CheckpointError
from klm.paths import contained_path, hugging_face_cache_blobs
from klm.pretrained.weight_files import check_weight_files, read_json
from klm.tasks import model_families

KINDS = ("klm_run", "keras_hub_preset", "kaggle", "hf", "keras_hub_dir", "hf_dir")
DTYPES = ("float32", "bfloat16", "float16", "mixed_bfloat16", "mixed_float16")
HF_PREFIX = "hf://"
KAGGLE_PREFIX = "kaggle://"
HF_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")


def classify(spec):
    """The kind of checkpoint `spec` names (see the module docstring); imports no Keras.

    Raises:
        CheckpointError: a folder that is none of the formats, a missing path,
            an unknown `scheme://`.
    """
    spec = os.fspath(spec)
    if spec.startswith(HF_PREFIX):
        if len(spec[len(HF_PREFIX) :].strip("/").split("/")) != 2:
            raise CheckpointError(
                f"Expected a Hugging Face handle of the form hf://ORG/NAME (e.g. hf://openai-community/gpt2). "
                f"Received: checkpoint={spec!r}"
            )
        return "hf"
    if spec.startswith(KAGGLE_PREFIX):
        return "kaggle"
    if "://" in spec:
        raise CheckpointError(
            "Expected a klm run folder, a keras-hub preset name, kaggle://..., hf://ORG/NAME or a local folder. "
            f"Received: checkpoint={spec!r}"
        )
    path = Path(spec)
    if path.exists():
        if not path.is_dir():
            raise CheckpointError(f"Expected a checkpoint folder, got a file. Received: checkpoint={spec!r}")
        config_path = path / "config.json"
        if not config_path.exists():
            raise CheckpointError(
                f"{spec} has no config.json: expected a klm run folder, a keras-hub preset folder or a "
                f"Transformers folder (config.json + *.safetensors + tokenizer files). Received: checkpoint={spec!r}"
            )
        config = read_json(config_path)
        if config.get("task") in model_families():
            return "klm_run"
        if "registered_name" in config:
            return "keras_hub_dir"
        if "model_type" in config:
            return "hf_dir"
        raise CheckpointError(
            f"{config_path} is neither klm's (a 'task'), keras-hub's (a 'registered_name') nor Transformers' "
            f"(a 'model_type') config. Received: checkpoint={spec!r}"
        )
    if os.sep in spec or spec.startswith("."):
        raise CheckpointError(f"Checkpoint folder does not exist. Received: checkpoint={spec!r}")
    return "keras_hub_preset"


def check_keras_hub_preset_name(spec):
    """`CheckpointError`, with close names, unless `spec` is a keras-hub preset name."""
    from keras_hub.src.utils.preset_utils import BUILTIN_PRESETS

    if spec in BUILTIN_PRESETS:
        return
    from keras_hub.models import CausalLM

    names = sorted(CausalLM.presets) if hasattr(CausalLM, "presets") else sorted(BUILTIN_PRESETS)
    close = difflib.get_close_matches(spec, names, n=5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise CheckpointError(
        f"Unknown checkpoint {spec!r}: not a folder, not a keras-hub preset name.{hint} Expected a klm run folder, "
        "a keras-hub preset (e.g. gpt2_base_en), kaggle://..., hf://ORG/NAME or a local keras-hub/Transformers "
        f"folder. Received: checkpoint={spec!r}"
    )


def _tokenizer_files(model_type):
    """Tokenizer files keras-hub's converter for `model_type` reads."""
    if model_type == "gpt2":
        return ("vocab.json", "merges.txt")
    if model_type == "llama":
        return ("tokenizer.json", "tokenizer_config.json")
    if model_type in ("gemma", "gemma2", "gemma3", "gemma3_text", "mistral"):
        return ("tokenizer.model",)
    return ("tokenizer.json",)


def check_hf_dir(path):
    """Clear errors for a local Transformers folder before keras-hub sees it."""
    config = read_json(path / "config.json")
    model_type = config.get("model_type")
    check_model_type(model_type, str(path), config)
    if not any((path / name).exists() for name in HF_WEIGHT_FILES):
        other = sorted(p.name for p in path.glob("*.bin")) + sorted(p.name for p in path.glob("*.pt*"))
        found = f" (found {', '.join(other)}: keras-hub reads only safetensors)" if other else ""
        raise CheckpointError(
            f"{path} has no weights: expected model.safetensors or model.safetensors.index.json{found}. "
            f"Received: checkpoint={str(path)!r}"
        )
    check_shard_index(path)
    check_weight_files(path, config)
    missing = [name for name in _tokenizer_files(model_type) if not (path / name).exists()]
    if missing:
        raise CheckpointError(
            f"{path} lacks the tokenizer file(s) {', '.join(missing)} that keras-hub's {model_type} converter "
            f"reads. Copy them from the original checkpoint. Received: checkpoint={str(path)!r}"
        )
    return model_type


def check_shard_index(path):
    """Refuses a `model.safetensors.index.json` whose shards leave the folder `path`.

    Every file its `weight_map` names must be inside `path` (no absolute
    path, no `..`, no link resolving outside; links into the Hugging Face
    cache's `blobs/`, as a cache snapshot folder holds, are fine).

    Raises:
        CheckpointError: naming the index file and the entry.
    """
    index_path = path / "model.safetensors.index.json"
    if not index_path.exists():
        return
    index = read_json(index_path)
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict):
        raise CheckpointError(
            f"Expected a 'weight_map' object (weight name -> shard file) in {index_path}. "
            f"Received: {type(weight_map).__name__}"
        )
    blobs = hugging_face_cache_blobs(path)
    for weight, shard in weight_map.items():
        contained_path(
            str(path),
            shard,
            str(index_path),
            f"the shard of {weight!r}",
            CheckpointError,
            folder="checkpoint folder",
            allowed_roots=[blobs] if blobs else (),
        )
        if not (path / shard).is_file():
            raise CheckpointError(
                f"{index_path} names the shard {shard!r} (for {weight!r}), which is missing from {path}. "
                f"Received: checkpoint={str(path)!r}"
            )


def check_model_type(model_type, name, config):
    """`CheckpointError` unless keras-hub converts Transformers `model_type` into a `CausalLM`."""
    from keras_hub.src.utils.transformers.preset_loader import TransformersPresetLoader

    try:
        loader = TransformersPresetLoader(name, config)
    except ValueError:
        raise CheckpointError(
            f"keras-hub cannot convert Transformers model_type={model_type!r} "
            f"(architectures={config.get('architectures')}). Causal LMs it converts include gpt2, llama, mistral, "
            f"qwen2, qwen3, gemma, gemma2, gemma3. Received: checkpoint={name!r}"
        ) from None
    from keras_hub.models import CausalLM
    from keras_hub.src.utils.preset_utils import list_subclasses

    backbone_cls = loader.check_backbone_class()
    if not any(cls.backbone_cls is backbone_cls for cls in list_subclasses(CausalLM)):
        raise CheckpointError(
            f"Transformers model_type={model_type!r} ({backbone_cls.__name__}) is not a causal language model "
            f"keras-hub can load as a CausalLM. Received: checkpoint={name!r}"
        )


def _reachable(host, port=443, timeout=3.0):
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def prepare_download(kind, spec):
    """Fails fast, with a clear message, when a download is needed and impossible."""
    if kind == "hf":
        repo = spec[len(HF_PREFIX) :].strip("/")
        try:
            import huggingface_hub
        except ImportError:
            raise CheckpointError(
                f"Loading {spec} needs the huggingface_hub package: pip install huggingface_hub"
            ) from None
        cached = True
        try:
            huggingface_hub.hf_hub_download(repo, "config.json", local_files_only=True)
        except Exception:  # noqa: BLE001 - not in the cache, for whatever reason
            cached = False
        if os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True", "ON", "YES"):
            if not cached:
                raise CheckpointError(
                    f"{spec} is not in the Hugging Face cache and HF_HUB_OFFLINE is set. Received: checkpoint={spec!r}"
                )
            return {}
        if not _reachable("huggingface.co"):
            if cached:
                return {"HF_HUB_OFFLINE": "1"}  # use the cache without retrying the network
            raise CheckpointError(
                f"Cannot download {spec}: huggingface.co is unreachable (no network?) and the model is not in the "
                "Hugging Face cache (~/.cache/huggingface or $HF_HOME). Download it where there is network, or "
                f"pass a local folder. Received: checkpoint={spec!r}"
            )
    elif kind in ("kaggle", "keras_hub_preset"):
        if not _reachable("api.kaggle.com") and not _reachable("www.kaggle.com"):
            raise CheckpointError(
                f"Cannot download {spec}: Kaggle (api.kaggle.com) is unreachable (no network?). keras-hub presets "
                "download from Kaggle Models into ~/.cache/kagglehub; save one with `save_to_preset` where there is "
                f"network and pass the folder. Received: checkpoint={spec!r}"
            )
    return {}


@contextlib.contextmanager
def temporary_env(values):
    """Sets the environment variables `values` (a dict) inside the `with` block, then restores them."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def check_dtype(dtype):
    """`CheckpointError` unless `dtype` is `None` or one of `DTYPES`."""
    if dtype is not None and dtype not in DTYPES:
        raise CheckpointError(f"Expected dtype in {DTYPES} or None. Received: dtype={dtype!r}")


def is_checkpoint_spec(spec):
    """True when `spec` names something other than a klm run folder (imports no Keras)."""
    try:
        return classify(spec) != "klm_run"
    except CheckpointError:
        return not Path(os.fspath(spec)).exists()
