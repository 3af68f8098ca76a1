import keras
import numpy as np
import pytest

from klm.models.klm_backbone import KlmBackbone
from klm.models.presets import PRESETS, backbone_from_preset
from klm.testing import seed_torch_parameter_count, tiny_backbone_config, token_batch


@pytest.mark.parametrize("position_encoding", ["learned", "sinusoidal", "rotary"])
@pytest.mark.parametrize("normalize_first", [True, False])
def test_output_shape_and_causality(position_encoding, normalize_first):
    backbone = KlmBackbone(**tiny_backbone_config(position_encoding=position_encoding, normalize_first=normalize_first))
    inputs = token_batch(seq_len=8)
    base = keras.ops.convert_to_numpy(backbone(inputs))
    assert base.shape == (2, 8, 16)
    changed = {k: v.copy() for k, v in inputs.items()}
    changed["token_ids"][:, 5:] = 1
    out = keras.ops.convert_to_numpy(backbone(changed))
    np.testing.assert_allclose(out[:, :5], base[:, :5], atol=1e-5)


def test_seed_preset_matches_pytorch_parameter_count():
    for vocab in (1000, 28782):
        backbone = backbone_from_preset("seed", vocabulary_size=vocab)
        assert backbone.count_params() == seed_torch_parameter_count(vocab)


def test_preset_sizes():
    assert 10e6 <= backbone_from_preset("small", vocabulary_size=16000).count_params() <= 20e6
    assert backbone_from_preset("tiny", vocabulary_size=100).count_params() < 100_000
    assert set(PRESETS) == {"seed", "tiny", "small", "base"}


def test_repr_shows_parameter_count():
    backbone = KlmBackbone(**tiny_backbone_config())
    assert f"{backbone.count_params():,} params" in repr(backbone)


def test_config_and_saving_round_trip(tmp_path):
    backbone = KlmBackbone(**tiny_backbone_config(position_encoding="rotary", tie_embeddings=False, output_bias=True))
    restored = KlmBackbone.from_config(backbone.get_config())
    assert restored.get_config() == backbone.get_config()
    path = str(tmp_path / "backbone.keras")
    backbone.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    inputs = token_batch()
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(inputs)), keras.ops.convert_to_numpy(backbone(inputs)), atol=1e-6
    )


def test_bad_arguments():
    with pytest.raises(ValueError, match="position_encoding"):
        KlmBackbone(**tiny_backbone_config(position_encoding="alibi"))
    with pytest.raises(ValueError, match="divisible"):
        KlmBackbone(**tiny_backbone_config(num_heads=3))
    with pytest.raises(ValueError, match="preset"):
        backbone_from_preset("huge", vocabulary_size=10)


def test_pytorch_initialization_matches_the_seed_model():
    # nn.TransformerEncoder deep-copies one layer: all blocks start identical;
    # nn.Linear draws FFN biases from uniform(+-1/sqrt(fan_in)).
    backbone = KlmBackbone(**tiny_backbone_config(num_layers=3, initialization="pytorch"))
    first, *others = [layer.get_weights() for layer in backbone.transformer_layers]
    for weights in others:
        for a, b in zip(first, weights):
            np.testing.assert_array_equal(a, b)
    block = backbone.transformer_layers[0]
    bias = keras.ops.convert_to_numpy(block.feedforward_intermediate.bias)
    assert np.all(np.abs(bias) <= 1 / np.sqrt(16)) and np.std(bias) > 0.01
    # The GPT scheme draws every block independently, with zero biases.
    gpt = KlmBackbone(**tiny_backbone_config(num_layers=2))
    a, b = (keras.ops.convert_to_numpy(layer.feedforward_intermediate.kernel) for layer in gpt.transformer_layers)
    assert not np.allclose(a, b)
    assert not np.any(keras.ops.convert_to_numpy(gpt.transformer_layers[0].feedforward_intermediate.bias))


@pytest.mark.parametrize("initialization", ["gpt", "pytorch"])
def test_every_weight_gets_its_own_random_draw(initialization):
    # Keras initializers draw from a seed fixed per instance: a shared
    # instance would give every same-shaped weight the same values.
    backbone = KlmBackbone(
        **tiny_backbone_config(
            hidden_dim=16, intermediate_dim=16, tie_embeddings=False, initialization=initialization
        )
    )
    block = backbone.transformer_layers[0]
    kernels = [
        block.attention.output_dense.kernel,
        block.feedforward_intermediate.kernel,
        block.feedforward_output.kernel,
        backbone.transformer_layers[1].attention.output_dense.kernel,
    ]
    flat = [keras.ops.convert_to_numpy(k).ravel() for k in kernels]
    embedding = backbone.token_embedding
    flat.append(keras.ops.convert_to_numpy(embedding.embeddings).ravel()[: flat[0].size])
    flat.append(keras.ops.convert_to_numpy(embedding.reverse_embeddings).ravel()[: flat[0].size])
    for i in range(len(flat)):
        for j in range(i + 1, len(flat)):
            if initialization == "pytorch" and (i, j) == (0, 3):
                continue  # blocks are copies of the first under "pytorch"
            assert not np.allclose(flat[i], flat[j]), (i, j)
