"""Which attention kernel each configuration takes, and that dropout inside the fused kernel stays correct."""

import itertools

import keras
import numpy as np
import pytest

from klm import backend
from klm.layers.causal_self_attention import CausalSelfAttention

BACKEND = keras.backend.backend()


# backend x dropout x training x packing (segment mask) x KV cache -> path.
EXPECTED = {
    # No dropout, or not training: the fused kernel on every backend.
    **{
        (b, dropout, training, masked, False): "fused-masked" if masked else "fused-causal"
        for b, (dropout, training), masked in itertools.product(
            ("tensorflow", "jax", "torch"), ((0.0, True), (0.0, False), (0.1, False), (0.1, None)), (False, True)
        )
    },
    # Attention dropout in training: PyTorch keeps SDPA (with dropout_p), the others go explicit.
    ("torch", 0.1, True, False, False): "sdpa-dropout-causal",
    ("torch", 0.1, True, True, False): "sdpa-dropout-masked",
    ("jax", 0.1, True, False, False): "explicit-dropout",
    ("jax", 0.1, True, True, False): "explicit-dropout",
    ("tensorflow", 0.1, True, False, False): "explicit-dropout",
    ("tensorflow", 0.1, True, True, False): "explicit-dropout",
    # The KV-cache decoding step.
    ("torch", 0.1, False, False, True): "cache-sdpa",
    ("jax", 0.1, False, False, True): "cache-fused",
    ("tensorflow", 0.0, False, False, True): "cache-fused",
}


@pytest.mark.parametrize("case", sorted(EXPECTED, key=str), ids=str)
def test_attention_path_of_each_configuration(case):
    name, dropout, training, masked, cached = case
    path = backend.choose_attention_path(name, dropout, training, masked, cached)
    assert path == EXPECTED[case]
    assert path in backend.ATTENTION_PATHS


class RecordingAttention(CausalSelfAttention):
    """The real layer; records which path each call took (the same `attention_path` call the layer makes)."""

    paths = []

    def call(self, inputs, training=None, attention_mask=None, **kwargs):
        self.paths.append(backend.attention_path(self.dropout, training, masked=attention_mask is not None))
        return super().call(inputs, training=training, attention_mask=attention_mask, **kwargs)


@pytest.mark.parametrize("dropout,training,packed", list(itertools.product((0.0, 0.3), (True, False), (False, True))))
def test_the_layer_takes_the_chosen_path_and_runs_it(dropout, training, packed):
    layer = RecordingAttention(num_heads=2, dropout=dropout)
    RecordingAttention.paths = []
    inputs = np.random.default_rng(0).normal(size=(2, 6, 8)).astype("float32")
    mask = None
    if packed:  # two examples in each row: causal within each one
        segments = np.array([[1, 1, 1, 2, 2, 2]] * 2)
        mask = np.logical_and(segments[:, :, None] == segments[:, None, :], np.tri(6, dtype=bool)[None])
    outputs = keras.ops.convert_to_numpy(layer(inputs, training=training, attention_mask=mask))
    assert outputs.shape == (2, 6, 8) and np.isfinite(outputs).all()
    assert RecordingAttention.paths == [backend.choose_attention_path(BACKEND, dropout, training, packed)]
    deterministic = keras.ops.convert_to_numpy(layer(inputs, training=False, attention_mask=mask))
    if dropout and training:
        assert not np.allclose(outputs, deterministic)
    else:
        np.testing.assert_allclose(outputs, deterministic, rtol=1e-5, atol=1e-6)


