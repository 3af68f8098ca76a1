import gzip

from klm.data.text.raw_lines import BINARY_CHECK_BYTES, binary_reason, iter_raw_lines


def test_binary_reason():
    assert binary_reason(b"") is None
    assert binary_reason("plain text, caf\u00e9 \u2014 \u4e2d\u6587\n".encode()) is None
    assert binary_reason("latin-1 caf\xe9 cr\xe8me\n".encode("latin-1") * 50) is None
    assert binary_reason(b"ELF\x00\x01") == "a NUL byte at offset 3"
    assert "not valid UTF-8" in binary_reason(bytes(range(128, 256)) * 8)
    # A character cut by the end of the first block is not counted.
    block = ("\u00e9" * BINARY_CHECK_BYTES).encode()[: BINARY_CHECK_BYTES - 1] + b"\xc3"
    assert binary_reason(block[:BINARY_CHECK_BYTES]) is None


def test_raw_lines_split_on_newline_only(tmp_path):
    path = tmp_path / "a.txt.gz"
    with gzip.open(path, "wb") as f:
        f.write("one\r\ntwo\u2028still two\n\nlast".encode())
    assert list(iter_raw_lines(path)) == [(b"one", 1), ("two\u2028still two".encode(), 2), (b"", 3), (b"last", 4)]


def test_a_leading_byte_order_mark_is_dropped(tmp_path):
    # Issue 22, items 18, 19, 22: Excel and Notepad start UTF-8 files with a BOM.
    from klm.data.text.raw_lines import block_lines, iter_line_blocks, read_text_file

    text = "\ufefffirst\nsecond \ufeff kept\n"
    plain = tmp_path / "a.txt"
    plain.write_text(text, encoding="utf-8")
    packed = tmp_path / "a.txt.gz"
    with gzip.open(packed, "wb") as f:
        f.write(text.encode())
    for path in (plain, packed):
        expected = [(b"first", 1), ("second \ufeff kept".encode(), 2)]  # only the file's first BOM goes
        assert list(iter_raw_lines(path)) == expected
        blocks = list(iter_line_blocks(path, block_bytes=4))
        assert [line for _, block in blocks for line in block_lines(block)] == [line for line, _ in expected]
    assert read_text_file(plain) == text[1:]
