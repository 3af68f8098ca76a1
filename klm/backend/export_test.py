"""The backend half of the ONNX export: the exporter package per backend, Keras's JAX `arange` under jax2onnx."""

import keras
import numpy as np
import pytest

from klm.backend.export import arange_with_explicit_stop, onnx_exporter_extra, onnx_exporter_package


def test_exporter_package_and_extra():
    expected = {"tensorflow": ("tf2onnx", "onnx"), "jax": ("jax2onnx", "onnx-jax"), "torch": ("onnxscript", "onnx")}
    assert (onnx_exporter_package(), onnx_exporter_extra()) == expected[keras.backend.backend()]


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="patches Keras's JAX backend only")
def test_arange_with_explicit_stop_keeps_keras_results():
    from keras.src.backend.jax import numpy as jax_numpy

    original = jax_numpy.arange
    with arange_with_explicit_stop():
        assert jax_numpy.arange is not original
        for args, expected in (((5,), np.arange(5)), ((2.0,), np.arange(2.0)), ((1, 7, 2), np.arange(1, 7, 2))):
            ours = keras.ops.arange(*args)
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(ours), expected)
            assert keras.backend.standardize_dtype(ours.dtype) == keras.backend.standardize_dtype(original(*args).dtype)
    assert jax_numpy.arange is original
