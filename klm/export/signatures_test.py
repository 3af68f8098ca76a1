"""Tests of `klm.export.signatures`: `score_function` and `classify_function` match the Keras model (TF backend)."""

import numpy as np
import pytest

from klm.export.testing import LABELS, make_run
from klm.pretrained.checkpoint import load_run


def _tensorflow_only():
    import keras

    if keras.backend.backend() != "tensorflow":
        pytest.skip("builds TF graph functions in-process (tests/export_test.py covers the other backends)")


def test_score_function_matches_the_one_text_at_a_time_reference(tmp_path):
    _tensorflow_only()
    import tensorflow as tf

    from klm.export import keras_reference, score_function

    make_run(tmp_path / "lm")
    run = load_run(tmp_path / "lm")
    texts = ["the cat sat on the mat .", "", "hello"]
    scores = tf.function(score_function(run), autograph=False)(tf.constant(texts))
    ref = keras_reference(run, texts, ["a"], 1)
    np.testing.assert_allclose(scores["log_likelihood"].numpy(), ref["log_likelihood"], atol=1e-4)
    assert scores["num_tokens"].numpy().tolist() == ref["num_tokens"]


def test_token_conventions_of_klm_and_pretrained_runs(tmp_path):
    from klm.export.signatures import document_prefix_id, start_token_id

    class Tokenizer:
        start_token_id, end_token_id, pad_token_id = 7, 3, None

    class Run:
        tokenizer = Tokenizer()
        config = {}

    run = Run()
    assert start_token_id(run) is None and document_prefix_id(run) == 3  # klm runs: end-of-text
    run.config = {"pretrained": {"add_start_token": True}}
    assert start_token_id(run) == 7 and document_prefix_id(run) == 7  # GPT-2, Llama 3
    run.config = {"pretrained": {"add_start_token": False}}
    assert start_token_id(run) is None and document_prefix_id(run) == 3  # Qwen


@pytest.mark.parametrize("multi_label", [False, True])
def test_classify_function_matches_keras_in_process(tmp_path, multi_label):
    _tensorflow_only()
    import tensorflow as tf

    from klm.export import classify_function, keras_reference

    make_run(tmp_path / "cls", task="classifier", multi_label=multi_label, seq_len=6)
    run = load_run(tmp_path / "cls")
    texts = ["the cat sat on the mat and then a dog ran", "hello", "zebra unknown words"]
    out = tf.function(classify_function(run), autograph=False)(tf.constant(texts))
    expected = np.asarray(keras_reference(run, texts, [], 0)["probabilities"])
    np.testing.assert_allclose(out["probabilities"].numpy(), expected, atol=1e-5)
    if not multi_label:
        np.testing.assert_allclose(expected.sum(-1), 1.0, atol=1e-6)
    assert out["label_id"].numpy().tolist() == np.argmax(expected, -1).tolist()
    assert [label.decode() for label in out["label"].numpy()] == [LABELS[i] for i in np.argmax(expected, -1)]
