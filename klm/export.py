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
  text). Each text is scored as a new document: conditioned on the
  tokenizer's end-of-text token, the separator the training stream puts
  between documents, and truncated to the run's `seq_len` tokens.
  `generate(prompts, max_new_tokens)` -> `generated_text` (string, the
  continuation without the prompt) and `num_generated_tokens` (int32), greedy
  decoding. `generate_top_k(prompts, max_new_tokens, top_k, temperature,
  seed)` samples among the `top_k` most likely tokens, reproducibly for a
  seed. Generation runs in the graph: the prompts fill a key/value cache
  once (`KlmCausalLM.call_with_cache`), then a `tf.while_loop` adds one
  token per step and stops when every row has produced the end-of-text token
  or `max_new_tokens` tokens. An empty prompt starts from the end-of-text
  token, as `klm generate` does.
- SFT run (`klm finetune --task sft`): the same signatures, but `generate`
  and `generate_top_k` take the user's RAW prompts and apply the run's
  prompt template inside the graph (`before + prompt + after` with the
  template's text, then the start token the run used, if any), exactly as
  `klm generate` does; the check compares the SavedModel's greedy text with
  `klm generate`'s (`klm.generate.generate_reply`) on the verify prompts.

How it runs: the parent process (any backend, it imports no Keras) checks the
run folder and the output folder, then starts a TensorFlow-backend worker
(`python -m klm.export build`) that loads the `.keras` checkpoint (the format
is backend-neutral, so JAX and PyTorch runs export too), writes the SavedModel
through `keras.export.ExportArchive` into a temporary folder inside OUT, and
computes reference outputs with the Keras model. A second, fresh process
that can import only TensorFlow (imports of `keras`, `keras_hub`, `klm`,
`tensorflow_text` fail there) loads the SavedModel, calls every signature and
reports what it got; the parent compares, and only then renames the
temporary folder to `OUT/<version>`. Non-portable exports load the
tensorflow-text op libraries (`tf.load_op_library`), as a TF Serving build
with those custom ops would; `portable=True` loads none, so the check proves
that stock TF Serving can run the model.
"""

import dataclasses
import inspect
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Optional, Sequence

from klm import runs
from klm.errors import ConfigError, KlmError, RunDirError

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
CLASSIFIER_SIGNATURES = ("serving_default",)
LM_SIGNATURES = ("serving_default", "score", "generate", "generate_top_k")
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
    version: Optional[int] = None
    portable: bool = False
    checkpoint: str = "best"
    verify: bool = True
    verify_texts: Optional[Sequence[str]] = None
    verify_prompts: Optional[Sequence[str]] = None
    verify_max_new_tokens: int = 8
    tolerance: float = DEFAULT_TOLERANCE
    backend: Optional[str] = None
    timeout_s: Optional[float] = None

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
        if isinstance(self.tolerance, bool) or not isinstance(self.tolerance, (int, float)) or not (
            self.tolerance > 0 and math.isfinite(self.tolerance)
        ):
            raise ConfigError(f"Expected tolerance to be a positive number. Received: tolerance={self.tolerance!r}")
        if self.backend is not None:
            from klm import backend as backend_lib

            try:
                self.backend = backend_lib.normalize(self.backend)
            except backend_lib.BackendError as e:
                raise ConfigError(str(e)) from None
        if self.timeout_s is not None and not (
            isinstance(self.timeout_s, (int, float)) and not isinstance(self.timeout_s, bool) and self.timeout_s > 0
        ):
            raise ConfigError(f"Expected timeout_s to be a positive number or None. Received: timeout_s={self.timeout_s!r}")


# === Checks in the parent process (no Keras) ===


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


def check_portable(metadata):
    """Raises `ConfigError` when the tokenizer needs ops outside core TensorFlow."""
    kind = metadata.get("kind")
    config = metadata.get("config") or {}
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


def _check_run(config):
    """Reads what the export needs from the run folder; raises `RunDirError`."""
    run_dir = Path(config.run_dir)
    run_config = runs.read_run_config(run_dir)
    if not (run_dir / runs.SUMMARY_FILE).exists():
        raise RunDirError(
            f"{run_dir} is an unfinished run (no {runs.SUMMARY_FILE}): export a run after its training "
            f"finished (or resume it with the same command). Received: run_dir={str(run_dir)!r}"
        )
    checkpoint = runs.checkpoint_path(run_dir, config.checkpoint)
    if run_config["task"] == "causal_lm" and run_config.get("pretrained"):
        # The in-graph decoder is klm's (KlmCausalLM's cache layout); a keras-hub
        # CausalLM decodes with its own cache, which this export does not wrap yet.
        raise ExportError(
            f"{run_dir} is a language model started from a pretrained checkpoint "
            f"({run_config['pretrained'].get('architecture')}): a SavedModel of it is not supported yet. Export "
            f"it as a Transformers folder with `klm export {run_dir} OUT --format hf`; classifier runs on a "
            f"pretrained backbone export as SavedModels. Received: run_dir={str(run_dir)!r}"
        )
    metadata = tokenizer_metadata(run_dir)
    labels = None
    if run_config["task"] == "classifier":
        try:
            labels = runs.read_json(run_dir / runs.LABELS_FILE)["labels"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise RunDirError(
                f"Expected {run_dir / runs.LABELS_FILE} with the class names of the classifier run ({e}). "
                f"Received: run_dir={str(run_dir)!r}"
            ) from None
    return run_config, checkpoint, metadata, labels


# === Subprocesses ===


def _subprocess_env(backend="tensorflow"):
    env = dict(os.environ)
    env["KERAS_BACKEND"] = backend
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # The worker imports the same klm as this process, installed or not.
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _tail(text, lines=25):
    return "\n".join((text or "").strip().splitlines()[-lines:])


def _run_subprocess(args, what, timeout_s, env=None):
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        raise ExportError(f"{what} did not finish within {timeout_s} s. Received: timeout_s={timeout_s}") from None
    return proc


def _run_build_worker(request, scratch, timeout_s):
    request_path = Path(scratch) / "build_request.json"
    result_path = Path(scratch) / "build_result.json"
    request = dict(request, result=str(result_path))
    request_path.write_text(json.dumps(request))
    proc = _run_subprocess(
        [sys.executable, "-m", "klm.export", "build", str(request_path)],
        "The TensorFlow export worker",
        timeout_s,
        env=_subprocess_env("tensorflow"),
    )
    if proc.returncode != 0 or not result_path.exists():
        message = _worker_error(proc)
        raise ExportError(f"Writing the SavedModel under TensorFlow failed: {message}")
    return json.loads(result_path.read_text())


def _worker_error(proc):
    for line in (proc.stderr or "").splitlines():
        if line.startswith("KLM_ERROR: "):
            return line[len("KLM_ERROR: ") :]
    return f"exit status {proc.returncode}:\n{_tail(proc.stderr)}"


def call_in_tensorflow_only_process(saved_model_dir, calls=(), load_text_ops=True, load=True, timeout_s=None):
    """Loads a SavedModel in a fresh process that can import TensorFlow only.

    Imports of `keras`, `keras_hub`, `klm`, `tf_keras` and `tensorflow_text`
    fail in that process. With `load_text_ops`, the tensorflow-text op
    libraries are loaded with `tf.load_op_library` (kernels only, as a TF
    Serving build with those ops has them).

    Args:
        saved_model_dir: the version folder (with `saved_model.pb`).
        calls: a list of `{"signature": name, "inputs": {name: value}}`;
            values are lists (batched inputs) or scalars.
        load_text_ops: load the tensorflow-text op libraries first.
        load: load the SavedModel (with `False` the process only describes
            the signatures and the ops).

    Returns:
        A dict: `outputs` (one dict of lists per call, strings decoded),
        `signatures` (name -> inputs/outputs `{key: [dtype, shape]}`),
        `signatures_text` (as `saved_model_cli show --all` prints them),
        `ops` (op types of the graph), `custom_ops` (those core TensorFlow
        lacks), `blocked_modules_imported` (must be empty),
        `text_op_libraries` (loaded library files).

    Raises:
        ExportError: the process failed (unknown ops, a signature raised...).
    """
    with tempfile.TemporaryDirectory(prefix="klm-tf-only-") as scratch:
        script = Path(scratch) / "tf_only_check.py"
        script.write_text(_TF_ONLY_SOURCE)
        request = Path(scratch) / "request.json"
        result = Path(scratch) / "result.json"
        request.write_text(
            json.dumps(
                {
                    "saved_model": os.fspath(saved_model_dir),
                    "calls": list(calls),
                    "load_text_ops": bool(load_text_ops),
                    "load": bool(load),
                    "blocked": list(BLOCKED_MODULES),
                    "result": str(result),
                }
            )
        )
        env = dict(os.environ)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        env.pop("PYTHONPATH", None)
        proc = _run_subprocess(
            [sys.executable, str(script), str(request)], "The TensorFlow-only check", timeout_s, env=env
        )
        if not result.exists():
            raise ExportError(f"The TensorFlow-only check crashed (exit status {proc.returncode}):\n{_tail(proc.stderr)}")
        data = json.loads(result.read_text())
    if data.get("error"):
        raise ExportError(f"Loading the SavedModel with TensorFlow only failed: {data['error']}")
    return data


def _tf_only_main(request_path):
    """Runs in a process that may import TensorFlow only (see `call_in_tensorflow_only_process`).

    Self-contained: its source is written to a file and run as a script.
    """
    import importlib.abc
    import importlib.machinery
    import json
    import os
    import sys
    import traceback

    with open(request_path) as f:
        request = json.load(f)
    blocked = tuple(request["blocked"])

    class Blocker(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        # A spec whose loader fails: `find_spec` callers (TF probes for Keras)
        # see a module, importing it raises ModuleNotFoundError.
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in blocked:
                return importlib.machinery.ModuleSpec(name, self)
            return None

        def create_module(self, spec):
            raise ModuleNotFoundError(f"No module named {spec.name!r} (blocked by klm's serving check)", name=spec.name)

        def exec_module(self, module):
            raise ModuleNotFoundError(f"No module named {module.__name__!r}")

    sys.meta_path.insert(0, Blocker())
    result = {"error": None, "outputs": []}
    try:
        import tensorflow as tf
        from tensorflow.core.framework import types_pb2
        from tensorflow.core.protobuf import saved_model_pb2
        from tensorflow.python.framework import op_def_registry

        saved_model_dir = request["saved_model"]
        proto = saved_model_pb2.SavedModel()
        with open(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as f:
            proto.ParseFromString(f.read())
        meta_graph = proto.meta_graphs[0]
        ops = {node.op for node in meta_graph.graph_def.node}
        for function in meta_graph.graph_def.library.function:
            ops.update(node.op for node in function.node_def)
        result["ops"] = sorted(ops)
        result["custom_ops"] = sorted(op for op in ops if op_def_registry.get(op) is None)

        # As `saved_model_cli show --all` prints the SignatureDefs.
        dtype_names = {value: key for key, value in types_pb2.DataType.items()}

        def shape_text(info):
            if info.tensor_shape.unknown_rank:
                return "unknown_rank"
            return "(" + ", ".join(str(d.size) for d in info.tensor_shape.dim) + ")"

        lines = [
            "MetaGraphDef with tag-set: '%s' contains the following SignatureDefs:"
            % ", ".join(meta_graph.meta_info_def.tags)
        ]
        signatures = {}
        for key in sorted(meta_graph.signature_def):
            signature = meta_graph.signature_def[key]
            lines += ["", f"signature_def['{key}']:"]
            described = {}
            for kind, tensors in (("input", signature.inputs), ("output", signature.outputs)):
                lines.append(f"  The given SavedModel SignatureDef contains the following {kind}(s):")
                described[kind + "s"] = {}
                for name, info in sorted(tensors.items()):
                    lines += [
                        f"    {kind}s['{name}'] tensor_info:",
                        f"        dtype: {dtype_names[info.dtype]}",
                        f"        shape: {shape_text(info)}",
                        f"        name: {info.name}",
                    ]
                    described[kind + "s"][name] = [dtype_names[info.dtype], shape_text(info)]
            lines.append(f"  Method name is: {signature.method_name}")
            signatures[key] = described
        result["signatures"] = signatures
        result["signatures_text"] = "\n".join(lines)

        result["text_op_libraries"] = []
        if request["load_text_ops"]:
            # The kernels only: the tensorflow_text Python package imports Keras.
            spec = importlib.machinery.PathFinder.find_spec("tensorflow_text")
            if spec is None or not spec.submodule_search_locations:
                raise RuntimeError("tensorflow-text is not installed, and the SavedModel needs its ops")
            ops_dir = os.path.join(list(spec.submodule_search_locations)[0], "python", "ops")
            for name in sorted(os.listdir(ops_dir)):
                if name.endswith(".so"):
                    tf.load_op_library(os.path.join(ops_dir, name))
                    result["text_op_libraries"].append(name)
        xla_ops = sorted(op for op in ops if op.startswith("Xla"))
        if xla_ops:
            raise RuntimeError(
                "the graph uses XLA-only ops, which TF Serving runs only with an XLA compiler: " + ", ".join(xla_ops)
            )
        missing = sorted(op for op in ops if op_def_registry.get(op) is None)
        if missing:
            raise RuntimeError(
                "the graph uses ops that this TensorFlow does not register: "
                + ", ".join(missing)
                + ("" if request["load_text_ops"] else " (a --portable export must use core TensorFlow ops only)")
            )

        if request["load"]:
            loaded = tf.saved_model.load(saved_model_dir)
            result["loaded_signatures"] = sorted(loaded.signatures.keys())
            for call in request["calls"]:
                function = loaded.signatures[call["signature"]]
                specs = function.structured_input_signature[1]
                inputs = {
                    name: tf.constant(value, dtype=specs[name].dtype) for name, value in call["inputs"].items()
                }
                outputs = function(**inputs)
                converted = {}
                for name, tensor in outputs.items():
                    value = tensor.numpy()
                    if tensor.dtype == tf.string:
                        value = [v.decode("utf-8", errors="replace") for v in value.reshape(-1)]
                    else:
                        value = value.tolist()
                    converted[name] = value
                result["outputs"].append(converted)
    except BaseException as e:  # noqa: BLE001 - reported to the parent
        result["error"] = f"{type(e).__name__}: {e}"
        result["traceback"] = traceback.format_exc()
    result["blocked_modules_imported"] = sorted(m for m in sys.modules if m.split(".")[0] in blocked)
    with open(request["result"], "w") as f:
        json.dump(result, f)


_TF_ONLY_SOURCE = (
    "# Written by klm.export: checks a SavedModel with TensorFlow only.\n"
    + inspect.getsource(_tf_only_main)
    + "\n\nif __name__ == '__main__':\n    import sys\n    _tf_only_main(sys.argv[1])\n"
)


# === The export (library entry point) ===


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

    created = []
    for parent in reversed([out_dir, *out_dir.parents]):
        if not parent.exists():
            created.append(parent)
    out_dir.mkdir(parents=True, exist_ok=True)
    temp = out_dir / f"{TEMP_PREFIX}{version}-{uuid.uuid4().hex[:8]}"
    scratch = tempfile.mkdtemp(prefix="klm-export-")
    try:
        build = _run_build_worker(
            {
                "run_dir": str(Path(config.run_dir).resolve()),
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
        shutil.rmtree(scratch, ignore_errors=True)
    return {
        "path": str(final),
        "version": version,
        "out_dir": str(out_dir),
        "run_dir": str(config.run_dir),
        "task": task,
        "tokenizer": metadata.get("kind"),
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


def verification_calls(task, texts, prompts, max_new_tokens):
    """The signature calls that `export_run` checks (see `compare_with_reference`)."""
    if task == "classifier":
        return [{"signature": "serving_default", "inputs": {"texts": list(texts)}}]
    sample = {"prompts": list(prompts), "max_new_tokens": max_new_tokens, "temperature": 1.0, "seed": 1234}
    return [
        {"signature": "serving_default", "inputs": {"texts": list(texts)}},
        {"signature": "score", "inputs": {"texts": list(texts)}},
        {"signature": "generate", "inputs": {"prompts": list(prompts), "max_new_tokens": max_new_tokens}},
        {"signature": "generate_top_k", "inputs": dict(sample, top_k=1)},
        {"signature": "generate_top_k", "inputs": dict(sample, top_k=5)},
        {"signature": "generate_top_k", "inputs": dict(sample, top_k=5)},
    ]


def compare_with_reference(task, check, reference, labels, tolerance):
    """Compares the TensorFlow-only outputs of `verification_calls` with the Keras model's.

    Returns:
        `{output name: max abs difference}`.

    Raises:
        ExportError: with every mismatch found.
    """
    import numpy as np

    outputs = check["outputs"]
    problems = []
    expected = CLASSIFIER_SIGNATURES if task == "classifier" else LM_SIGNATURES
    missing = sorted(set(expected) - set(check.get("loaded_signatures", [])))
    if missing:
        problems.append(f"signatures missing from the SavedModel: {missing}")
    if check.get("blocked_modules_imported"):
        problems.append(f"the serving process imported {check['blocked_modules_imported']}")
    diffs = {}
    if task == "classifier":
        got = outputs[0]
        probabilities = np.asarray(got["probabilities"], dtype="float64")
        ref = np.asarray(reference["probabilities"], dtype="float64")
        if probabilities.shape != ref.shape:
            problems.append(f"probabilities have shape {probabilities.shape}, the Keras model's {ref.shape}")
        else:
            diffs["probabilities"] = float(np.max(np.abs(probabilities - ref))) if ref.size else 0.0
            if diffs["probabilities"] > tolerance:
                problems.append(
                    f"probabilities differ from the Keras model by {diffs['probabilities']:.3g} > {tolerance:g}"
                )
            label_ids = np.asarray(got["label_id"])
            if not np.array_equal(label_ids, np.argmax(probabilities, axis=-1)):
                problems.append(f"label_id {label_ids.tolist()} is not the argmax of the probabilities")
            if [labels[i] for i in label_ids] != list(got["label"]):
                problems.append(f"label {got['label']} does not name label_id {label_ids.tolist()}")
    else:
        for index, name in ((0, "serving_default"), (1, "score")):
            got = outputs[index]
            ll = np.asarray(got["log_likelihood"], dtype="float64")
            ref_ll = np.asarray(reference["log_likelihood"], dtype="float64")
            diff = float(np.max(np.abs(ll - ref_ll))) if ref_ll.size else 0.0
            diffs[f"{name}/log_likelihood"] = diff
            if diff > tolerance:
                problems.append(f"{name}: log_likelihood differs from the Keras model by {diff:.3g} > {tolerance:g}")
            if list(got["num_tokens"]) != list(reference["num_tokens"]):
                problems.append(f"{name}: num_tokens {got['num_tokens']} != Keras {reference['num_tokens']}")
            ref_ppl = np.exp(-ref_ll / np.maximum(np.asarray(reference["num_tokens"]), 1))
            ppl_diff = float(np.max(np.abs(np.asarray(got["perplexity"]) / ref_ppl - 1.0))) if ref_ll.size else 0.0
            diffs[f"{name}/perplexity_rel"] = ppl_diff
            if ppl_diff > tolerance * 10:
                problems.append(f"{name}: perplexity differs from the Keras model's by a factor {ppl_diff:.3g}")
        greedy = outputs[2]["generated_text"]
        if list(greedy) != list(reference["greedy"]):
            problems.append(f"generate: greedy text {greedy!r} != the Keras model's greedy text {reference['greedy']!r}")
        if list(outputs[3]["generated_text"]) != list(greedy):
            problems.append(f"generate_top_k with top_k=1 gave {outputs[3]['generated_text']!r}, greedy {greedy!r}")
        if outputs[4] != outputs[5]:
            problems.append("generate_top_k gave different texts for the same seed")
    if problems:
        raise ExportError("The exported SavedModel does not match the Keras model: " + "; ".join(problems))
    return diffs


# === The TensorFlow side: graph functions and the ExportArchive ===


def build_export_archive(run):
    """A `keras.export.ExportArchive` with the serving signatures of a run.

    Needs the TensorFlow backend (`export_run` runs it in a TensorFlow
    subprocess for runs trained on any backend).

    Args:
        run: a `klm.runs.Run` (from `klm.runs.load_run`).
    """
    import keras
    import tensorflow as tf

    if keras.backend.backend() != "tensorflow":
        raise ExportError(
            "build_export_archive needs the TensorFlow backend (export_run runs it in a TensorFlow "
            f"subprocess). Received: backend={keras.backend.backend()!r}"
        )
    archive = keras.export.ExportArchive()
    archive.track(run.model)
    for resource in _tokenizer_resources(run.tokenizer):
        archive.track(resource)
    texts_spec = [tf.TensorSpec([None], tf.string, name="texts")]
    if run.task == "classifier":
        archive.add_endpoint("serving_default", classify_function(run), input_signature=texts_spec)
        return archive
    score = score_function(run)
    archive.add_endpoint("serving_default", score, input_signature=texts_spec)
    archive.add_endpoint("score", score, input_signature=texts_spec)
    prompts = tf.TensorSpec([None], tf.string, name="prompts")
    max_new = tf.TensorSpec([], tf.int32, name="max_new_tokens")
    archive.add_endpoint("generate", generate_function(run, sampling=False), input_signature=[prompts, max_new])
    archive.add_endpoint(
        "generate_top_k",
        generate_function(run, sampling=True),
        input_signature=[
            prompts,
            max_new,
            tf.TensorSpec([], tf.int32, name="top_k"),
            tf.TensorSpec([], tf.float32, name="temperature"),
            tf.TensorSpec([], tf.int32, name="seed"),
        ],
    )
    return archive


def _tokenizer_resources(tokenizer):
    """TF resources a tokenizer layer holds (lookup tables, tf-text tokenizers).

    `ExportArchive` tracks the model's variables itself, but such resources
    must be tracked explicitly to be saved with the graph.
    """
    import keras
    import tensorflow as tf

    return [
        value
        for value in vars(tokenizer).values()
        if isinstance(value, tf.__internal__.tracking.Trackable)
        and not isinstance(value, (keras.layers.Layer, keras.Variable, tf.Variable))
    ]


_SENTINEL_TEXT = "a"


def _ragged_ids(tokenizer, texts):
    """Token ids of a `[batch]` string tensor as an int32 `tf.RaggedTensor`."""
    import tensorflow as tf

    # One extra non-empty text: keras-hub's byte tokenizer fails on a batch of
    # empty strings only (it squeezes an empty axis); its row is dropped.
    ids = tokenizer.tokenize(tf.concat([texts, tf.constant([_SENTINEL_TEXT])], axis=0))
    if not isinstance(ids, tf.RaggedTensor):  # a tokenizer with its own sequence_length
        ids = tf.RaggedTensor.from_tensor(ids, padding=tf.cast(tokenizer.pad_token_id, ids.dtype))
    return tf.cast(ids[:-1], tf.int32)


def classify_function(run):
    """`texts -> {probabilities, label_id, label}` in TF ops (TensorFlow backend)."""
    import tensorflow as tf

    model, tokenizer = run.model, run.tokenizer
    seq_len, pad_id = run.seq_len, int(tokenizer.pad_token_id)
    multi_label = bool(run.multi_label)
    labels = [str(label) for label in run.labels]

    def classify(texts):
        ids = _ragged_ids(tokenizer, texts)[:, :seq_len]
        lengths = ids.row_lengths()
        token_ids = ids.to_tensor(default_value=pad_id, shape=[None, seq_len])
        padding_mask = tf.sequence_mask(lengths, seq_len, dtype=tf.int32)
        logits = model({"token_ids": token_ids, "padding_mask": padding_mask}, training=False)
        logits = tf.cast(logits, tf.float32)
        probabilities = tf.sigmoid(logits) if multi_label else tf.nn.softmax(logits, axis=-1)
        label_id = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        label = tf.gather(tf.constant(labels, dtype=tf.string), label_id)
        return {"probabilities": probabilities, "label_id": label_id, "label": label}

    return _core_ops_only(classify)


def _slice_update_core_ops(inputs, start_indices, updates):
    """`keras.ops.slice_update` in core TensorFlow ops.

    Keras's TensorFlow backend uses `XlaDynamicUpdateSlice`, which runs only
    through XLA's on-demand compiler: TF Serving builds without an XLA
    compiler for their device fail on it. Pad + select does the same
    (start indices clamped so that the update fits, as XLA does).
    """
    import tensorflow as tf

    inputs = tf.convert_to_tensor(inputs)
    updates = tf.cast(tf.convert_to_tensor(updates), inputs.dtype)
    shape = tf.shape(inputs, out_type=tf.int32)
    update_shape = tf.shape(updates, out_type=tf.int32)
    starts = tf.stack([tf.cast(index, tf.int32) for index in start_indices])
    starts = tf.clip_by_value(starts, 0, shape - update_shape)
    paddings = tf.stack([starts, shape - update_shape - starts], axis=1)
    inside = tf.pad(tf.ones_like(updates, dtype=tf.int8), paddings)
    outputs = tf.where(tf.cast(inside, tf.bool), tf.pad(updates, paddings), inputs)
    outputs.set_shape(inputs.shape)
    return outputs


def _core_ops_only(fn):
    """Wraps a graph function so that tracing it emits no XLA-only ops."""
    import functools

    from keras.src.backend.tensorflow import core as tf_core

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        original = tf_core.slice_update
        tf_core.slice_update = _slice_update_core_ops
        try:
            return fn(*args, **kwargs)
        finally:
            tf_core.slice_update = original

    return wrapper


def _end_token_id(tokenizer):
    end_id = getattr(tokenizer, "end_token_id", None)
    if end_id is None:
        raise ExportError(
            "Expected a tokenizer with an end-of-text token (klm's tokenizers have one). "
            f"Received: {type(tokenizer).__name__} without end_token_id"
        )
    return int(end_id)


def score_function(run):
    """`texts -> {log_likelihood, num_tokens, perplexity}` in TF ops."""
    import tensorflow as tf

    model, tokenizer = run.model, run.tokenizer
    seq_len, pad_id, end_id = run.seq_len, int(tokenizer.pad_token_id), _end_token_id(tokenizer)

    def score(texts):
        ids = _ragged_ids(tokenizer, texts)[:, :seq_len]
        lengths = tf.cast(ids.row_lengths(), tf.int32)
        start = tf.RaggedTensor.from_tensor(tf.fill([ids.nrows(), 1], tf.constant(end_id, tf.int32)))
        full = tf.concat([start, ids], axis=1).to_tensor(default_value=pad_id)  # [batch, 1 + max_len]
        width = tf.maximum(tf.shape(full)[1], 2)
        full = tf.pad(full, [[0, 0], [0, width - tf.shape(full)[1]]], constant_values=pad_id)
        inputs, targets = full[:, :-1], full[:, 1:]
        mask = tf.sequence_mask(lengths, width - 1)
        logits = model({"token_ids": inputs, "padding_mask": tf.cast(mask, tf.int32)}, training=False)
        log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)
        token_log_probs = tf.gather(log_probs, targets, batch_dims=2)  # [batch, width - 1]
        log_likelihood = tf.reduce_sum(tf.where(mask, token_log_probs, 0.0), axis=-1)
        perplexity = tf.exp(-log_likelihood / tf.cast(tf.maximum(lengths, 1), tf.float32))
        return {"log_likelihood": log_likelihood, "num_tokens": lengths, "perplexity": perplexity}

    return _core_ops_only(score)


def generate_function(run, sampling=False):
    """The in-graph generation loop (greedy, or top-k sampling with a seed).

    Returns `fn(prompts, max_new_tokens[, top_k, temperature, seed])` ->
    `{generated_text, num_generated_tokens}`.
    """
    import tensorflow as tf

    model, tokenizer = run.model, run.tokenizer
    backbone = model.backbone
    pad_id, end_id = int(tokenizer.pad_token_id), _end_token_id(tokenizer)
    template = sft_prompt_parts(run)
    vocabulary_size = int(backbone.vocabulary_size)
    num_layers, num_heads = int(backbone.num_layers), int(backbone.num_heads)
    head_dim = int(backbone.hidden_dim) // num_heads
    max_positions = int(backbone.max_sequence_length) if backbone.position_encoding == "learned" else None
    cache_dtype = model.compute_dtype

    def generate(prompts, max_new_tokens, top_k=None, temperature=None, seed=None):
        checks = [
            tf.debugging.assert_non_negative(max_new_tokens, message="Expected max_new_tokens >= 0"),
        ]
        if sampling:
            checks += [
                tf.debugging.assert_positive(top_k, message="Expected top_k >= 1"),
                tf.debugging.assert_positive(temperature, message="Expected temperature > 0"),
            ]
        if template is not None:  # an SFT run: the template around the raw prompt, as `klm generate`
            before, after, start_id = template
            prompts = tf.strings.join([tf.fill(tf.shape(prompts), before), prompts, tf.fill(tf.shape(prompts), after)])
        ids = _ragged_ids(tokenizer, prompts)
        if template is not None and start_id is not None:
            starts = tf.RaggedTensor.from_tensor(tf.fill([ids.nrows(), 1], tf.constant(start_id, tf.int32)))
            ids = tf.concat([starts, ids], axis=1)
        # An empty prompt starts from the end-of-text token (as `klm generate`).
        empty = tf.equal(ids.row_lengths(), 0)
        filler = tf.RaggedTensor.from_row_lengths(
            tf.fill([tf.reduce_sum(tf.cast(empty, tf.int32))], tf.constant(end_id, tf.int32)),
            tf.cast(empty, tf.int64),
        )
        ids = tf.concat([ids, filler], axis=1)
        lengths = tf.cast(ids.row_lengths(), tf.int32)
        batch_size = tf.shape(lengths)[0]
        prompt_width = tf.reduce_max(tf.concat([lengths, [1]], axis=0))
        total = prompt_width + max_new_tokens
        if max_positions is not None:
            checks.append(
                tf.debugging.assert_less_equal(
                    total,
                    max_positions,
                    message=f"Expected the longest prompt + max_new_tokens <= {max_positions} (the positions of the model)",
                )
            )
        with tf.control_dependencies(checks):
            prompt_ids = ids.to_tensor(default_value=pad_id, shape=[None, None])
            prompt_ids = tf.pad(
                prompt_ids, [[0, 0], [0, prompt_width - tf.shape(prompt_ids)[1]]], constant_values=pad_id
            )
        # Fill the cache with the prompts once, then grow it for the new tokens.
        cache = tf.zeros([batch_size, num_layers, 2, prompt_width, num_heads, head_dim], dtype=cache_dtype)
        _, _, cache = model.call_with_cache(prompt_ids, cache, 0)
        cache = tf.pad(cache, [[0, 0], [0, 0], [0, 0], [0, max_new_tokens], [0, 0], [0, 0]])
        token_ids = tf.pad(prompt_ids, [[0, 0], [0, max_new_tokens]], constant_values=pad_id)
        in_prompt = tf.sequence_mask(lengths, total)
        stop_at = lengths + max_new_tokens  # exclusive, per row
        positions = tf.range(total)
        if sampling:
            k = tf.minimum(top_k, vocabulary_size)

        def body(index, token_ids, cache, done):
            previous = tf.slice(token_ids, [0, index - 1], [batch_size, 1])
            logits, _, cache = model.call_with_cache(previous, cache, index - 1)
            logits = tf.cast(logits[:, 0, :], tf.float32)
            if sampling:
                probabilities = tf.nn.softmax(logits / temperature, axis=-1)
                top_probabilities, top_indices = tf.math.top_k(probabilities, k=k, sorted=False)
                choice = tf.random.stateless_categorical(
                    tf.math.log(top_probabilities), 1, seed=tf.stack([seed, index]), dtype=tf.int32
                )
                next_ids = tf.gather(top_indices, choice, batch_dims=1)[:, 0]
            else:
                # As keras-hub's GreedySampler: argmax of the softmax.
                next_ids = tf.argmax(tf.nn.softmax(logits, axis=-1), axis=-1, output_type=tf.int32)
            keep_prompt = in_prompt[:, index]
            next_ids = tf.where(keep_prompt, token_ids[:, index], next_ids)
            token_ids = tf.where(tf.equal(positions, index)[None, :], next_ids[:, None], token_ids)
            finished = tf.logical_and(tf.logical_not(keep_prompt), tf.equal(next_ids, end_id))
            done = done | finished | (index + 1 >= stop_at)
            return index + 1, token_ids, cache, done

        def cond(index, token_ids, cache, done):
            return tf.logical_and(index < total, tf.logical_not(tf.reduce_all(done)))

        start = tf.reduce_min(tf.concat([lengths, [prompt_width]], axis=0))
        done = tf.fill([batch_size], max_new_tokens <= 0)
        cache_shape = tf.TensorShape([None, num_layers, 2, None, num_heads, head_dim])
        _, token_ids, _, _ = tf.while_loop(
            cond,
            body,
            (start, token_ids, cache, done),
            shape_invariants=(
                tf.TensorShape([]),
                tf.TensorShape([None, None]),
                cache_shape,
                tf.TensorShape([None]),
            ),
        )
        # Keep each row's new tokens, up to (without) its first end-of-text.
        generated_zone = (positions[None, :] >= lengths[:, None]) & (positions[None, :] < stop_at[:, None])
        ends = generated_zone & tf.equal(token_ids, end_id)
        after_end = tf.cumsum(tf.cast(ends, tf.int32), axis=1) > 0
        generated = tf.ragged.boolean_mask(token_ids, generated_zone & tf.logical_not(after_end))
        text = tokenizer.detokenize(generated)
        return {
            "generated_text": tf.reshape(text, [-1]),
            "num_generated_tokens": tf.cast(generated.row_lengths(), tf.int32),
        }

    if sampling:
        return _core_ops_only(generate)

    def generate_greedy(prompts, max_new_tokens):
        return generate(prompts, max_new_tokens)

    return _core_ops_only(generate_greedy)


def sft_prompt_parts(run):
    """`(before, after, start_id)` of an SFT run's template (a raw prompt becomes `before + prompt + after`), or `None`."""
    from klm.generate import run_template, sft_settings

    template = run_template(run)
    if template is None:
        return None
    before, after = template.single_turn_parts()
    return before, after, sft_settings(run).get("start_token_id")


# === References computed with the Keras model (for the check) ===


def keras_reference(run, texts, prompts, max_new_tokens):
    """What the serving signatures should return, computed with the Keras model.

    Written apart from the graph functions above (one text at a time, NumPy
    log-softmax in float64, greedy decoding without a key/value cache that
    runs the whole sequence again for each token), so that the check
    compares two implementations.
    """
    import keras
    import numpy as np

    def ids_of(text):
        out = run.tokenizer.tokenize([text, _SENTINEL_TEXT])
        if hasattr(out, "to_list"):
            row = out.to_list()[0]
        elif isinstance(out, list):
            row = out[0]
        else:
            row = np.asarray(out)[0].tolist()
        return [int(i) for i in row]

    pad_id = int(run.tokenizer.pad_token_id)
    if run.task == "classifier":
        rows = []
        for text in texts:
            ids = ids_of(text)[: run.seq_len]
            token_ids = np.full((1, run.seq_len), pad_id, "int32")
            token_ids[0, : len(ids)] = ids
            mask = np.zeros((1, run.seq_len), "int32")
            mask[0, : len(ids)] = 1
            logits = keras.ops.convert_to_numpy(
                run.model({"token_ids": token_ids, "padding_mask": mask}, training=False)
            ).astype("float64")[0]
            if run.multi_label:
                rows.append((1.0 / (1.0 + np.exp(-logits))).tolist())
            else:
                e = np.exp(logits - logits.max())
                rows.append((e / e.sum()).tolist())
        return {"probabilities": rows}
    end_id = _end_token_id(run.tokenizer)
    log_likelihoods, counts = [], []
    for text in texts:
        ids = ids_of(text)[: run.seq_len]
        if not ids:
            log_likelihoods.append(0.0)
            counts.append(0)
            continue
        inputs = np.asarray([[end_id] + ids[:-1]], "int32")
        logits = keras.ops.convert_to_numpy(
            run.model({"token_ids": inputs, "padding_mask": np.ones_like(inputs)}, training=False)
        ).astype("float64")[0]
        log_probs = logits - logits.max(-1, keepdims=True)
        log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
        log_likelihoods.append(float(log_probs[np.arange(len(ids)), ids].sum()))
        counts.append(len(ids))
    if sft_prompt_parts(run) is not None:
        # An SFT run: the SavedModel must answer a raw prompt as `klm generate` does.
        from klm.generate import generate_reply

        greedy = [generate_reply(run, prompt, max_new_tokens=max_new_tokens, sampler="greedy") for prompt in prompts]
        return {"log_likelihood": log_likelihoods, "num_tokens": counts, "greedy": greedy}
    # Greedy decoding without a cache: the whole sequence again for each token.
    greedy = []
    for prompt in prompts:
        ids = ids_of(prompt) or [end_id]
        new_ids = []
        for _ in range(max_new_tokens):
            sequence = np.asarray([ids + new_ids], "int32")
            logits = keras.ops.convert_to_numpy(
                run.model({"token_ids": sequence, "padding_mask": np.ones_like(sequence)}, training=False)
            )
            next_id = int(np.argmax(logits[0, -1].astype("float32")))
            if next_id == end_id:
                break
            new_ids.append(next_id)
        text = run.tokenizer.detokenize([new_ids]) if new_ids else [b""]
        text = np.asarray(text).reshape(-1)[0]
        greedy.append(text.decode("utf-8", errors="replace") if isinstance(text, bytes) else str(text))
    return {"log_likelihood": log_likelihoods, "num_tokens": counts, "greedy": greedy}


# === The TensorFlow worker (`python -m klm.export build REQUEST.json`) ===


def _build_worker(request):
    from klm import backend as backend_lib

    backend_lib.use_backend("tensorflow")
    run = runs.load_run(request["run_dir"], which=request["checkpoint"])
    archive = build_export_archive(run)
    archive.write_out(request["path"], verbose=False)
    result = {"num_parameters": int(run.model.count_params())}
    if request.get("reference"):
        result["reference"] = keras_reference(run, request["texts"], request["prompts"], request["max_new_tokens"])
    with open(request["result"], "w") as f:
        json.dump(result, f)


def _worker_main(argv):
    if len(argv) != 2 or argv[0] != "build":
        print("usage: python -m klm.export build REQUEST.json", file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        request = json.load(f)
    try:
        _build_worker(request)
    except KlmError as e:
        print(f"KLM_ERROR: {e}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
