"""ONNX export of tiny models under the current backend, checked in ONNX Runtime alone (as `klm export` does)."""

import os

import keras
import pytest

from klm.backend.export import onnx_exporter_extra, onnx_exporter_package

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip(onnx_exporter_package(), reason=f"needs `pip install klm[{onnx_exporter_extra()}]`")

from klm.errors import ConfigError  # noqa: E402
from klm.export import testing  # noqa: E402
from klm.export.config import ExportError  # noqa: E402
from klm.export.onnx_format import export_onnx, polish_graph  # noqa: E402
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
def test_rotary_lm(tmp_path):
    """No position table to bound the sequence (JAX: the `sequence` symbol has no constraint)."""
    testing.make_run(tmp_path / "lm", tokenizer="byte", position_encoding="rotary")
    result = export_onnx(load_checkpoint(str(tmp_path / "lm")), tmp_path / "lm-onnx")
    assert result["verified"] and result["max_abs_diff"] <= 1e-4
    assert result["checked_shapes"] == [[2, 7], [1, 11]]


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


def test_min_and_max_of_booleans_become_valid_onnx(tmp_path):
    """jax2onnx writes `minimum(int mask, bool mask)` as a `Min` with a boolean input, which ONNX refuses."""
    import numpy as np
    import onnx
    import onnxruntime
    from onnx import TensorProto, helper

    inputs = [
        helper.make_tensor_value_info("ints", TensorProto.INT32, [2, 3]),
        helper.make_tensor_value_info("a", TensorProto.BOOL, [2, 3]),
        helper.make_tensor_value_info("b", TensorProto.BOOL, [2, 3]),
    ]
    nodes = [
        helper.make_node("Min", ["ints", "a"], ["mixed"], name="mixed_min"),
        helper.make_node("Max", ["a", "b"], ["either"], name="bool_max"),
        helper.make_node("Min", ["a", "b"], ["both"], name="bool_min"),
    ]
    outputs = [
        helper.make_tensor_value_info("mixed", TensorProto.INT32, [2, 3]),
        helper.make_tensor_value_info("either", TensorProto.BOOL, [2, 3]),
        helper.make_tensor_value_info("both", TensorProto.BOOL, [2, 3]),
    ]
    graph = helper.make_graph(nodes, "masks", inputs, outputs)
    path = str(tmp_path / "masks.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    with pytest.raises(Exception, match="tensor\\(bool\\)"):
        onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    polish_graph(path, "mixed")
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    ints = np.array([[0, 1, 2], [1, 1, 0]], "int32")
    a = np.array([[True, True, False], [False, True, True]])
    b = np.array([[True, False, False], [True, True, False]])
    mixed, either, both = session.run(None, {"ints": ints, "a": a, "b": b})
    np.testing.assert_array_equal(mixed, np.minimum(ints, a.astype("int32")))
    np.testing.assert_array_equal(either, a | b)
    np.testing.assert_array_equal(both, a & b)
