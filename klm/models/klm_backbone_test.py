import keras
import numpy as np
import pytest

from klm.models.klm_backbone import KlmBackbone
from klm.models.presets import PRESETS, backbone_from_preset
from klm.testing import reference_torch_parameter_count, tiny_backbone_config, token_batch


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
        assert backbone.count_params() == reference_torch_parameter_count(vocab)


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


def test_pytorch_initialization_matches_the_reference_model():
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
        **tiny_backbone_config(hidden_dim=16, intermediate_dim=16, tie_embeddings=False, initialization=initialization)
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


@pytest.mark.parametrize("position_encoding", ["learned", "sinusoidal", "rotary"])
@pytest.mark.parametrize("dropout", [0.0, 0.1])
@pytest.mark.heavy
def test_packed_segments_match_examples_alone(position_encoding, dropout):
    """Two examples packed in one row give each the logits it has alone (mask + restarting positions)."""
    from klm.models.klm_causal_lm import KlmCausalLM

    config = tiny_backbone_config(position_encoding=position_encoding)
    config["attention_dropout"] = dropout  # the explicit-softmax path when training; identity at inference
    lm = KlmCausalLM(KlmBackbone(**config))
    rng = np.random.default_rng(0)
    first, second = rng.integers(4, 50, size=5), rng.integers(4, 50, size=4)

    def alone(ids):
        x = {"token_ids": ids[None].astype("int32"), "padding_mask": np.ones((1, len(ids)), "int32")}
        return keras.ops.convert_to_numpy(lm(x))[0]

    packed_ids = np.concatenate([first, second, [0, 0, 0]])[None].astype("int32")
    segments = np.array([[1] * 5 + [2] * 4 + [0] * 3], "int32")
    packed = keras.ops.convert_to_numpy(
        lm(
            {
                "token_ids": packed_ids,
                "padding_mask": (segments > 0).astype("int32"),
                "segment_ids": segments,
            }
        )
    )[0]
    np.testing.assert_allclose(packed[:5], alone(first), atol=1e-5)
    np.testing.assert_allclose(packed[5:9], alone(second), atol=1e-5)
    # Without segment ids the second example would see the first.
    plain = keras.ops.convert_to_numpy(lm({"token_ids": packed_ids, "padding_mask": np.ones_like(packed_ids)}))[0]
    assert np.abs(plain[5:9] - alone(second)).max() > 1e-4


def test_segment_attention_positions():
    from klm.models.klm_backbone import segment_attention

    mask, positions = segment_attention(np.array([[1, 1, 2, 2, 2, 0]], "int32"))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(positions), [[0, 1, 0, 1, 2, 0]])
    mask = keras.ops.convert_to_numpy(mask)[0]
    assert mask[3].tolist() == [False, False, True, True, False, False]
