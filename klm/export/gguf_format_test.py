"""GGUF export of tiny GPT-2 and Llama checkpoints, checked in llama-cpp-python alone."""

import pytest

pytest.importorskip("gguf")
pytest.importorskip("llama_cpp")
pytest.importorskip("transformers")

from klm.errors import ConfigError  # noqa: E402
from klm.export.gguf_format import export_gguf  # noqa: E402
from klm.pretrained import load_checkpoint, testing  # noqa: E402


@pytest.mark.parametrize("kind, gguf_type", [("gpt2", "f32"), ("llama", "f32"), ("gpt2", "q8_0"), ("llama", "q8_0")])
def test_gguf_matches_klm(kind, gguf_type, tmp_path):
    checkpoint = load_checkpoint(testing.cached_hf_checkpoint(kind))
    result = export_gguf(checkpoint, tmp_path / "out", gguf_type=gguf_type)
    assert result["verified"] and result["tokenizer_ids_match"]
    assert result["max_abs_diff"] <= result["tolerance"]
    if gguf_type == "f32":
        # GPT-2's GELU goes through llama.cpp's float16 table (see GELU_TABLE_F32_TOLERANCE); Llama's SiLU does not.
        assert result["max_abs_diff"] <= (1e-3 if kind == "llama" else 5e-3) and result["greedy_match"]
    assert list(result["files"]) == ["model.gguf"]
    print(
        f"{kind} {gguf_type}: max abs diff {result['max_abs_diff']:.2e}, greedy {result['greedy_match']}, "
        f"{result['files']['model.gguf']} bytes"
    )


def test_unsupported_type_is_refused(tmp_path):
    checkpoint = load_checkpoint(testing.cached_hf_checkpoint("gpt2"))
    with pytest.raises(ConfigError, match="Received: --gguf-type='q4_k'"):
        export_gguf(checkpoint, tmp_path / "out", gguf_type="q4_k")
    assert not (tmp_path / "out").exists()
