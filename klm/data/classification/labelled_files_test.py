import pytest

from klm.data.classification.labelled_files import read_labelled_texts
from klm.errors import DataError


@pytest.mark.parametrize(
    "name, content",
    [
        ("train.txt", "1 a gorgeous film\n0 a dull one\n"),
        ("train.csv", "text,label\na gorgeous film,1\na dull one,0\n"),
        ("train.tsv", "text\tlabel\na gorgeous film\t1\na dull one\t0\n"),
        ("train.jsonl", '{"text": "a gorgeous film", "label": 1}\n{"text": "a dull one", "label": 0}\n'),
    ],
)
def test_byte_order_mark_is_not_part_of_the_first_label_or_column(tmp_path, name, content):
    # Issue 22, items 18, 19, 22: a phantom class '\ufeff1', column '\ufefftext' not found, a JSON error.
    path = tmp_path / name
    path.write_text("\ufeff" + content, encoding="utf-8")
    examples = read_labelled_texts(path)
    assert examples.labels == ["1", "0"] and examples.texts == ["a gorgeous film", "a dull one"]
    assert examples.line_numbers == ([1, 2] if name.endswith((".txt", ".jsonl")) else [2, 3])


def test_deeply_nested_json_line_names_file_and_line(tmp_path):
    # Issue 22, item 10: RecursionError before.
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "fine", "label": 1}\n' + "[" * 100_000 + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"Malformed JSON on line 2 of .*train\.jsonl \(.*nested too deeply"):
        read_labelled_texts(path)
