import os

import keras
import pytest
import tensorflow as tf

from klm.data.testing import to_python
from klm.data.tokenizers.word_tokenizer import (
    SPECIAL_TOKENS,
    WordTokenizer,
    basic_english_python,
    basic_english_split,
    build_word_vocabulary,
)
from klm.errors import DataError

TRICKY = [
    'He said: "Don\'t!" (twice).',
    'Line<br />break and <br/> not, <br "/> quoted',
    "  Leading\tand\u00a0non-breaking\u2003spaces\u3000here  ",
    "Ünïcödé ÀÉÎ İstanbul straße ﬁ ½",
    "what?!;: end...",
    "''quotes'' and \"\"doubled\"\"",
    "",
    "   ",
    "tabs\x1cand\x1fseparators\x85next\u2028line",
    "<unk> tokens = = Heading = =",
    "a.b,c(d)e!f?g;h:i",
]


def split_python(texts):
    return [basic_english_python(t) for t in texts]


def split_graph(texts):
    words = basic_english_split(tf.constant(texts))
    return [[w.decode("utf-8") for w in row] for row in words.to_list()]


def test_in_graph_rules_equal_basic_english_reference():
    assert split_graph(TRICKY) == split_python(TRICKY)


def test_reference_matches_torchtext_examples():
    # Expected values computed with torchtext.data.utils.get_tokenizer("basic_english").
    assert basic_english_python("You can now install TorchText using pip!") == [
        "you",
        "can",
        "now",
        "install",
        "torchtext",
        "using",
        "pip",
        "!",
    ]
    assert basic_english_python("It's a test, isn't it?") == ["it", "'", "s", "a", "test", ",", "isn", "'", "t", "it"]


def test_vocabulary_order_ties_min_freq_and_max_vocab():
    counts = {"b": 3, "a": 3, "c": 1, "<unk>": 9, "d": 2}
    assert build_word_vocabulary(counts) == list(SPECIAL_TOKENS) + ["a", "b", "d", "c"]
    assert build_word_vocabulary(counts, min_freq=2) == list(SPECIAL_TOKENS) + ["a", "b", "d"]
    assert build_word_vocabulary(counts, max_vocab=6) == list(SPECIAL_TOKENS) + ["a", "b"]
    assert build_word_vocabulary({b"\xc3\xa9": 1, b"z": 1}) == list(SPECIAL_TOKENS) + ["z", "é"]


def make_tokenizer(**kwargs):
    return WordTokenizer(list(SPECIAL_TOKENS) + ["the", "cat", ".", "<br"], **kwargs)


def test_tokenize_detokenize_and_special_ids():
    tokenizer = make_tokenizer()
    assert (tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.start_token_id, tokenizer.end_token_id) == (
        0,
        1,
        2,
        3,
    )
    assert tokenizer.vocabulary_size() == 8
    assert to_python(tokenizer.tokenize(["The cat sat.", "the"])) == [[4, 5, 1, 6], [4]]
    assert to_python(tokenizer.tokenize("The cat.")) == [4, 5, 6]
    assert to_python(tokenizer.detokenize([[4, 5, 1, 6, 0, 0]])) == ["the cat <unk> ."]
    assert tokenizer.token_to_id("dog") == 1 and tokenizer.id_to_token(5) == "cat"


def test_sequence_length_and_string_output():
    tokenizer = make_tokenizer(sequence_length=5)
    assert to_python(tokenizer(["the cat ."])) == [[4, 5, 6, 0, 0]]
    strings = make_tokenizer(dtype="string")
    assert to_python(strings.tokenize(["The cat, sat."])) == [["the", "cat", ",", "sat", "."]]


def test_runs_inside_tf_data():
    tokenizer = make_tokenizer()
    dataset = tf.data.Dataset.from_tensor_slices(["the cat", "a cat .", "x"]).batch(2).map(tokenizer)
    assert [to_python(batch) for batch in dataset] == [[[4, 5], [1, 5, 6]], [[1]]]


def test_vocabulary_validation():
    with pytest.raises(DataError, match="starting with"):
        WordTokenizer(["the", "<pad>"])
    with pytest.raises(DataError, match="distinct"):
        WordTokenizer(list(SPECIAL_TOKENS) + ["a", "a"])


def test_assets_round_trip(tmp_path):
    tokenizer = make_tokenizer()
    tokenizer.save_assets(str(tmp_path))
    restored = WordTokenizer.from_config(tokenizer.get_config())
    restored.load_assets(str(tmp_path))
    assert restored.get_vocabulary() == tokenizer.get_vocabulary()


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="SavedModel export of Keras layers needs the TensorFlow backend"
)
def test_exported_saved_model(tmp_path):
    tokenizer = make_tokenizer()
    module = tf.Module()
    module.tokenizer = tokenizer
    module.serve = tf.function(
        lambda text: tokenizer.tokenize(text).to_tensor(), input_signature=[tf.TensorSpec([None], tf.string)]
    )
    tf.saved_model.save(module, os.fspath(tmp_path / "saved"))
    restored = tf.saved_model.load(os.fspath(tmp_path / "saved"))
    assert restored.serve(tf.constant(["The cat ."])).numpy().tolist() == [[4, 5, 6]]
