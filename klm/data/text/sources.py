"""Reading raw text sources: files, globs, folders and the WikiText layout.

A *source* is anything a user can name on the command line: a file, a glob
(`"books/**/*.txt"`), a folder (read recursively), a WikiText folder (with
train/valid/test files), or a named dataset (`wikitext-2`, see
`klm.data.downloads`). This module turns those names into `SourceFile`s and
streams *documents* out of them: one document is one text item.

Supported file formats (each may also be gzip-compressed, `name.txt.gz`):

| format     | extensions                        | one document is            |
|------------|-----------------------------------|----------------------------|
| `text`     | `.txt .md .text .tokens .raw`,    | one line                   |
|            | and any unknown extension         |                            |
| `html`     | `.html .htm`                      | one line of visible text   |
| `jsonl`    | `.jsonl .ndjson`                  | the `text_field` of a line |
| `csv`      | `.csv`                            | the `text_field` column    |
| `tsv`      | `.tsv`                            | the `text_field` column    |
| `wikitext` | `wiki.{split}.tokens`, `.raw`,    | one line                   |
|            | `{split}.txt` in a WikiText folder|                            |

Plain text is read one line per document, as the reference does with WikiText
(`for item in raw_text_iter`), rather than one paragraph per document: line
boundaries are the only structure every plain-text corpus shares.

Lines are read as bytes by `klm.data.text.raw_lines` (which also refuses
binary files), so that a stray carriage return or Unicode line separator never
splits a document, and so that invalid UTF-8 can be reported with its line
number (see `TextCleaner.decode`).
"""

import csv
import dataclasses
import glob
import html
import html.parser
import json
import os
import re
from pathlib import Path

from klm.data.text.raw_lines import iter_raw_lines
from klm.errors import DataError

FORMATS = ("auto", "text", "html", "jsonl", "csv", "tsv", "wikitext")
TEXT_EXTENSIONS = (".txt", ".md", ".text", ".tokens", ".raw")
HTML_EXTENSIONS = (".html", ".htm")
JSONL_EXTENSIONS = (".jsonl", ".ndjson")
TABLE_EXTENSIONS = (".csv", ".tsv")
KNOWN_EXTENSIONS = TEXT_EXTENSIONS + HTML_EXTENSIONS + JSONL_EXTENSIONS + TABLE_EXTENSIONS
SPLITS = ("train", "valid", "test")
# The two namings of WikiText split files. "tokens" covers both the original
# archive names and the renamed copies of the PyTorch word-language-model
# example; "raw" is the character-level archive.
WIKITEXT_NAMINGS = {
    "tokens": ("wiki.{split}.tokens", "{split}.txt"),
    "raw": ("wiki.{split}.raw",),
}
_GLOB_CHARACTERS = re.compile(r"[*?\[]")


@dataclasses.dataclass(frozen=True)
class SourceFile:
    """One input file and the format it is read with.

    Args:
        path: the file path (a `str`).
        format: one of `"text"`, `"html"`, `"jsonl"`, `"csv"`, `"tsv"`,
            `"wikitext"`.
    """

    path: str
    format: str

    def to_dict(self):
        return {"path": self.path, "format": self.format}


def strip_compression_suffix(name):
    """Returns `name` without a trailing `.gz`."""
    return name[:-3] if name.lower().endswith(".gz") else name


def detect_format(path):
    """Guesses the format of one file from its name.

    Files of a WikiText folder (see `find_wikitext_splits`) are `"wikitext"`;
    otherwise the extension decides, and unknown extensions read as `"text"`.

    Args:
        path: a file path.

    Returns:
        One of `"text"`, `"html"`, `"jsonl"`, `"csv"`, `"tsv"`, `"wikitext"`.
    """
    path = Path(path)
    if is_wikitext_file(path):
        return "wikitext"
    suffix = Path(strip_compression_suffix(path.name)).suffix.lower()
    if suffix in HTML_EXTENSIONS:
        return "html"
    if suffix in JSONL_EXTENSIONS:
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    if suffix == ".tsv":
        return "tsv"
    return "text"


def find_wikitext_splits(folder):
    """Finds the split files of a WikiText folder.

    A folder is a WikiText folder when at least two of its train/valid/test
    files exist in one naming: `wiki.train.tokens` or `train.txt` (the
    "tokens" form) or `wiki.train.raw` (the "raw" form). Requiring two splits
    keeps an ordinary folder holding a lone `train.txt` a plain-text folder.

    Args:
        folder: a folder path.

    Returns:
        A dict from split name to `Path` (only the splits that exist), or
        `None` when `folder` is not a WikiText folder.

    Example:

    >>> find_wikitext_splits("data/wikitext-2")  # doctest: +SKIP
    {'train': PosixPath('data/wikitext-2/wiki.train.tokens'), ...}
    """
    folder = Path(folder)
    if not folder.is_dir():
        return None
    for patterns in WIKITEXT_NAMINGS.values():
        for pattern in patterns:
            found = {}
            for split in SPLITS:
                for candidate in (pattern.format(split=split), pattern.format(split=split) + ".gz"):
                    if (folder / candidate).is_file():
                        found[split] = folder / candidate
                        break
            if len(found) >= 2:
                return found
    return None


