import keras
import numpy as np
import pytest

from klm.layers.sequence_pooling import SequencePooling


def test_last_pools_last_real_token():
    x = np.arange(2 * 4 * 3, dtype="float32").reshape(2, 4, 3)
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1]])
    out = keras.ops.convert_to_numpy(SequencePooling("last")(x, padding_mask=mask))
    np.testing.assert_allclose(out, np.stack([x[0, 1], x[1, 3]]))


def test_mean_ignores_padding():
    x = np.random.rand(2, 4, 3).astype("float32")
    mask = np.array([[1, 1, 1, 0], [1, 0, 0, 0]])
    out = keras.ops.convert_to_numpy(SequencePooling("mean")(x, padding_mask=mask))
    np.testing.assert_allclose(out, np.stack([x[0, :3].mean(0), x[1, 0]]), atol=1e-6)


def test_bad_mode():
    with pytest.raises(ValueError, match="pooling mode"):
        SequencePooling("max")
