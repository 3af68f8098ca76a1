import os

import keras
import numpy as np
import pytest

from klm import runs
from klm.errors import ConfigError, RunDirError
from klm.models import KlmBackbone, KlmCausalLM, preset_config
from klm.quantize import QuantizeConfig, quantization_of, quantize_model, weight_bytes
from klm.testing import token_batch


def _seed_lm():
    # The `seed` preset: scaled embeddings, untied output projection with a bias.
    return KlmCausalLM(KlmBackbone(**preset_config("seed", 64)))


@pytest.mark.parametrize("mode", ["int8", "int4"])
@pytest.mark.heavy
def test_quantized_model_is_close_smaller_and_reloads(tmp_path, mode):
    model = _seed_lm()
    batch = token_batch(2, 8)
    reference = keras.ops.convert_to_numpy(model(batch))
    before = weight_bytes(model)
    layers = quantize_model(model, mode)
    assert "token_embedding" in layers and set(layers.values()) == {mode}
    outputs = keras.ops.convert_to_numpy(model(batch))
    # klm's embedding scale (sqrt(200)) and output bias are applied around Keras's quantized kernels.
    tolerance = 0.05 if mode == "int8" else 0.3  # int4: 16 levels per group of weights
    assert np.abs(outputs - reference).max() < tolerance * np.abs(reference).max()
    assert weight_bytes(model) < 0.3 * before
    path = str(tmp_path / "model.keras")
    model.save(path)
    reloaded = runs.load_model(path)
    assert quantization_of(reloaded) == layers
    # int4: a reloaded ReversibleEmbedding also quantizes the hidden states of its output projection (Keras
    # rebuilds it from the dtype policy, without the quantization config that said weight-only), so the
    # reloaded logits differ a little; klm quantize measures the reloaded model, which every command uses.
    atol = 0.01 if mode == "int8" else 0.05 * np.abs(reference).max()
    np.testing.assert_allclose(keras.ops.convert_to_numpy(reloaded(batch)), outputs, atol=atol)


@pytest.mark.heavy
def test_quantizing_twice_is_refused():
    model = _seed_lm()
    quantize_model(model, "int8")
    with pytest.raises(RunDirError, match="already quantized"):
        quantize_model(model, "int4")


def test_config_refuses_bad_input(tmp_path):
    out = str(tmp_path / "out")
    with pytest.raises(ConfigError, match="--mode"):
        QuantizeConfig(source="runs/x", out_dir=out, mode="int2")
    with pytest.raises(ConfigError, match="--calibration"):
        QuantizeConfig(source="runs/x", out_dir=out, mode="gptq")
    with pytest.raises(ConfigError, match="--calibration"):
        QuantizeConfig(source="runs/x", out_dir=out, mode="int8", calibration="x.txt")
    with pytest.raises(ConfigError, match="--eval-data"):
        QuantizeConfig(source="runs/x", out_dir=out, eval_data=str(tmp_path / "missing.txt"))
    os.makedirs(out)
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(RunDirError, match="OUT already exists"):
        QuantizeConfig(source="runs/x", out_dir=out)
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("mode", ["int8", "int4"])
@pytest.mark.heavy
def test_lora_on_a_reloaded_quantized_model_saves_and_reloads(tmp_path, mode):
    # QLoRA: adapters on the frozen quantized kernels of a *reloaded* model. Keras's Dense/Embedding read their
    # mode from `dtype_policy` when saving; a reloaded backbone gives each layer the DTypePolicyMap, whose mode is
    # None, so the scales were saved as None ("Invalid dtype: object"). `runs.load_model` resolves them.
    from klm.pretrained import apply_lora

    model = _seed_lm()
    batch = token_batch(2, 8)
    layers = quantize_model(model, mode)
    model.save(str(tmp_path / "quantized.keras"))
    model = runs.load_model(str(tmp_path / "quantized.keras"))
    apply_lora(model, 2)
    rng = np.random.default_rng(0)
    adapted = [layer for layer in model._flatten_layers() if getattr(layer, "lora_enabled", False)]
    assert adapted
    for layer in adapted:  # as if trained: the updates change the outputs
        layer.lora_kernel_b.assign(rng.normal(0, 0.05, layer.lora_kernel_b.shape).astype("float32"))
    outputs = keras.ops.convert_to_numpy(model(batch))
    runs.save_model(model, tmp_path / "qlora.keras")
    reloaded = runs.load_model(tmp_path / "qlora.keras")
    assert quantization_of(reloaded) == layers  # the adapters were merged into the quantized kernels
    # Merging re-quantizes each adapted kernel (a new scale per channel): int8/int4 rounding, no more.
    tolerance = 0.05 if mode == "int8" else 0.3
    difference = np.abs(keras.ops.convert_to_numpy(reloaded(batch)) - outputs).max()
    assert difference < tolerance * np.abs(outputs).max()
