import gzip
import json

import pytest

from klm.data.classification.encoded_splits import load_classification_data
from klm.data.classification.labelled_files import read_labelled_texts
from klm.data.text.cleaning_config import CleaningConfig
from klm.errors import DataError


def test_label_text_form(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("1 a gorgeous film\n\n0\tdull , dull\n")
    examples = read_labelled_texts(path)
    assert examples.labels == ["1", "0"] and examples.texts == ["a gorgeous film", "dull , dull"]
    assert examples.line_numbers == [1, 3]
    path.write_text("1 fine\nlonely\n")
    with pytest.raises(DataError, match=r"LABEL TEXT.*line 2"):
        read_labelled_texts(path)


def test_csv_tsv_and_jsonl(tmp_path):
    (tmp_path / "d.csv").write_text('text,label\n"good, really",pos\nbad,neg\n')
    assert read_labelled_texts(tmp_path / "d.csv").labels == ["pos", "neg"]
    with gzip.open(tmp_path / "d.tsv.gz", "wt") as f:
        f.write("sentence\tsentiment\nok\tpos\n")
    examples = read_labelled_texts(tmp_path / "d.tsv.gz", text_field="sentence", label_field="sentiment")
    assert examples.texts == ["ok"]
    (tmp_path / "d.jsonl").write_text(
        json.dumps({"text": "a", "label": ["x", "y"]}) + "\n" + json.dumps({"text": "b", "label": "z"}) + "\n"
    )
    examples = read_labelled_texts(tmp_path / "d.jsonl")
    assert examples.labels == [["x", "y"], "z"] and examples.multi_label
    (tmp_path / "e.jsonl").write_text(json.dumps({"text": "a", "label": {"x": 1}}) + "\n")
    with pytest.raises(DataError, match="line 1"):
        read_labelled_texts(tmp_path / "e.jsonl")
    with pytest.raises(DataError, match="column 'body'"):
        read_labelled_texts(tmp_path / "d.csv", label_field="label", text_field="body")


def test_label_separator(tmp_path):
    (tmp_path / "d.csv").write_text("text,label\na,x|y\nb,z\n")
    examples = read_labelled_texts(tmp_path / "d.csv", label_separator="|")
    assert examples.labels == [["x", "y"], ["z"]]


def test_load_with_unknown_label_in_dev(tmp_path):
    (tmp_path / "train.txt").write_text("0 bad\n1 good\n")
    (tmp_path / "dev.txt").write_text("1 fine\n2 neutral\n")
    with pytest.raises(DataError, match=r"line 2 of .*dev.txt.*label='2'"):
        load_classification_data(tmp_path / "train.txt", valid=tmp_path / "dev.txt")


def test_load_splits_and_cleaning(tmp_path):
    (tmp_path / "train.txt").write_text("0 Bad\n1 GOOD\n1 good\n")
    (tmp_path / "test.txt").write_text("1 Fine\n")
    data = load_classification_data(
        tmp_path / "train.txt", test=tmp_path / "test.txt", cleaning=CleaningConfig(lowercase=True, deduplicate=True)
    )
    assert data.label_vocabulary.labels == ["0", "1"]
    assert data.train["texts"] == ["bad", "good"] and data.train["labels"].tolist() == [0, 1]
    assert data.test["labels"].tolist() == [1] and data.valid is None
    assert data.cleaning_report["dropped_duplicate"] == 1
