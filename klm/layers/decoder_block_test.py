import keras
import numpy as np
import pytest

from klm.layers.decoder_block import DecoderBlock


@pytest.mark.parametrize("normalize_first", [True, False])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_shape_and_causality(normalize_first, activation):
    block = DecoderBlock(num_heads=2, intermediate_dim=16, normalize_first=normalize_first, activation=activation)
    x = np.random.default_rng(0).normal(size=(2, 5, 8)).astype("float32")
    base = keras.ops.convert_to_numpy(block(x))
    assert base.shape == (2, 5, 8)
    changed = x.copy()
    changed[:, 3:] = 0.0
    out = keras.ops.convert_to_numpy(block(changed))
    np.testing.assert_allclose(out[:, :3], base[:, :3], atol=1e-5)


def test_post_ln_output_is_normalised():
    # Post-LN ends with a LayerNorm: each position has ~zero mean, unit variance.
    block = DecoderBlock(num_heads=2, intermediate_dim=16, normalize_first=False)
    out = keras.ops.convert_to_numpy(block(np.random.rand(1, 4, 8).astype("float32")))
    np.testing.assert_allclose(out.mean(-1), 0.0, atol=1e-4)


@pytest.mark.heavy
def test_dropout_only_in_training():
    block = DecoderBlock(num_heads=2, intermediate_dim=16, dropout=0.5, attention_dropout=0.5)
    x = np.random.rand(2, 5, 8).astype("float32")
    a = keras.ops.convert_to_numpy(block(x, training=False))
    b = keras.ops.convert_to_numpy(block(x, training=False))
    np.testing.assert_allclose(a, b)
    c = keras.ops.convert_to_numpy(block(x, training=True))
    assert not np.allclose(a, c)


def test_cache_matches_full():
    block = DecoderBlock(num_heads=2, intermediate_dim=16, use_rotary=True)
    x = np.random.rand(1, 4, 8).astype("float32")
    full = keras.ops.convert_to_numpy(block(x))
    cache = np.zeros((1, 2, 4, 2, 4), "float32")
    outs = []
    for t in range(4):
        out, cache = block(x[:, t : t + 1], cache=cache, cache_update_index=t)
        outs.append(keras.ops.convert_to_numpy(out))
    np.testing.assert_allclose(np.concatenate(outs, 1), full, atol=1e-5)


def test_config_round_trip():
    block = DecoderBlock(
        num_heads=2,
        intermediate_dim=16,
        activation="relu",
        normalize_first=False,
        feedforward_bias_initialization="fan_in_uniform",
    )
    restored = DecoderBlock.from_config(block.get_config())
    assert restored.get_config() == block.get_config()


def test_fan_in_uniform_feedforward_biases():
    block = DecoderBlock(num_heads=2, intermediate_dim=64, feedforward_bias_initialization="fan_in_uniform")
    block.build((None, None, 16))
    inner = keras.ops.convert_to_numpy(block.feedforward_intermediate.bias)  # fan_in 16
    outer = keras.ops.convert_to_numpy(block.feedforward_output.bias)  # fan_in 64
    assert np.abs(inner).max() <= 0.25 and np.abs(inner).max() > 0.125
    assert np.abs(outer).max() <= 0.125 and np.std(outer) > 0.01
    with pytest.raises(ValueError, match="feedforward_bias_initialization"):
        DecoderBlock(num_heads=2, intermediate_dim=8, feedforward_bias_initialization="ones")