def is_wikitext_file(path):
    """Whether `path` is one split file of a WikiText folder."""
    path = Path(path)
    splits = find_wikitext_splits(path.parent)
    return bool(splits) and any(p.name == path.name for p in splits.values())


def _is_known_extension(name):
    base = strip_compression_suffix(name).lower()
    return base.endswith(KNOWN_EXTENSIONS)


def expand_sources(specs, format="auto"):
    """Expands files, globs and folders into a sorted list of `SourceFile`s.

    Folders are read recursively; inside them only files with a known
    extension (see the module docstring) are taken and hidden files are
    skipped. Each glob and folder must match at least one file.

    Args:
        specs: a path, glob or folder, or a list of them.
        format: `"auto"` to detect each file's format, or a format name that
            applies to every file.

    Returns:
        A list of `SourceFile`.

    Raises:
        DataError: when a path does not exist or a glob or folder is empty.
    """
    if isinstance(specs, (str, os.PathLike)):
        specs = [specs]
    if format not in FORMATS:
        raise DataError(f"Expected a format in {', '.join(FORMATS)}. Received: format={format!r}")
    files = []
    for spec in specs:
        spec = os.fspath(spec)
        if os.path.isdir(spec):
            found = []
            for root, dirs, names in os.walk(spec):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(names):
                    if not name.startswith(".") and _is_known_extension(name):
                        found.append(os.path.join(root, name))
            if not found:
                raise DataError(
                    f"Expected the folder {spec} to contain text files "
                    f"({', '.join(KNOWN_EXTENSIONS)}, optionally .gz). Received: an empty folder"
                )
            files.extend(found)
        elif os.path.isfile(spec):
            files.append(spec)
        elif _GLOB_CHARACTERS.search(spec):
            found = sorted(p for p in glob.glob(spec, recursive=True) if os.path.isfile(p))
            if not found:
                raise DataError(f"Expected the pattern to match at least one file. Received: pattern={spec!r}")
            files.extend(found)
        else:
            raise DataError(f"Cannot find the source file or folder. Received: path={spec!r}")
    result = []
    for path in files:
        if not os.access(path, os.R_OK):
            raise DataError(f"Cannot read the source file (permission denied). Received: path={path!r}")
        result.append(SourceFile(path=path, format=detect_format(path) if format == "auto" else format))
    return result


def _default_decode(raw, path, line_number):
    return raw.decode("utf-8", errors="replace")


class _VisibleTextParser(html.parser.HTMLParser):
    """Collects the visible text of an HTML page, one block per line."""

    _SKIP = {"script", "style", "head", "title", "noscript", "template"}
    _BLOCK = {
        "p",
        "div",
        "br",
        "li",
        "ul",
        "ol",
        "tr",
        "td",
        "th",
        "table",
        "section",
        "article",
        "header",
        "footer",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "pre",
        "blockquote",
        "hr",
        "dd",
        "dt",
        "dl",
        "figcaption",
        "main",
        "nav",
    }

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts = []
        self._skip_depth = 0

    def handle_starttag(self, tag, attrs):
        if tag in self._SKIP:
            self._skip_depth += 1
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in self._SKIP:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data):
        if not self._skip_depth:
            # Source line breaks inside a paragraph are not document breaks.
            self.parts.append(data.replace("\n", " "))


def html_to_text(markup):
    """Returns the visible text of an HTML page, one block element per line.

    Tags, comments, `<script>`/`<style>`/`<head>` content are dropped and
    character references (`&amp;`) are decoded.
    """
    parser = _VisibleTextParser()
    parser.feed(markup)
    parser.close()
    return "".join(parser.parts)


_TAG = re.compile(r"<!--.*?-->|<[A-Za-z!/][^<>]*>", re.DOTALL)


def strip_markup(text):
    """Removes HTML tags from one line of text and decodes entities.

    Used by the `strip_html` cleaning step on text that is not an HTML file.
    """
    return html.unescape(_TAG.sub(" ", text))


