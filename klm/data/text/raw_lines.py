"""Raw lines of text files: gzip, binary detection and line splitting.

`iter_raw_lines(path)` yields the lines of a file (gzip-compressed when its
name ends in `.gz`) as bytes with their line numbers, after `check_text_file`
has refused a file that looks binary (`binary_reason`). Lines are split on
`b"\\n"` only (a trailing `b"\\r"` is dropped), so that a stray carriage
return or Unicode line separator never splits a document, and decoding is
left to the caller (see `TextCleaner.decode`).

A UTF-8 byte-order mark at the start of a file (Excel and Notepad write one)
is dropped here, for every reader of text input at once (`utf-8-sig`
semantics), so that it never becomes part of a first CSV column name, a first
label or a first JSON line. A BOM anywhere else is text, left to the cleaner.
"""

import codecs
import gzip
import zlib

from klm.errors import DataError


def _open_binary(path):
    if str(path).lower().endswith(".gz"):
        return gzip.open(path, "rb")
    return open(path, "rb")


def drop_byte_order_mark(data):
    """`data` (bytes or str, the start of a file) without a leading UTF-8 byte-order mark."""
    if isinstance(data, str):
        return data[1:] if data.startswith("\ufeff") else data
    return data[len(codecs.BOM_UTF8) :] if data.startswith(codecs.BOM_UTF8) else data


def read_text_file(path):
    """The whole text of a small UTF-8 file (a template, a config), without a leading byte-order mark.

    Raises:
        DataError: when the file cannot be read or is not UTF-8, naming it.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
        return drop_byte_order_mark(data).decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(
            f"Expected a UTF-8 text file; invalid byte at offset {e.start}. Received: path={str(path)!r}"
        ) from None
    except OSError as e:
        raise DataError(f"Cannot read the file: {e}. Received: path={str(path)!r}") from e


# Binary detection looks at the first block of a file (after gzip
# decompression): a NUL byte, or more than this share of bytes that are not
# valid UTF-8, marks a file that is not text (an executable, an image, a
# UTF-16 file, ...). Legacy 8-bit text (Latin-1, ...) stays well below it.
BINARY_CHECK_BYTES = 8192
BINARY_INVALID_SHARE = 0.3


def binary_reason(block):
    """Why a block of bytes looks binary, or `None` when it looks like text.

    Args:
        block: the first bytes of a file.

    Returns:
        A short description (`"a NUL byte at offset 12"`,
        `"41% of the bytes are not valid UTF-8"`), or `None`.
    """
    if not block:
        return None
    nul = block.find(b"\x00")
    if nul >= 0:
        return f"a NUL byte at offset {nul}"
    # A multi-byte character cut by the end of the block is not an error.
    text = block.decode("utf-8", errors="replace")
    if len(block) == BINARY_CHECK_BYTES:
        text = text[:-1]
    invalid = text.count("\ufffd") - block.decode("utf-8", errors="ignore").count("\ufffd")
    if invalid > BINARY_INVALID_SHARE * len(block):
        return f"{invalid / len(block):.0%} of the bytes are not valid UTF-8"
    return None


def check_text_file(path):
    """Raises a `DataError` naming `path` when the file looks binary.

    The first `BINARY_CHECK_BYTES` bytes (decompressed for `.gz`) are checked
    with `binary_reason`.

    Raises:
        DataError: for a binary file, or one that cannot be read.
    """
    try:
        with _open_binary(path) as f:
            block = f.read(BINARY_CHECK_BYTES)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"Cannot read the source file: {e}. Received: path={str(path)!r}") from e
    reason = binary_reason(block)
    if reason:
        raise DataError(
            f"Expected a text file (UTF-8), but {path} looks binary: {reason} in its first "
            f"{min(len(block), BINARY_CHECK_BYTES):,} bytes. Pass text files only (re-encode UTF-16 or legacy "
            f"8-bit text as UTF-8). Received: path={str(path)!r}"
        )


def iter_raw_lines(path):
    """Yields `(line_bytes, line_number)` for each line of a (gzip) file.

    Lines are split on `b"\\n"` only; the newline and a trailing `b"\\r"` are
    removed, and so is a byte-order mark at the start of line 1. Line
    numbers start at 1. Binary files are refused first (see
    `check_text_file`).

    Raises:
        DataError: when the file cannot be opened or decompressed, or looks
            binary.
    """
    check_text_file(path)
    try:
        with _open_binary(path) as f:
            for number, line in enumerate(f, start=1):
                if number == 1:
                    line = drop_byte_order_mark(line)
                if line.endswith(b"\n"):
                    line = line[:-1]
                if line.endswith(b"\r"):
                    line = line[:-1]
                yield line, number
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"Cannot read the source file: {e}. Received: path={str(path)!r}") from e


def iter_line_blocks(path, block_bytes=1 << 20, check_binary=True):
    """Yields `(first_line_number, block)`: the (gzip) file in blocks of whole lines.

    Each `block` is about `block_bytes` bytes of whole lines, newlines
    included (a longer line makes a longer block); `block_lines(block)` splits
    it into the lines `iter_raw_lines` yields, and `first_line_number` is the
    1-based number of its first line. Binary files are refused first (see
    `check_text_file`) unless `check_binary=False`. A byte-order mark at the
    start of the file is dropped. For handing large files to worker
    processes block by block, without a Python loop over the lines.

    Raises:
        DataError: as `iter_raw_lines`.
    """
    if check_binary:
        check_text_file(path)
    number = 1
    try:
        with _open_binary(path) as f:
            pending = []
            first = True
            while True:
                data = f.read(block_bytes)
                if first:
                    data = drop_byte_order_mark(data)
                    first = False
                if not data:
                    break
                cut = data.rfind(b"\n") + 1
                if not cut:
                    pending.append(data)
                    continue
                block = b"".join(pending + [data[:cut]]) if pending else data[:cut]
                pending = [data[cut:]] if cut < len(data) else []
                yield number, block
                number += block.count(b"\n")
            if pending:
                yield number, b"".join(pending)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"Cannot read the source file: {e}. Received: path={str(path)!r}") from e


def block_lines(block):
    """The lines of a block from `iter_line_blocks`, as `iter_raw_lines` yields them (bytes, no newline,
    no trailing `b"\\r"`)."""
    lines = block.split(b"\n")
    if block.endswith(b"\n"):
        lines.pop()
    if b"\r" not in block:
        return lines
    return [line[:-1] if line.endswith(b"\r") else line for line in lines]
