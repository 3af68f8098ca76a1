import tensorflow as tf

from klm.data.testing import to_python
from klm.data.tokenizers.byte_tokenizer import ByteTokenizer


def test_ids_and_specials():
    tokenizer = ByteTokenizer()
    assert tokenizer.vocabulary_size() == 258
    assert (tokenizer.pad_token_id, tokenizer.end_token_id, tokenizer.unk_token_id) == (256, 257, None)
    assert to_python(tokenizer.tokenize(["hé"])) == [[104, 195, 169]]
    assert to_python(tokenizer.detokenize([[104, 195, 169, 257, 256, 256]])) == ["hé"]
    assert tokenizer.token_to_id("</s>") == 257 and tokenizer.id_to_token(256) == "<pad>"
    assert len(tokenizer.get_vocabulary()) == 258


def test_runs_inside_tf_data():
    tokenizer = ByteTokenizer()
    dataset = tf.data.Dataset.from_tensor_slices(["ab", "c"]).batch(2).map(tokenizer.tokenize)
    assert to_python(next(iter(dataset))) == [[97, 98], [99]]
