import keras
import numpy as np
import pytest

from klm.layers.causal_self_attention import CausalSelfAttention


def _inputs(batch=2, seq=6, hidden=8, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, seq, hidden)).astype("float32")


@pytest.mark.parametrize("use_rotary", [False, True])
def test_output_shape(use_rotary):
    layer = CausalSelfAttention(num_heads=2, use_rotary=use_rotary)
    outputs = layer(_inputs())
    assert tuple(outputs.shape) == (2, 6, 8)


@pytest.mark.parametrize("use_rotary", [False, True])
def test_causality(use_rotary):
    # Changing position t+1 must never change outputs at positions <= t.
    layer = CausalSelfAttention(num_heads=2, use_rotary=use_rotary)
    x = _inputs()
    base = keras.ops.convert_to_numpy(layer(x))
    for t in range(x.shape[1] - 1):
        changed = x.copy()
        changed[:, t + 1 :] += 10.0
        out = keras.ops.convert_to_numpy(layer(changed))
        np.testing.assert_allclose(out[:, : t + 1], base[:, : t + 1], atol=1e-5)
        assert not np.allclose(out[:, t + 1], base[:, t + 1], atol=1e-3)


def test_attention_dropout_path_matches_fused_path_without_dropout():
    layer = CausalSelfAttention(num_heads=2, dropout=0.5)
    x = _inputs()
    fused = keras.ops.convert_to_numpy(layer(x, training=False))
    query_key_value = layer.qkv_dense(x)
    q, k, v = (keras.ops.reshape(query_key_value, (2, 6, 3, 2, 4))[:, :, i] for i in range(3))
    explicit = layer._attention_with_dropout(q, k, v, training=False)
    explicit = layer.output_dense(keras.ops.reshape(explicit, (2, 6, 8)))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(explicit), fused, atol=1e-5)


@pytest.mark.parametrize("use_rotary", [False, True])
def test_cache_matches_full_computation(use_rotary):
    layer = CausalSelfAttention(num_heads=2, use_rotary=use_rotary)
    x = _inputs(seq=5)
    full = keras.ops.convert_to_numpy(layer(x))
    cache = np.zeros((2, 2, 5, 2, 4), "float32")
    steps = []
    for t in range(5):
        out, cache = layer(x[:, t : t + 1], cache=cache, cache_update_index=t)
        steps.append(keras.ops.convert_to_numpy(out))
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=1e-5)


def test_config_round_trip():
    layer = CausalSelfAttention(num_heads=4, dropout=0.1, use_rotary=True)
    restored = CausalSelfAttention.from_config(layer.get_config())
    assert restored.get_config() == layer.get_config()


def test_bad_heads():
    with pytest.raises(ValueError, match="num_heads"):
        CausalSelfAttention(num_heads=3)(_inputs(hidden=8))
