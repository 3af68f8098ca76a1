import gzip
import json

import pytest

from klm.data.text.sources import (
    SourceFile,
    detect_format,
    expand_sources,
    find_wikitext_splits,
    html_to_text,
    iter_documents,
    iter_table_rows,
)
from klm.errors import DataError


def documents(path, **kwargs):
    return [text for text, _ in iter_documents(path, **kwargs)]


def test_plain_text_is_one_document_per_line(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes("first line\r\nsecond\u2028still second\n\nlast".encode())
    texts = documents(path)
    assert texts == ["first line", "second\u2028still second", "", "last"]


def test_gzip_and_markdown(tmp_path):
    path = tmp_path / "notes.md.gz"
    with gzip.open(path, "wb") as f:
        f.write(b"# Title\nbody\n")
    assert detect_format(path) == "text"
    assert documents(path) == ["# Title", "body"]


def test_corrupt_gzip_is_a_data_error(tmp_path):
    path = tmp_path / "bad.txt.gz"
    path.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="bad.txt.gz"):
        documents(path)


def test_html_is_reduced_to_visible_text(tmp_path):
    path = tmp_path / "page.html"
    path.write_text(
        "<html><head><title>T</title><style>p {}</style></head><body>"
        "<p>Hello &amp; <b>wel\ncome</b></p><script>var x;</script><div>Second</div></body></html>"
    )
    assert detect_format(path) == "html"
    texts = [t.strip() for t in documents(path) if t.strip()]
    assert texts == ["Hello & wel come", "Second"]


def test_html_to_text_drops_comments():
    assert html_to_text("<p>a<!-- hidden -->b</p>").strip() == "ab"


def test_jsonl_field(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"text": "one"}) + "\n\n" + json.dumps({"body": "x", "text": "two"}) + "\n")
    assert documents(path) == ["one", "two"]
    path.write_text(json.dumps({"body": "x", "text": 1}) + "\n")
    assert documents(path, text_field="body") == ["x"]


def test_jsonl_non_string_field(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"text": ["a", "b"]}) + "\n")
    with pytest.raises(DataError, match="string in field 'text' on line 1"):
        documents(path)


def test_jsonl_missing_field_names_file_and_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"text": "one"}) + "\n" + json.dumps({"content": "two"}) + "\n")
    with pytest.raises(DataError, match=r"field 'text' on line 2 of .*d.jsonl.*content"):
        documents(path)


def test_malformed_jsonl_names_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "ok"}\n{"text": broken}\n')
    with pytest.raises(DataError, match="line 2"):
        documents(path)


def test_csv_and_tsv_columns(tmp_path):
    csv_path = tmp_path / "d.csv"
    csv_path.write_text('id,body\n1,"hello, world"\n2,"multi\nline"\n')
    assert documents(SourceFile(str(csv_path), "csv"), text_field="body") == ["hello, world", "multi\nline"]
    tsv_path = tmp_path / "d.tsv"
    tsv_path.write_text('text\tlabel\nsays "hi\tpos\n')
    assert documents(tsv_path) == ['says "hi']


def test_csv_missing_column_and_bad_row(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("id,body\n1,ok\n")
    with pytest.raises(DataError, match=r"column 'text'.*\['id', 'body'\]"):
        documents(path)
    path.write_text("text,label\nok,1\ntoo,many,fields\n")
    with pytest.raises(DataError, match="line 3"):
        list(iter_table_rows(path, "csv", ["text"]))


def test_expand_sources_files_globs_folders(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.txt").write_text("x")
    (tmp_path / "b" / "y.jsonl").write_text('{"text": "y"}')
    (tmp_path / "b" / ".hidden.txt").write_text("h")
    (tmp_path / "b" / "image.png").write_bytes(b"\x89PNG")
    (tmp_path / "a.txt").write_text("a")
    folder = expand_sources(str(tmp_path / "b"))
    assert [(s.path.split("/")[-1], s.format) for s in folder] == [("x.txt", "text"), ("y.jsonl", "jsonl")]
    globbed = expand_sources([str(tmp_path / "**" / "*.txt")])
    assert sorted(s.path.split("/")[-1] for s in globbed) == ["a.txt", "x.txt"]
    assert expand_sources(str(tmp_path / "a.txt"), format="csv")[0].format == "csv"


def test_expand_sources_errors(tmp_path):
    with pytest.raises(DataError, match="Cannot find"):
        expand_sources(str(tmp_path / "missing.txt"))
    with pytest.raises(DataError, match="match at least one"):
        expand_sources(str(tmp_path / "*.none"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty folder"):
        expand_sources(str(tmp_path / "empty"))


@pytest.mark.parametrize(
    "names",
    [
        ("wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens"),
        ("train.txt", "valid.txt", "test.txt"),
        ("wiki.train.raw", "wiki.valid.raw", "wiki.test.raw"),
    ],
)
def test_wikitext_layouts(tmp_path, names):
    for name in names:
        (tmp_path / name).write_text(" = Title = \n")
    splits = find_wikitext_splits(tmp_path)
    assert {k: v.name for k, v in splits.items()} == dict(zip(["train", "valid", "test"], names))
    assert detect_format(tmp_path / names[1]) == "wikitext"


def test_wikitext_folder_needs_two_splits(tmp_path):
    (tmp_path / "train.txt").write_text("x")
    assert find_wikitext_splits(tmp_path) is None
    assert detect_format(tmp_path / "train.txt") == "text"
    (tmp_path / "test.txt").write_text("y")
    assert set(find_wikitext_splits(tmp_path)) == {"train", "test"}


def test_binary_files_are_refused_naming_the_file(tmp_path):
    path = tmp_path / "photo.txt"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200))
    with pytest.raises(DataError, match=r"Expected a text file.*photo\.txt looks binary: a NUL byte at offset 8"):
        documents(path)
    for name in ("photo.jsonl", "photo.csv", "photo.html"):
        (tmp_path / name).write_bytes(path.read_bytes())
        with pytest.raises(DataError, match=name.replace(".", r"\.")):
            documents(tmp_path / name)


def test_byte_order_mark_in_every_format(tmp_path):
    # Issue 22, items 18-19: "decode using utf-8-sig" (JSONL), column '\ufefftext' not found (CSV).
    bom = "\ufeff"
    files = {
        "a.txt": "hello world\n",
        "a.jsonl": '{"text": "hello world"}\n',
        "a.csv": "text,label\nhello world,1\n",
        "a.tsv": "text\tlabel\nhello world\t1\n",
        "a.html": "<p>hello world</p>\n",
    }
    for name, content in files.items():
        path = tmp_path / name
        path.write_text(bom + content, encoding="utf-8")
        documents = [text for text, _ in iter_documents(str(path)) if text.strip()]
        assert documents == ["hello world"], name
    wikitext = tmp_path / "wikitext"
    wikitext.mkdir()
    for split in ("train", "valid"):
        (wikitext / f"wiki.{split}.tokens").write_text(bom + " = Title = \n", encoding="utf-8")
    assert [text for text, _ in iter_documents(str(wikitext / "wiki.train.tokens"))] == [" = Title = "]


def test_deeply_nested_json_line_is_a_data_error(tmp_path):
    # Issue 22, item 10: RecursionError (a traceback, exit 1) before.
    path = tmp_path / "deep.jsonl"
    path.write_text('{"text": "fine"}\n' + "[" * 100_000 + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"Malformed JSON on line 2 of .*deep\.jsonl \(.*nested too deeply"):
        list(iter_documents(str(path)))
