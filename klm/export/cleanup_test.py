import os
import signal
import subprocess
import sys
import threading

import pytest

from klm.export.cleanup import ExportStopped, make_owned_dir, owned_name, run_child, stop_on_signals, sweep_stale


def _dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_sweep_removes_only_klm_names_of_finished_processes(tmp_path):
    dead = _dead_pid()
    stale = tmp_path / f".klm-export-{dead}-0123abcd"
    stale.mkdir()
    (stale / "saved_model.pb").write_bytes(b"x")
    mine = make_owned_dir(".klm-export-", str(tmp_path))
    user = [tmp_path / ".klm-export-notes", tmp_path / f".klm-export-{dead}-0123abcd.bak", tmp_path / "1"]
    for path in user:
        path.mkdir()
    (tmp_path / f".klm-export-{dead}-89abcdef").write_text("a file, not a folder klm made")
    assert sweep_stale(tmp_path, ".klm-export-") == [stale.name]
    assert os.path.isdir(mine) and all(path.exists() for path in user)
    assert os.path.basename(owned_name("p-")).startswith(f"p-{os.getpid()}-")


def test_sigterm_stops_the_child_and_raises(tmp_path):
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers are installed in the main thread only")
    marker = tmp_path / "child.pid"
    script = f"import os, time; open({str(marker)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    timer = threading.Timer(5.0, os.kill, (os.getpid(), signal.SIGTERM))
    with stop_on_signals():
        timer.start()
        with pytest.raises(ExportStopped) as info:
            run_child([sys.executable, "-c", script])
    assert info.value.code == 128 + signal.SIGTERM
    child = int(marker.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL or callable(signal.getsignal(signal.SIGTERM))
