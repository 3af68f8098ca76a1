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


def test_training_and_inference_paths_agree():
    # Training scales the whole table before the gather (dense gradients);
    # inference gathers first. The values must be identical.
    layer = TokenEmbedding(50, 8, tie_weights=False, embeddings_scale=14.142)
    ids = np.array([[3, 3, 7, 49], [0, 1, 2, 3]])
    inference = keras.ops.convert_to_numpy(layer(ids))
    training = keras.ops.convert_to_numpy(layer(ids, training=True))
    np.testing.assert_array_equal(inference, training)


def test_training_flag_reaches_the_layer_inside_a_functional_model():
    seen = []

    class Probe(TokenEmbedding):
        def call(self, inputs, reverse=False, training=None):
            seen.append(training)
            return super().call(inputs, reverse=reverse, training=training)

    ids = keras.Input((None,), dtype="int32")
    model = keras.Model(ids, Probe(20, 4)(ids))
    model.compile(optimizer="sgd", loss="mse")
    model.fit(np.ones((2, 3), "int32"), np.zeros((2, 3, 4), "float32"), epochs=1, verbose=0)
    assert True in seen
