"""`klm export --format onnx|litert|gguf` from the command line: refusals (fast) and a whole export (slow)."""

import json

import keras
import pytest
from click.testing import CliRunner
from conftest import run_in_backend

from klm.cli.main import main
from klm.export.testing import make_run

BACKEND = keras.backend.backend()


def invoke(args):
    return CliRunner().invoke(main, ["export", *args])


def test_existing_out_is_refused_and_kept(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.onnx").write_text("the user's own file")
    for fmt in ("onnx", "litert", "gguf"):
        result = invoke([str(tmp_path / "run"), str(out), "--format", fmt])
        assert result.exit_code == 2, result.output
        assert "exists and is left as it is" in result.output
    assert (out / "model.onnx").read_text() == "the user's own file"


def test_options_of_other_formats_are_usage_errors(tmp_path):
    result = invoke([str(tmp_path / "run"), str(tmp_path / "out"), "--format", "onnx", "--gguf-type", "q8_0"])
    assert result.exit_code == 2 and "--gguf-type applies to --format gguf only" in result.output
    result = invoke([str(tmp_path / "run"), str(tmp_path / "out"), "--format", "gguf", "--version", "2"])
    assert result.exit_code == 2 and "savedmodel only" in result.output
    result = invoke([str(tmp_path / "run"), str(tmp_path / "out"), "--format", "gguf", "--gguf-type", "q4"])
    assert result.exit_code == 2 and "q4" in result.output


@pytest.mark.slow
def test_onnx_export_of_a_run_from_the_command_line(tmp_path):
    """A whole `klm export --format onnx` in a subprocess, checked in ONNX Runtime."""
    from klm.backend.export import onnx_exporter_extra, onnx_exporter_package

    pytest.importorskip("onnxruntime")
    pytest.importorskip(onnx_exporter_package(), reason=f"needs `pip install klm[{onnx_exporter_extra()}]`")
    make_run(tmp_path / "run", tokenizer="byte")
    out = tmp_path / "onnx"
    process = run_in_backend(
        BACKEND, ["-m", "klm.cli.main", "export", str(tmp_path / "run"), str(out), "--format", "onnx", "--json"]
    )
    assert process.returncode == 0, process.stderr[-3000:]
    report = json.loads(process.stdout[process.stdout.index("{") :])
    assert report["verified"] and report["max_abs_diff"] <= 1e-4 and report["backend"] == BACKEND
    assert (out / "model.onnx").stat().st_size == report["files"]["model.onnx"]