def test_explicit_causal_mask_gives_the_fused_causal_numbers():
    layer = RecordingAttention(num_heads=2)
    inputs = np.random.default_rng(1).normal(size=(2, 6, 8)).astype("float32")
    RecordingAttention.paths = []
    fused = keras.ops.convert_to_numpy(layer(inputs, training=False))
    with backend.explicit_causal_mask():
        masked = keras.ops.convert_to_numpy(layer(inputs, training=False))
        dropout_path = backend.choose_attention_path(BACKEND, 0.3, True, False)
        assert backend.attention_path(0.3, True, masked=False) == dropout_path  # training with dropout: unchanged
    assert RecordingAttention.paths == ["fused-causal", "masked-causal"]
    assert backend.attention_path(0.0, False, masked=False) == "fused-causal"  # restored on exit
    np.testing.assert_allclose(masked, fused, rtol=1e-5, atol=1e-6)
    # A later token does not change an earlier output: the mask is causal.
    changed = inputs.copy()
    changed[:, -1] += 1.0
    with backend.explicit_causal_mask():
        later = keras.ops.convert_to_numpy(layer(changed, training=False))
    np.testing.assert_allclose(later[:, :-1], masked[:, :-1], rtol=1e-5, atol=1e-6)
    assert not np.allclose(later[:, -1], masked[:, -1])


def _dropped_probabilities(seq_len, rate, attention_mask=None):
    """Row i of the result = query i's attention probabilities after dropout: zero queries give uniform
    probabilities over the keys it may see, and one-hot values read them out."""
    batch, heads = 64, 2
    query = keras.ops.zeros((batch, seq_len, heads, seq_len))
    key = keras.ops.zeros((batch, seq_len, heads, seq_len))
    value = keras.ops.broadcast_to(keras.ops.eye(seq_len)[None, :, None, :], (batch, seq_len, heads, seq_len))
    if BACKEND == "torch":
        outputs = backend.dropout_attention(query, key, value, rate, attention_mask)
    else:
        layer = CausalSelfAttention(num_heads=heads, dropout=rate)
        layer.build((None, seq_len, heads * seq_len))
        outputs = layer._attention_with_dropout(query, key, value, True, attention_mask)
    return keras.ops.convert_to_numpy(outputs)


@pytest.mark.heavy
def test_attention_dropout_keeps_the_distribution():
    # Every kept probability is scaled by 1 / (1 - rate) (keep-prob scaling), and about `rate` of them are dropped,
    # on the kernel the backend takes in training.
    seq_len, rate = 8, 0.25
    backend.set_seed(3)
    probabilities = _dropped_probabilities(seq_len, rate)
    allowed = np.tri(seq_len, dtype=bool)
    counts = allowed.sum(axis=-1, keepdims=True)  # keys query i may see
    probabilities = np.transpose(probabilities, (0, 2, 1, 3))  # (batch, heads, query, key)
    assert np.all(probabilities[..., ~allowed] == 0)
    expected = np.broadcast_to(1.0 / counts / (1 - rate), allowed.shape)[allowed]
    visible = probabilities[..., allowed]  # (batch, heads, allowed pairs)
    kept = visible != 0
    np.testing.assert_allclose(visible[kept], np.broadcast_to(expected, visible.shape)[kept], rtol=1e-5)
    assert abs(1 - kept.mean() - rate) < 0.03, 1 - kept.mean()


@pytest.mark.heavy
def test_attention_dropout_with_a_segment_mask_stays_inside_segments():
    seq_len, rate = 6, 0.5
    segments = np.array([1, 1, 1, 2, 2, 0])
    allowed = np.logical_and(segments[:, None] == segments[None, :], np.tri(seq_len, dtype=bool))
    mask = np.broadcast_to(allowed, (64, seq_len, seq_len))
    probabilities = np.transpose(_dropped_probabilities(seq_len, rate, mask), (0, 2, 1, 3))
    assert np.all(probabilities[..., ~allowed] == 0)
    assert (probabilities[..., allowed] != 0).any()


@pytest.mark.skipif(BACKEND != "torch", reason="the global generator that SDPA's dropout draws from is PyTorch's")
def test_sdpa_dropout_draws_from_the_generator_klm_saves_and_restores():
    backend.set_seed(5)
    state = backend.global_rng_state()
    first = _dropped_probabilities(8, 0.5)
    second = _dropped_probabilities(8, 0.5)
    assert not np.array_equal(first, second)  # the generator advances
    backend.set_global_rng_state(state)  # what a resumed segment does
    np.testing.assert_array_equal(_dropped_probabilities(8, 0.5), first)
