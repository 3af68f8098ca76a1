"""Tests of `klm.export.tf_only_check`: a standalone script that imports TensorFlow only and blocks the rest."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from klm.export import BLOCKED_MODULES, ExportError, call_in_tensorflow_only_process
from klm.export.worker import TF_ONLY_CHECK_SCRIPT


def test_the_script_imports_the_standard_library_and_tensorflow_only():
    tree = ast.parse(Path(TF_ONLY_CHECK_SCRIPT).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "no relative imports: the script runs outside its package"
            imported.add(node.module.split(".")[0])
    assert imported - set(sys.stdlib_module_names) == {"tensorflow"}


def _saved_model(path):
    import tensorflow as tf

    class Doubler(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def double(self, x):
            return {"y": 2.0 * x}

    module = Doubler()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.double})
    return path


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    import keras

    if keras.backend.backend() != "tensorflow":
        pytest.skip("writes a SavedModel in-process")
    return _saved_model(tmp_path_factory.mktemp("tf_only") / "1")


@pytest.mark.heavy
def test_check_calls_signatures_without_klm_or_keras(saved_model):
    check = call_in_tensorflow_only_process(
        saved_model, calls=[{"signature": "serving_default", "inputs": {"x": [1.0, 2.5]}}], load_text_ops=False
    )
    assert check["outputs"] == [{"y": [2.0, 5.0]}]
    assert check["blocked_modules_imported"] == [] and check["custom_ops"] == []
    assert "signature_def['serving_default']" in check["signatures_text"]
    assert check["signatures"]["serving_default"]["inputs"] == {"x": ["DT_FLOAT", "(-1)"]}


def _run_script(request, tmp_path, cwd):
    request = dict(request, result=str(tmp_path / "result.json"))
    (tmp_path / "request.json").write_text(json.dumps(request))
    proc = subprocess.run(
        [sys.executable, str(TF_ONLY_CHECK_SCRIPT), str(tmp_path / "request.json")],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads((tmp_path / "result.json").read_text())


def test_blocked_imports_fail_inside_the_script(saved_model, tmp_path):
    # Blocking TensorFlow itself shows the import hook at work: nothing loads.
    result = _run_script(
        {
            "saved_model": str(saved_model),
            "calls": [],
            "load_text_ops": False,
            "load": False,
            "blocked": ["tensorflow"],
        },
        tmp_path,
        cwd=tmp_path,
    )
    assert "No module named 'tensorflow' (blocked by klm's serving check)" in result["error"]
    assert result["blocked_modules_imported"] == []


@pytest.mark.heavy
def test_run_from_the_package_folder_imports_no_blocked_module(saved_model, tmp_path):
    # From the repository root and from klm/export itself: neither klm nor Keras gets imported.
    for cwd in (Path(TF_ONLY_CHECK_SCRIPT).parents[2], Path(TF_ONLY_CHECK_SCRIPT).parent):
        result = _run_script(
            {
                "saved_model": str(saved_model),
                "calls": [],
                "load_text_ops": False,
                "load": True,
                "blocked": list(BLOCKED_MODULES),
            },
            tmp_path,
            cwd=cwd,
        )
        assert result["error"] is None and result["blocked_modules_imported"] == []
        assert result["loaded_signatures"] == ["serving_default"]


@pytest.mark.heavy
def test_a_failing_check_raises_export_error(tmp_path):
    (tmp_path / "saved_model.pb").write_bytes(b"not a protobuf")
    with pytest.raises(ExportError, match="Loading the SavedModel with TensorFlow only failed"):
        call_in_tensorflow_only_process(tmp_path, load_text_ops=False)
