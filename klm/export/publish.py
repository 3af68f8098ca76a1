"""What every single-folder export format shares: the output-folder rule, staging, runtimes, the isolated check.

- `check_new_output(out_dir)`: OUT must not exist (or be an empty folder);
  an existing file or non-empty folder is refused and left untouched.
- `staged_output(out_dir)`: a context manager yielding a temporary folder
  beside OUT that is renamed to OUT when the block succeeds and removed when
  it fails, so a failed export leaves nothing behind.
- `require_runtime(module, extra, what)`: a clear `ConfigError` naming
  `pip install klm[extra]` when an optional package is missing.
- `run_isolated_check(script, request, allowed)`: runs a check script (a real
  file, run by its path with `python -I`) in a fresh interpreter in which
  importing klm, Keras, keras-hub, TensorFlow, JAX or PyTorch fails unless
  the format's runtime is listed in `allowed`; the script reports back
  through a JSON file.
"""

import contextlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from klm.errors import ConfigError
from klm.export.config import ExportError

# Frameworks an exported model must run without (the check blocks them).
FRAMEWORK_MODULES = ("keras", "keras_hub", "keras_nlp", "tf_keras", "klm", "tensorflow", "jax", "torch")
CHECK_TIMEOUT_S = 900


def check_new_output(out_dir):
    """Returns OUT as an absolute path; raises `ConfigError` when it exists (a file, or a non-empty folder)."""
    out_dir = os.path.abspath(os.fspath(out_dir))
    if os.path.exists(out_dir) and (not os.path.isdir(out_dir) or os.listdir(out_dir)):
        raise ConfigError(
            f"Expected a new or empty output folder; {out_dir} exists and is left as it is. Choose another OUT. "
            f"Received: OUT={out_dir!r}"
        )
    return out_dir


@contextlib.contextmanager
def staged_output(out_dir):
    """Yields a temporary folder beside `out_dir`; renamed to `out_dir` on success, removed on failure."""
    out_dir = check_new_output(out_dir)
    parent = os.path.dirname(out_dir)
    created_parent = not os.path.exists(parent)
    os.makedirs(parent, exist_ok=True)
    temp = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.", suffix=".tmp", dir=parent)
    try:
        yield temp
        check_new_output(out_dir)  # another process may have written OUT meanwhile
        if os.path.isdir(out_dir):
            os.rmdir(out_dir)  # empty (checked above)
        os.replace(temp, out_dir)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        if created_parent:
            with contextlib.suppress(OSError):
                os.rmdir(parent)  # only if still empty
        raise


def require_runtime(module, extra, what, export_format=None):
    """Raises `ConfigError` naming `pip install klm[extra]` when `module` cannot be imported.

    `export_format` is the `--format` named in the message (default: `extra`).
    """
    if importlib.util.find_spec(module) is None:
        raise ConfigError(
            f"{what} needs the Python package `{module}`, which is not installed. Install it with "
            f"`pip install klm[{extra}]`. Received: --format={export_format or extra}"
        )


def run_isolated_check(script, request, allowed, timeout_s=CHECK_TIMEOUT_S, what="The check"):
    """Runs `script REQUEST.json` in a fresh interpreter that cannot import the frameworks (but `allowed`).

    Args:
        script: path of a standalone check script; it reads the request JSON
            (given as `sys.argv[1]`), installs the import blocker from the
            request's `blocked` list and writes its result to `result`.
        request: a JSON-ready dict (the script's inputs).
        allowed: top-level module names the script may import although
            they are frameworks (none of `FRAMEWORK_MODULES` normally).

    Returns:
        The script's result dict.

    Raises:
        ExportError: the process failed or reported an error.
    """
    blocked = [name for name in FRAMEWORK_MODULES if name not in set(allowed)]
    with tempfile.TemporaryDirectory(prefix="klm-export-check-") as scratch:
        request_path = Path(scratch) / "request.json"
        result_path = Path(scratch) / "result.json"
        request_path.write_text(json.dumps(dict(request, blocked=blocked, result=str(result_path))))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KERAS_", "PYTHONPATH"))}
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        try:
            process = subprocess.run(
                [sys.executable, "-I", os.fspath(script), str(request_path)],
                capture_output=True,
                text=True,
                timeout=timeout_s,
                env=env,
                cwd=scratch,
            )
        except subprocess.TimeoutExpired:
            raise ExportError(f"{what} did not finish within {timeout_s} s; nothing was written.") from None
        if not result_path.exists():
            tail = "\n".join((process.stderr or "").strip().splitlines()[-25:])
            raise ExportError(f"{what} crashed (exit status {process.returncode}); nothing was written:\n{tail}")
        result = json.loads(result_path.read_text())
    if result.get("error"):
        raise ExportError(f"{what} failed; nothing was written: {result['error']}")
    if result.get("blocked_modules_imported"):
        raise ExportError(f"{what} imported {result['blocked_modules_imported']}; nothing was written.")
    return result


def file_sizes(folder):
    """`{file name: bytes}` of the files in `folder` (recursively, relative names)."""
    sizes = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            sizes[os.path.relpath(path, folder)] = os.path.getsize(path)
    return dict(sorted(sizes.items()))