def iter_documents(source, text_field="text", decode=None):
    """Streams the documents of one source file.

    Args:
        source: a `SourceFile` (or a path, whose format is detected).
        text_field: the JSONL field or CSV/TSV column that holds the text.
        decode: a callable `(bytes, path, line_number) -> str` that decodes
            one line (`TextCleaner.decode` counts and optionally rejects
            invalid UTF-8). Defaults to UTF-8 with replacement characters.

    Yields:
        `(text, line_number)` pairs; `line_number` is 1-based and points at
        the line where the document starts.

    Raises:
        DataError: for unreadable files, malformed JSONL or CSV/TSV rows, and
            missing fields or columns; the message names the file and line.
    """
    if not isinstance(source, SourceFile):
        source = SourceFile(path=os.fspath(source), format=detect_format(source))
    decode = decode or _default_decode
    path = source.path
    if source.format in ("text", "wikitext"):
        for raw, number in iter_raw_lines(path):
            yield decode(raw, path, number), number
    elif source.format == "html":
        yield from _iter_html(path, decode)
    elif source.format == "jsonl":
        yield from _iter_jsonl(path, text_field, decode)
    elif source.format in ("csv", "tsv"):
        for row, number in iter_table_rows(path, source.format, [text_field], decode):
            yield row[text_field], number
    else:
        raise DataError(f"Expected a format in {', '.join(FORMATS[1:])}. Received: format={source.format!r}")


def _iter_html(path, decode):
    # HTML tags may span lines, so a page is parsed whole; pages are small
    # compared with a corpus, and only one is held at a time.
    lines = [decode(raw, path, number) for raw, number in iter_raw_lines(path)]
    for number, line in enumerate(html_to_text("\n".join(lines)).split("\n"), start=1):
        yield line, number


def _iter_jsonl(path, field, decode):
    for raw, number in iter_raw_lines(path):
        line = decode(raw, path, number)
        if not line.strip():
            continue
        value = parse_json_line(line, path, number, [field])[field]
        if not isinstance(value, str):
            raise DataError(
                f"Expected a string in field {field!r} on line {number} of {path}. "
                f"Received: {type(value).__name__} {str(value)[:60]!r}"
            )
        yield value, number


def load_json_line(line, path, number):
    """Decodes one JSONL line, for every JSONL reader (text, classification and SFT data).

    Returns:
        The decoded JSON value.

    Raises:
        DataError: naming the file and line, for malformed JSON, and for
            nesting too deep for the parser (`[[[[...` 100,000 deep raises
            `RecursionError` inside `json`, which is bad input, not a crash).
    """
    try:
        return json.loads(line)
    except json.JSONDecodeError as e:
        reason = e.msg
    except RecursionError:
        reason = "arrays or objects nested too deeply to parse"
    raise DataError(
        f"Malformed JSON on line {number} of {path} ({reason}); expected one JSON object per line. "
        f"Received: {line.strip()[:80]!r}"
    )


def parse_json_line(line, path, number, fields):
    """Parses one JSONL line and checks that it holds `fields`.

    Returns:
        The decoded JSON object (a dict).

    Raises:
        DataError: naming the file and line, for malformed JSON, a value that
            is not an object, or a missing field.
    """
    record = load_json_line(line, path, number)
    if not isinstance(record, dict):
        raise DataError(
            f"Expected a JSON object on line {number} of {path}. Received: {type(record).__name__} {line[:80]!r}"
        )
    for field in fields:
        if field not in record or record[field] is None:
            raise DataError(
                f"Expected a field {field!r} on line {number} of {path}; the line has fields "
                f"{sorted(record)}. Choose the field with --text-field/--label-field. "
                f"Received: field={field!r}"
            )
    return record


def iter_table_rows(path, format, columns, decode=None):
    """Streams the rows of a CSV or TSV file with a header line.

    CSV follows RFC 4180 (quoted fields may contain commas and newlines).
    TSV is read without quote handling, because tab-separated corpora
    routinely contain unbalanced `"` characters in their text.

    Args:
        path: the file path.
        format: `"csv"` or `"tsv"`.
        columns: the column names that must be present.
        decode: as in `iter_documents`.

    Yields:
        `(row, line_number)` with `row` a dict from column name to string.

    Raises:
        DataError: for a missing header or column, or a row whose number of
            fields differs from the header's, naming the file and line.
    """
    decode = decode or _default_decode

    def lines():
        for raw, number in iter_raw_lines(path):
            yield decode(raw, path, number) + "\n"

    if format == "tsv":
        reader = csv.reader(lines(), delimiter="\t", quoting=csv.QUOTE_NONE)
    else:
        reader = csv.reader(lines())
    try:
        header = next(reader, None)
        if header is None:
            raise DataError(f"Expected a header line naming the columns in {path}. Received: an empty file")
        header = [name.strip() for name in header]
        for column in columns:
            if column not in header:
                raise DataError(
                    f"Expected a column {column!r} in the header of {path}; it has columns {header}. "
                    f"Choose the column with --text-field/--label-field. Received: column={column!r}"
                )
        for fields in reader:
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue
            if len(fields) != len(header):
                raise DataError(
                    f"Expected {len(header)} fields (as in the header) on line {reader.line_num} of {path}. "
                    f"Received: {len(fields)} fields {fields[:4]!r}"
                )
            yield dict(zip(header, fields)), reader.line_num
    except csv.Error as e:
        raise DataError(f"Malformed {format.upper()} row on line {reader.line_num} of {path}: {e}") from None
