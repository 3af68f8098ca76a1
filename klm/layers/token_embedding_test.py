import keras
import numpy as np

from klm.layers.token_embedding import TokenEmbedding


def test_tied_reverse_uses_embedding_matrix():
    layer = TokenEmbedding(10, 4, tie_weights=True)
    hidden = layer(np.array([[1, 2]]))
    logits = keras.ops.convert_to_numpy(layer(hidden, reverse=True))
    matrix = keras.ops.convert_to_numpy(layer.embeddings)
    np.testing.assert_allclose(logits, keras.ops.convert_to_numpy(hidden) @ matrix.T, atol=1e-5)
    assert len(layer.weights) == 1


def test_untied_with_bias_and_scale():
    layer = TokenEmbedding(10, 4, tie_weights=False, embeddings_scale=2.0, use_output_bias=True)
    ids = np.array([[3]])
    hidden = keras.ops.convert_to_numpy(layer(ids))
    np.testing.assert_allclose(hidden[0, 0], 2.0 * keras.ops.convert_to_numpy(layer.embeddings)[3], atol=1e-6)
    layer.output_bias.assign(np.arange(10, dtype="float32"))
    logits = keras.ops.convert_to_numpy(layer(np.zeros((1, 1, 4), "float32"), reverse=True))
    np.testing.assert_allclose(logits[0, 0], np.arange(10), atol=1e-6)
    assert len(layer.weights) == 3


def test_config_round_trip():
    layer = TokenEmbedding(10, 4, tie_weights=False, embeddings_scale=3.0, use_output_bias=True)
    restored = TokenEmbedding.from_config(layer.get_config())
    assert restored.get_config() == layer.get_config()
