import tensorflow as tf

from klm.data.testing import to_python
from klm.data.tokenizers.word_piece_tokenizer import WordPieceTokenizer

VOCABULARY = ["[PAD]", "[UNK]", "[BOS]", "[EOS]", "the", "qu", "##ick", "."]


def test_special_ids_and_tokenize():
    tokenizer = WordPieceTokenizer(VOCABULARY)
    assert (tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.start_token_id, tokenizer.end_token_id) == (
        0,
        1,
        2,
        3,
    )
    assert to_python(tokenizer.tokenize(["the quick.", "zzz"])) == [[4, 5, 6, 7], [1]]
    assert to_python(tokenizer.detokenize([[4, 5, 6, 7]])) == ["the quick ."]


def test_runs_inside_tf_data():
    tokenizer = WordPieceTokenizer(VOCABULARY)
    dataset = tf.data.Dataset.from_tensor_slices(["the quick", "the"]).batch(2).map(tokenizer.tokenize)
    assert to_python(next(iter(dataset))) == [[4, 5, 6], [4]]
