"""Tests of `klm.losses`: same values, gradients and training curve as Keras's loss."""

import keras
import numpy as np
import pytest
from keras import ops

from klm.losses import SparseCrossEntropyFromLogits, sparse_cross_entropy_from_logits


def _data(shape=(3, 5), vocab=37, scale=8.0, seed=0):
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal(shape + (vocab,)) * scale).astype("float32")
    labels = rng.integers(0, vocab, shape).astype("int32")
    return labels, logits


@pytest.mark.parametrize("shape", [(6,), (3, 5), (2, 3, 4)])
def test_matches_keras_per_position(shape):
    labels, logits = _data(shape)
    expected = ops.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    got = sparse_cross_entropy_from_logits(labels, logits)
    assert tuple(got.shape) == shape
    np.testing.assert_allclose(ops.convert_to_numpy(got), ops.convert_to_numpy(expected), rtol=1e-5, atol=1e-5)


def test_labels_with_trailing_axis_and_large_logits():
    labels, logits = _data(scale=1e4)  # overflows a naive exp
    got = ops.convert_to_numpy(sparse_cross_entropy_from_logits(labels[..., None], logits))
    expected = ops.convert_to_numpy(ops.sparse_categorical_crossentropy(labels, logits, from_logits=True))
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-3)


def test_loss_class_reduction_and_bfloat16_logits():
    labels, logits = _data()
    keras_loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    ours = SparseCrossEntropyFromLogits()
    np.testing.assert_allclose(float(ours(labels, logits)), float(keras_loss(labels, logits)), rtol=1e-6)
    weights = np.linspace(0, 1, labels.size).reshape(labels.shape).astype("float32")
    np.testing.assert_allclose(
        float(ours(labels, logits, sample_weight=weights)),
        float(keras_loss(labels, logits, sample_weight=weights)),
        rtol=1e-6,
    )
    # bfloat16 logits are computed in float32: the result is the float32 loss
    # of the bf16-rounded logits.
    bf16 = ops.cast(logits, "bfloat16")
    got = sparse_cross_entropy_from_logits(labels, bf16)
    assert keras.backend.standardize_dtype(got.dtype) == "float32"
    rounded = ops.convert_to_numpy(ops.cast(bf16, "float32"))
    np.testing.assert_allclose(
        ops.convert_to_numpy(got), ops.convert_to_numpy(sparse_cross_entropy_from_logits(labels, rounded)), rtol=1e-6
    )


def test_config_round_trip():
    loss = SparseCrossEntropyFromLogits(reduction="sum", name="xent")
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(restored, SparseCrossEntropyFromLogits)
    assert restored.reduction == "sum" and restored.name == "xent"


def _train_curve(loss, steps=6):
    from klm.models import KlmCausalLM, backbone_from_preset

    keras.utils.set_random_seed(0)
    model = KlmCausalLM(backbone_from_preset("tiny", vocabulary_size=53))
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=1.0, global_clipnorm=0.5), loss=loss, weighted_metrics=[]
    )
    x = np.random.default_rng(0).integers(0, 53, (4, 9)).astype("int32")
    curve = []
    for _ in range(steps):  # one batch, repeated: the loss must fall
        inputs = {"token_ids": x, "padding_mask": np.ones_like(x)}
        logs = model.train_on_batch(inputs, np.roll(x, -1, axis=1), return_dict=True)
        curve.append(float(logs["loss"]))
    return np.array(curve)


def test_training_curve_matches_keras_loss():
    keras_curve = _train_curve(keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    ours = _train_curve(SparseCrossEntropyFromLogits())
    assert keras_curve[-1] < keras_curve[0]
    np.testing.assert_allclose(ours, keras_curve, rtol=1e-5, atol=1e-5)
