"""Tests of `klm.export.core_ops`: the core-op `slice_update` equals Keras's and leaves no XLA op."""

import numpy as np
import pytest


def _tensorflow_only():
    import keras

    if keras.backend.backend() != "tensorflow":
        pytest.skip("swaps a function of Keras's TensorFlow backend")


@pytest.mark.parametrize("start", [[0, 0, 0], [1, 2, 0], [2, 5, 1], [0, 9, 9]])
def test_slice_update_core_ops_equals_keras(start):
    _tensorflow_only()
    import keras

    from klm.export.core_ops import slice_update_core_ops

    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(3, 7, 4)).astype("float32")
    updates = rng.normal(size=(1, 2, 3)).astype("float32")
    expected = keras.ops.convert_to_numpy(keras.ops.slice_update(inputs, start, updates))  # XLA clamps the starts
    np.testing.assert_array_equal(slice_update_core_ops(inputs, start, updates).numpy(), expected)


def test_core_ops_only_swaps_while_tracing_and_restores():
    _tensorflow_only()
    import keras
    import tensorflow as tf
    from keras.src.backend.tensorflow import core as tf_core

    from klm.export.core_ops import core_ops_only

    original = tf_core.slice_update

    def update(cache, index):
        return keras.ops.slice_update(cache, [0, index], tf.ones([2, 1]))

    def ops_of(fn):
        graph = (
            tf.function(fn, autograph=False)
            .get_concrete_function(tf.TensorSpec([2, 5], tf.float32), tf.TensorSpec([], tf.int32))
            .graph
        )
        return {op.type for op in graph.get_operations()}

    assert "XlaDynamicUpdateSlice" in ops_of(update)  # why the swap exists
    assert not [op for op in ops_of(core_ops_only(update)) if op.startswith("Xla")]
    assert tf_core.slice_update is original
