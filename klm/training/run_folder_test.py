"""RunFolder writes only into folders klm made and deletes only names it generated (no Keras needed)."""

import json

import pytest

from klm import runs
from klm.errors import RunDirError
from klm.training.run_folder import LOCK_FILE, MARKER_FILE, RunFolder

IDENTITY = {"task": "causal_lm", "preset": "tiny", "run_dir": "x", "backend": "tensorflow", "batch_size": 8}
FIELDS = ("task", "preset", "batch_size")


def snapshot(folder):
    """Every path under `folder` with its bytes (folders as None)."""
    return {str(p.relative_to(folder)): (None if p.is_dir() else p.read_bytes()) for p in sorted(folder.rglob("*"))}


def open_folder(path, restart=False, identity=IDENTITY):
    return RunFolder.open(path, identity, restart=restart, identity_fields=FIELDS)


def klm_run(path, with_checkpoint=True, extra=None):
    """A run folder as klm leaves it after its first checkpoint."""
    folder = open_folder(path)
    folder.write_json(runs.CONFIG_FILE, IDENTITY)
    if with_checkpoint:
        (path / "last.keras").write_bytes(b"weights")
    for name, text in (extra or {}).items():
        (path / name).write_text(text)
    folder.close()
    return path


def test_restart_refuses_a_folder_with_a_users_config_json(tmp_path):
    # Issue 22, item 1: "is this a klm run" was decided by any config.json.
    project = tmp_path / "proj"
    project.mkdir()
    (project / "config.json").write_text('{"my": "settings"}')
    (project / "important.txt").write_text("keep me")
    before = snapshot(project)
    with pytest.raises(RunDirError, match="not a klm run folder"):
        open_folder(project, restart=True)
    assert snapshot(project) == before  # nothing deleted, no lock file written


def test_a_transformers_folder_is_not_taken_for_a_run(tmp_path):
    # Item 2: a Transformers checkpoint folder (config.json, weights, tokenizer) is never cleared.
    hf = tmp_path / "hf_copy"
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps({"model_type": "llama", "num_hidden_layers": 2}))
    (hf / "model.safetensors").write_bytes(b"\0" * 64)
    (hf / "tokenizer.json").write_text("{}")
    before = snapshot(hf)
    with pytest.raises(RunDirError, match="not a klm run folder"):
        open_folder(hf)
    assert snapshot(hf) == before


def test_hidden_user_files_survive_and_no_lock_is_written(tmp_path):
    # Item 4: the temp-file sweep deleted `.notes.tmp` and `.tmpcache/` before the folder was refused.
    user = tmp_path / "userdir"
    (user / ".tmpcache").mkdir(parents=True)
    (user / ".tmpcache" / "x").write_text("cache")
    (user / ".notes.tmp").write_text("notes")
    (user / "report.md").write_text("report")
    before = snapshot(user)
    with pytest.raises(RunDirError, match="not a klm run folder"):
        open_folder(user)
    assert snapshot(user) == before
    assert not (user / LOCK_FILE).exists()


def test_restart_deletes_only_what_klm_wrote(tmp_path):
    run = klm_run(tmp_path / "run", extra={"notes.txt": "mine", ".notes.tmp": "also mine"})
    (run / ".config.json.abcd1234.tmp.json").write_text("a kill left this")
    folder = open_folder(run, restart=True)
    folder.close()
    assert (run / "notes.txt").read_text() == "mine"
    assert (run / ".notes.tmp").read_text() == "also mine"
    assert not (run / "last.keras").exists() and not (run / runs.CONFIG_FILE).exists()
    assert not (run / ".config.json.abcd1234.tmp.json").exists()
    assert (run / MARKER_FILE).exists()


def test_a_new_and_an_empty_folder_become_klm_runs(tmp_path):
    (tmp_path / "empty").mkdir()
    for path in (tmp_path / "new", tmp_path / "empty"):
        open_folder(path).close()
        assert (path / MARKER_FILE).is_file()


def test_a_run_without_the_marker_from_an_older_klm_is_adopted(tmp_path):
    run = tmp_path / "old"
    run.mkdir()
    (run / runs.CONFIG_FILE).write_text(json.dumps(IDENTITY))
    (run / "last.keras").write_bytes(b"weights")
    open_folder(run).close()
    assert (run / MARKER_FILE).is_file() and (run / "last.keras").exists()


def test_a_failed_first_start_leaves_an_empty_folder_as_it_was(tmp_path):
    # Item 9's leftover: a folder holding only `.klm.lock` after a start that failed.
    empty = tmp_path / "empty"
    empty.mkdir()
    folder = open_folder(empty)
    folder.write_json(runs.CONFIG_FILE, IDENTITY)
    folder.abandon()
    folder.close()
    assert list(empty.iterdir()) == []
    new = tmp_path / "new"
    folder = open_folder(new)
    folder.abandon()
    assert not new.exists()


def test_resuming_with_another_batch_size_is_refused_naming_the_flag(tmp_path):
    run = klm_run(tmp_path / "run")
    with pytest.raises(RunDirError, match=r"--batch-size=8.*--batch-size=16.*--restart"):
        open_folder(run, identity=dict(IDENTITY, batch_size=16))
    open_folder(run, identity=dict(IDENTITY, batch_size=16), restart=True).close()


def test_a_setting_an_older_run_did_not_record_is_not_compared(tmp_path):
    run = klm_run(tmp_path / "run")
    identity = dict(IDENTITY, optimizer="adamw")
    RunFolder.open(run, identity, identity_fields=FIELDS + ("optimizer",)).close()


def test_every_backup_damaged_and_no_last_keras_is_an_error_not_a_silent_restart(tmp_path):
    # Item 32: both generations damaged and no last.keras restarted from step 0 and duplicated metrics rows.
    run = klm_run(tmp_path / "run", with_checkpoint=False)
    backup = run / "backup"
    backup.mkdir()
    for step in (5, 10):
        stem = f"state-{step:010d}"
        (backup / f"{stem}.weights.h5").write_bytes(b"damaged")
        record = {"state": {"step": step, "batches_done": step}, "weights": f"{stem}.weights.h5", "sha256": "0" * 64}
        (backup / f"{stem}.json").write_text(json.dumps(record))
    folder = open_folder(run)
    with pytest.raises(RunDirError, match=r"every resume backup is damaged.*--restart"):
        folder.resume(model=None)  # the checksums fail before any weights are read
