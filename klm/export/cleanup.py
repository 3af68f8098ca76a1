"""What an export leaves behind when it is stopped: its child processes and temporary folders.

An export runs for minutes in child processes (the TensorFlow build worker,
the TensorFlow-only check, the Transformers check) and writes into
temporary folders (`OUT/.klm-export-*`, `$TMPDIR/klm-export-*`). Three
rules keep a stopped export from leaving anything:

- `stop_on_signals()`: SIGTERM (and SIGINT) raise `ExportStopped` in the
  export, so that its `finally`/`except` blocks run: the temporary folders
  are removed and `run_child` stops the running child (SIGTERM, then
  SIGKILL after a grace period) before the exception goes on.
- temporary names carry the pid of the export that made them
  (`owned_name`); `sweep_stale` removes, on the next export, only folders
  of that exact form whose process no longer runs (a `kill -9` gives no
  chance to clean up). A name klm did not generate is never touched.
"""

import contextlib
import os
import re
import shutil
import signal
import subprocess
import threading
import uuid

# Seconds a child gets to exit after SIGTERM before SIGKILL.
GRACE_SECONDS = 10


class ExportStopped(SystemExit):
    """SIGTERM/SIGINT during an export (exit status 128 + the signal's number, as the shell reports)."""

    def __init__(self, signum):
        super().__init__(128 + signum)
        self.signum = signum


def owned_name(prefix):
    """A temporary name `PREFIX<pid>-<8 hex>` that `sweep_stale` can tell is this process's."""
    return f"{prefix}{os.getpid()}-{uuid.uuid4().hex[:8]}"


def make_owned_dir(prefix, parent=None, suffix=""):
    """Creates the folder `parent/owned_name(prefix) + suffix` (mode 0700; `parent`: `$TMPDIR`); returns its path."""
    import tempfile

    path = os.path.join(parent or tempfile.gettempdir(), owned_name(prefix) + suffix)
    os.mkdir(path, 0o700)
    return path


@contextlib.contextmanager
def owned_temp_dir(prefix, parent=None):
    """`make_owned_dir` removed at the end of the block (like `tempfile.TemporaryDirectory`)."""
    path = make_owned_dir(prefix, parent)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def sweep_stale(directory, prefix, suffix=""):
    """Removes the folders `directory/PREFIX<pid>-<8 hex>SUFFIX` whose process is gone; returns their names.

    Only folders named exactly as `owned_name(prefix) + suffix` names them are
    considered, and only when the pid in the name no longer runs.
    """
    pattern = re.compile(rf"^{re.escape(prefix)}(\d+)-[0-9a-f]{{8}}{re.escape(suffix)}$")
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        match = pattern.match(name)
        path = os.path.join(directory, name)
        if not match or os.path.islink(path) or not os.path.isdir(path):
            continue
        pid = int(match.group(1))
        if pid == os.getpid() or _alive(pid):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(name)
    return removed


@contextlib.contextmanager
def stop_on_signals(signals=(signal.SIGTERM, signal.SIGINT)):
    """Turns `signals` into `ExportStopped` inside the block (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise ExportStopped(signum)

    previous = {}
    for signum in signals:
        previous[signum] = signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def run_child(args, timeout_s=None, env=None, cwd=None):
    """`subprocess.run(args, capture_output=True, text=True)` that stops the child on any exception.

    A timeout, `ExportStopped` or `KeyboardInterrupt` sends the child SIGTERM
    (SIGKILL after `GRACE_SECONDS`) and waits for it before the exception
    goes on, so no child outlives the export.

    Raises:
        subprocess.TimeoutExpired: after `timeout_s` seconds (the child is stopped).
    """
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd)
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
    except BaseException:
        stop_child(process)
        raise
    return subprocess.CompletedProcess(args, process.returncode, stdout, stderr)


def stop_child(process):
    """SIGTERM to a running child, SIGKILL if it has not exited after `GRACE_SECONDS`."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
