"""The two subprocesses of an export: the TensorFlow build worker and the TensorFlow-only check.

- `run_build_worker` starts `python -m klm.export build REQUEST.json`
  (`worker_main` / `build_worker`, TensorFlow backend): it loads the run,
  writes the SavedModel (`klm.export.archive`) and computes the Keras
  reference outputs (`klm.export.reference`).
- `call_in_tensorflow_only_process` runs the script `tf_only_check.py` (by
  its file path, not as a module, so that neither `klm` nor Keras is
  imported) in a fresh interpreter that can import TensorFlow only.

Both report back through JSON files in a scratch folder; a worker's
`KlmError` comes back as a `KLM_ERROR: ` line on stderr.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

from klm import backend as backend_lib
from klm import runs
from klm.errors import KlmError
from klm.export.archive import build_export_archive
from klm.export.cleanup import owned_temp_dir, run_child
from klm.export.config import BLOCKED_MODULES, ExportError
from klm.export.reference import keras_reference
from klm.pretrained import load_checkpoint
from klm.pretrained.checkpoint import backbone_max_positions, load_run

# Scratch folders in $TMPDIR of the TensorFlow-only check (`owned_name`, swept by the next export).
TF_ONLY_PREFIX = "klm-tf-only-"

# A real script file, run by path (see its docstring).
TF_ONLY_CHECK_SCRIPT = Path(__file__).resolve().with_name("tf_only_check.py")


def _subprocess_env(backend="tensorflow"):
    env = dict(os.environ)
    env["KERAS_BACKEND"] = backend
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # The worker imports the same klm as this process, installed or not.
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _tail(text, lines=25):
    return "\n".join((text or "").strip().splitlines()[-lines:])


def _run_subprocess(args, what, timeout_s, env=None):
    # The child is stopped on any exception (a timeout, SIGTERM of the export: klm.export.cleanup).
    try:
        proc = run_child(args, timeout_s=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        raise ExportError(f"{what} did not finish within {timeout_s} s. Received: timeout_s={timeout_s}") from None
    return proc


def run_build_worker(request, scratch, timeout_s):
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
    with owned_temp_dir(TF_ONLY_PREFIX) as scratch:
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
            [sys.executable, str(TF_ONLY_CHECK_SCRIPT), str(request)], "The TensorFlow-only check", timeout_s, env=env
        )
        if not result.exists():
            raise ExportError(
                f"The TensorFlow-only check crashed (exit status {proc.returncode}):\n{_tail(proc.stderr)}"
            )
        data = json.loads(result.read_text())
    if data.get("error"):
        raise ExportError(f"Loading the SavedModel with TensorFlow only failed: {data['error']}")
    return data


def build_worker(request):
    """Writes the SavedModel of `request["run_dir"]` and its reference outputs (TensorFlow backend)."""
    backend_lib.use_backend("tensorflow")
    if request.get("pretrained"):
        run = pretrained_as_run(request["pretrained"])
    else:
        run = load_run(request["run_dir"], which=request["checkpoint"])
    archive = build_export_archive(run)
    archive.write_out(request["path"], verbose=False)
    result = {"num_parameters": int(run.model.count_params()), "tokenizer": type(run.tokenizer).__name__}
    if request.get("reference"):
        result["reference"] = keras_reference(run, request["texts"], request["prompts"], request["max_new_tokens"])
    with open(request["result"], "w") as f:
        json.dump(result, f)


def pretrained_as_run(spec, max_seq_len=1024):
    """A pretrained causal LM (`klm.pretrained.load_checkpoint(spec)`) as the `runs.Run` an export reads.

    Exported like a run started from it: the checkpoint's tokenizer and start
    token, no template, texts scored up to the model's context (at most
    `max_seq_len` tokens, as `klm evaluate` cuts its windows).
    """
    checkpoint = load_checkpoint(spec)
    model = checkpoint.causal_lm
    model.preprocessor = None  # the graph feeds token ids, as for a run's model
    limit = backbone_max_positions(checkpoint.backbone)
    config = {
        "task": "causal_lm",
        "seq_len": min(limit or max_seq_len, max_seq_len),
        "pretrained": dict(checkpoint.source, add_start_token=checkpoint.start_token_id is not None),
    }
    return runs.Run(Path(checkpoint.path or spec), config, "causal_lm", model, checkpoint.tokenizer)


def worker_main(argv):
    """`python -m klm.export build REQUEST.json`: the exit status 3 with a `KLM_ERROR: ` line for a `KlmError`."""
    if len(argv) != 2 or argv[0] != "build":
        print("usage: python -m klm.export build REQUEST.json", file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        request = json.load(f)
    try:
        build_worker(request)
    except KlmError as e:
        print(f"KLM_ERROR: {e}", file=sys.stderr)
        return 3
    return 0
