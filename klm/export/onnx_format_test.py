"""ONNX export of tiny models under the current backend, checked in ONNX Runtime alone (as `klm export` does)."""

import os

import keras
import pytest

from klm.backend.export import onnx_exporter_package

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip(onnx_exporter_package())

from klm.errors import ConfigError  # noqa: E402
from klm.export import testing  # noqa: E402
from klm.export.config import ExportError  # noqa: E402
from klm.export.onnx_format import export_onnx  # noqa: E402
from klm.pretrained import load_checkpoint  # noqa: E402


@pytest.mark.heavy
def test_klm_lm_and_classifier(tmp_path):
    testing.make_run(tmp_path / "lm", tokenizer="word")
    result = export_onnx(load_checkpoint(str(tmp_path / "lm")), tmp_path / "lm-onnx")
    assert result["verified"] and result["max_abs_diff"] <= 1e-4
    assert result["checked_shapes"] == [[2, 7], [1, 11]]  # dynamic batch and sequence
    assert result["files"]["model.onnx"] > 0 and "tokenizer/tokenizer.json" in result["files"]
    assert "no exact tokenizer.json" in result["tokenizer"]["reason"]
    print(f"klm LM on {keras.backend.backend()}: max abs diff {result['max_abs_diff']:.2e}, {result['files']}")

    testing.make_run(tmp_path / "clf", task="classifier", tokenizer="byte")
    classifier = load_checkpoint(str(tmp_path / "clf"))
    if keras.backend.backend() == "torch":
        # torch.export specializes the classifier's sequence length (its pooling reads the traced shape):
        # the check feeds another length, ONNX Runtime refuses it, and nothing is published.
        with pytest.raises(ExportError, match="invalid dimensions"):
            export_onnx(classifier, tmp_path / "clf-onnx")
        assert not os.path.exists(tmp_path / "clf-onnx")
        return
    result = export_onnx(classifier, tmp_path / "clf-onnx")
    assert result["verified"] and result["max_abs_diff"] <= 1e-4
    output = next(iter(result["outputs"].values()))
    assert output[1][-1] == str(len(testing.LABELS))  # (batch, classes) probabilities


@pytest.mark.heavy
def test_pretrained_gpt2_with_tokenizer_json(tmp_path):
    from klm.pretrained import testing as hf_testing

    checkpoint = load_checkpoint(hf_testing.cached_hf_checkpoint("gpt2"))
    result = export_onnx(checkpoint, tmp_path / "gpt2-onnx")
    assert result["verified"] and result["max_abs_diff"] <= 1e-4 and result["tokenizer_ids_match"]
    assert set(result["files"]) >= {"model.onnx", "tokenizer.json"}
    print(f"GPT-2 on {keras.backend.backend()}: max abs diff {result['max_abs_diff']:.2e}, {result['files']}")


def test_bfloat16_model_is_refused(tmp_path):
    from klm.models import KlmBackbone, KlmCausalLM
    from klm.pretrained.checkpoint import Checkpoint
    from klm.testing import tiny_backbone_config

    model = KlmCausalLM(KlmBackbone(**tiny_backbone_config(), dtype="bfloat16"))
    with pytest.raises(ConfigError, match="float32"):
        export_onnx(Checkpoint(model=model, tokenizer=None), tmp_path / "out")
    assert not os.path.exists(tmp_path / "out")
