import pytest

from klm.data.classification.label_vocabulary import LabelVocabulary
from klm.errors import DataError


def test_sorting_and_encoding():
    assert LabelVocabulary.from_labels(["pos", "neg", "pos"]).labels == ["neg", "pos"]
    numeric = LabelVocabulary.from_labels(["10", "2", "0", "1"])
    assert numeric.labels == ["0", "1", "2", "10"]
    assert numeric.encode(["1", "10"]).tolist() == [1, 3]
    assert numeric.decode([3, 0]) == ["10", "0"]


def test_multi_label():
    vocabulary = LabelVocabulary.from_labels([["b", "a"], ["c"]])
    assert vocabulary.multi_label and vocabulary.labels == ["a", "b", "c"]
    encoded = vocabulary.encode([["a", "c"], ["b"]])
    assert encoded.dtype.name == "float32" and encoded.tolist() == [[1, 0, 1], [0, 1, 0]]
    assert vocabulary.decode(encoded) == [["a", "c"], ["b"]]


def test_unknown_label_names_file_and_line():
    vocabulary = LabelVocabulary.from_labels(["neg", "pos"])
    with pytest.raises(DataError, match=r"line 7 of dev.txt.*label='neutral'"):
        vocabulary.encode(["pos", "neutral"], path="dev.txt", line_numbers=[3, 7])
    with pytest.raises(DataError, match="exactly one label"):
        vocabulary.encode([["pos", "neg"]], path="dev.txt", line_numbers=[1])


def test_save_and_load(tmp_path):
    vocabulary = LabelVocabulary(["x", "y"], multi_label=True)
    vocabulary.save(str(tmp_path))
    assert LabelVocabulary.load(str(tmp_path)) == vocabulary
    with pytest.raises(DataError, match="label vocabulary"):
        LabelVocabulary.load(str(tmp_path / "missing.json"))
