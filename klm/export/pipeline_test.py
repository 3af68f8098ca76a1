"""Tests of `klm.export.pipeline`: bad run and output folders give clear errors and write nothing."""

import json
import os

import pytest

from klm import runs
from klm.errors import ConfigError, RunDirError
from klm.export import ExportConfig, ExportError, export_run, tokenizer_metadata
from klm.export.testing import make_run


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("export_pipeline") / "lm"
    make_run(path)
    return path


def _assert_nothing_written(out):
    assert not out.exists() or sorted(p.name for p in out.iterdir()) == ["1"]


def test_missing_run_folder(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RunDirError, match="does not exist"):
        export_run(ExportConfig(run_dir=str(tmp_path / "nope"), out_dir=str(out)))
    assert not out.exists()


def test_not_a_run_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunDirError, match="not a klm run folder"):
        export_run(ExportConfig(run_dir=str(tmp_path / "empty"), out_dir=str(tmp_path / "out")))
    assert not (tmp_path / "out").exists()


def test_unfinished_run(tmp_path, lm_run):
    import shutil

    unfinished = tmp_path / "unfinished"
    shutil.copytree(lm_run, unfinished)
    os.remove(unfinished / runs.SUMMARY_FILE)
    with pytest.raises(RunDirError, match="unfinished run"):
        export_run(ExportConfig(run_dir=str(unfinished), out_dir=str(tmp_path / "out")))
    os.remove(unfinished / "best.keras")
    runs.write_json(unfinished / runs.SUMMARY_FILE, {})
    with pytest.raises(RunDirError, match="holds no checkpoint"):
        export_run(ExportConfig(run_dir=str(unfinished), out_dir=str(tmp_path / "out")))
    assert not (tmp_path / "out").exists()


def test_out_is_a_file_or_version_exists(tmp_path, lm_run):
    out_file = tmp_path / "out.txt"
    out_file.write_text("not a folder")
    with pytest.raises(ConfigError, match="is a file"):
        export_run(ExportConfig(run_dir=str(lm_run), out_dir=str(out_file)))
    assert out_file.read_text() == "not a folder"
    out = tmp_path / "out"
    (out / "1").mkdir(parents=True)
    with pytest.raises(ConfigError, match="Version 1 already exists"):
        export_run(ExportConfig(run_dir=str(lm_run), out_dir=str(out), version=1))
    _assert_nothing_written(out)


def test_portable_refused_before_anything_is_written(tmp_path, lm_run):
    import shutil

    run = tmp_path / "sp"
    shutil.copytree(lm_run, run)
    metadata = tokenizer_metadata(run)
    metadata["kind"] = "sentencepiece"
    (run / "tokenizer" / "tokenizer.json").write_text(json.dumps(metadata))
    with pytest.raises(ConfigError, match="sentencepiece tokenizer"):
        export_run(ExportConfig(run_dir=str(run), out_dir=str(tmp_path / "out"), portable=True))
    assert not (tmp_path / "out").exists()


def test_failed_check_removes_the_half_written_version(tmp_path, lm_run, monkeypatch):
    from klm.export import pipeline

    def fake_build(request, scratch, timeout_s):
        os.makedirs(os.path.join(request["path"], "variables"))
        open(os.path.join(request["path"], "saved_model.pb"), "wb").close()
        return {"reference": {}}

    def failing_check(*args, **kwargs):
        raise ExportError("The exported SavedModel does not match the Keras model: (simulated)")

    monkeypatch.setattr(pipeline, "run_build_worker", fake_build)
    monkeypatch.setattr(pipeline, "call_in_tensorflow_only_process", failing_check)
    new_out = tmp_path / "new" / "serving"
    with pytest.raises(ExportError, match="does not match"):
        export_run(ExportConfig(run_dir=str(lm_run), out_dir=str(new_out)))
    assert not (tmp_path / "new").exists()  # folders it created are removed too
    out = tmp_path / "out"
    (out / "1").mkdir(parents=True)
    with pytest.raises(ExportError):
        export_run(ExportConfig(run_dir=str(lm_run), out_dir=str(out)))
    assert sorted(p.name for p in out.iterdir()) == ["1"]
