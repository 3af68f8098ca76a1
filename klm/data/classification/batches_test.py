import numpy as np
import pytest

from klm.data.classification.batches import classification_dataset
from klm.data.tokenizers import ByteTokenizer, WordTokenizer
from klm.errors import DataError

VOCABULARY = ["<pad>", "<unk>", "<s>", "</s>", "a", "fine", "film", "dull"]


def test_padding_truncation_mask_and_int_labels():
    tokenizer = WordTokenizer(VOCABULARY)
    dataset = classification_dataset(
        ["a fine film", "dull", "a fine fine fine film"], [1, 0, 1], tokenizer, seq_len=4, batch_size=2
    )
    (features, labels), (last_features, last_labels) = list(dataset)
    assert features["token_ids"].dtype.name == "int32"
    assert features["token_ids"].numpy().tolist() == [[4, 5, 6, 0], [7, 0, 0, 0]]
    assert features["padding_mask"].numpy().tolist() == [[True, True, True, False], [True, False, False, False]]
    assert labels.numpy().tolist() == [1, 0] and labels.dtype.name == "int32"
    assert last_features["token_ids"].numpy().tolist() == [[4, 5, 5, 5]]
    assert last_features["padding_mask"].numpy().all()
    assert dataset.element_spec[0]["token_ids"].shape.as_list() == [None, 4]


def test_pad_id_of_the_tokenizer_and_multi_hot_labels():
    labels = np.array([[1, 0, 1], [0, 1, 0]], dtype=np.float32)
    dataset = classification_dataset(["ab", "c"], labels, ByteTokenizer(), seq_len=3, batch_size=2, drop_remainder=True)
    features, batch_labels = next(iter(dataset))
    assert features["token_ids"].numpy().tolist() == [[97, 98, 256], [99, 256, 256]]
    assert batch_labels.dtype.name == "float32" and batch_labels.numpy().tolist() == labels.tolist()
    assert dataset.element_spec[0]["token_ids"].shape.as_list() == [2, 3]


def test_shuffle_is_seeded():
    tokenizer = WordTokenizer(VOCABULARY)
    texts = ["a", "fine", "film", "dull"] * 5
    labels = list(range(20))

    def order(seed):
        dataset = classification_dataset(texts, labels, tokenizer, 2, 20, shuffle=True, seed=seed)
        return next(iter(dataset))[1].numpy().tolist()

    assert order(1) == order(1)
    assert sorted(order(1)) == labels and order(1) != labels


def test_errors():
    tokenizer = WordTokenizer(VOCABULARY)
    with pytest.raises(DataError, match="as many labels"):
        classification_dataset(["a"], [0, 1], tokenizer, 4, 2)
    with pytest.raises(DataError, match="integer class ids"):
        classification_dataset(["a"], ["pos"], tokenizer, 4, 2)
