import pytest

from klm.errors import ConfigError
from klm.export import formats, testing


def test_unknown_format_and_misplaced_options_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="Received: --format='tflite'"):
        formats.export_to("tflite", "run", tmp_path / "out")
    with pytest.raises(ConfigError, match="savedmodel only"):
        formats.export_to("onnx", "run", tmp_path / "out", version=2)
    with pytest.raises(ConfigError, match="--gguf-type applies to --format gguf only"):
        formats.export_to("onnx", "run", tmp_path / "out", gguf_type="q8_0")


def test_existing_out_is_refused_before_loading(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    for fmt in ("onnx", "litert", "gguf"):
        with pytest.raises(ConfigError, match="exists"):
            formats.export_to(fmt, str(tmp_path / "no-such-run"), out)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize(
    "fmt, module, extra",
    [("onnx", "onnxruntime", "onnx"), ("litert", "ai_edge_litert", "litert"), ("gguf", "llama_cpp", "gguf")],
)
def test_missing_runtime_is_named(fmt, module, extra, tmp_path, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == module else find_spec(name, *a))
    with pytest.raises(ConfigError, match=rf"pip install klm\[{extra}\]"):
        formats.export_to(fmt, str(tmp_path / "run"), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_gguf_refuses_klm_architecture_by_name(tmp_path):
    pytest.importorskip("gguf")
    pytest.importorskip("llama_cpp")
    testing.make_run(tmp_path / "run")
    with pytest.raises(ConfigError, match="KlmCausalLM.*exact erf form"):
        formats.export_to("gguf", str(tmp_path / "run"), tmp_path / "out")
    testing.make_run(tmp_path / "clf", task="classifier")
    with pytest.raises(ConfigError, match="is a classifier"):
        formats.export_to("gguf", str(tmp_path / "clf"), tmp_path / "out")
    assert not (tmp_path / "out").exists()
