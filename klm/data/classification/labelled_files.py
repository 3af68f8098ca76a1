"""`LabelledTexts` and `read_labelled_texts`: classification examples from a file.

Formats (each may be gzip-compressed):

- `label-text` (`.txt` and unknown extensions): one example a line,
  `LABEL TEXT`; the label is everything before the first space or tab (the
  form of `../shared/data/sst2`). Blank lines are skipped.
- `csv` / `tsv`: a header line, and the `text_field` and `label_field`
  columns (defaults `text`, `label`).
- `jsonl`: one object a line with `text_field` and `label_field`; the label
  is a name, or a list of names for multi-label data.

With `label_separator` (e.g. `","`), a label string in the label-text or
CSV/TSV forms is split into several names, making the data multi-label.
"""

import dataclasses
import os
from pathlib import Path

from klm.data.text.raw_lines import iter_raw_lines
from klm.data.text.sources import iter_table_rows, parse_json_line, strip_compression_suffix
from klm.errors import DataError

CLASSIFICATION_FORMATS = ("auto", "label-text", "csv", "tsv", "jsonl")


@dataclasses.dataclass
class LabelledTexts:
    """The examples of one classification file.

    Args:
        path: the file they were read from.
        texts: one `str` per example.
        labels: one label name per example, or a list of names (multi-label).
        line_numbers: the line of each example in `path` (1-based).
    """

    path: str
    texts: list
    labels: list
    line_numbers: list

    def __len__(self):
        return len(self.texts)

    @property
    def multi_label(self):
        return any(isinstance(label, list) for label in self.labels)


def detect_classification_format(path):
    """The classification format of a file, from its extension."""
    suffix = Path(strip_compression_suffix(os.fspath(path))).suffix.lower()
    return {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}.get(suffix, "label-text")


def _split_label(label, separator):
    if separator is None:
        return label
    return [name.strip() for name in label.split(separator) if name.strip()]


def read_labelled_texts(path, format="auto", text_field="text", label_field="label", label_separator=None, decode=None):
    """Reads the examples of one classification file.

    Args:
        path: the file.
        format: `"auto"` (from the extension), `"label-text"`, `"csv"`,
            `"tsv"` or `"jsonl"`.
        text_field: the text column or JSON field.
        label_field: the label column or JSON field.
        label_separator: split label strings on this (multi-label).
        decode: `(bytes, path, line) -> str`, e.g. `TextCleaner.decode`;
            defaults to UTF-8 with replacement.

    Returns:
        A `LabelledTexts`.

    Raises:
        DataError: a missing file, a malformed line or row, a missing field
            or column, a bad label value, or no examples; naming file and line.

    Example:

    ```python
    examples = read_labelled_texts("sst2/train.txt")  # "1 a gorgeous film"
    examples.labels[:2], examples.texts[:2]
    ```
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"Cannot find the classification file. Received: path={path!r}")
    if format == "auto":
        format = detect_classification_format(path)
    if format not in CLASSIFICATION_FORMATS:
        raise DataError(f"Expected a format in {', '.join(CLASSIFICATION_FORMATS)}. Received: format={format!r}")
    decode = decode or (lambda raw, p, n: raw.decode("utf-8", errors="replace"))
    texts, labels, lines = [], [], []
    if format == "label-text":
        for raw, number in iter_raw_lines(path):
            line = decode(raw, path, number)
            if not line.strip():
                continue
            parts = line.strip().split(None, 1)
            if len(parts) != 2:
                raise DataError(
                    f"Expected `LABEL TEXT` (a label, a space, then the text) on line {number} of {path}. "
                    f"Received: {line[:80]!r}"
                )
            labels.append(_split_label(parts[0], label_separator))
            texts.append(parts[1])
            lines.append(number)
    elif format == "jsonl":
        for raw, number in iter_raw_lines(path):
            line = decode(raw, path, number)
            if not line.strip():
                continue
            record = parse_json_line(line, path, number, [text_field, label_field])
            text, label = record[text_field], record[label_field]
            if not isinstance(text, str):
                raise DataError(
                    f"Expected a string in field {text_field!r} on line {number} of {path}. Received: {text!r}"
                )
            if isinstance(label, list):
                if not label or not all(isinstance(name, (str, int)) and not isinstance(name, bool) for name in label):
                    raise DataError(
                        f"Expected a non-empty list of label names in field {label_field!r} on line {number} "
                        f"of {path}. Received: {label!r}"
                    )
                label = [str(name) for name in label]
            elif isinstance(label, (str, int)) and not isinstance(label, bool):
                label = _split_label(str(label), label_separator)
            else:
                raise DataError(
                    f"Expected a label name (string or integer) or a list of names in field {label_field!r} "
                    f"on line {number} of {path}. Received: {label!r}"
                )
            texts.append(text)
            labels.append(label)
            lines.append(number)
    else:
        for row, number in iter_table_rows(path, format, [text_field, label_field], decode):
            label = row[label_field].strip()
            if not label:
                raise DataError(f"Expected a label in column {label_field!r} on line {number} of {path}. Received: ''")
            texts.append(row[text_field])
            labels.append(_split_label(label, label_separator))
            lines.append(number)
    if not texts:
        raise DataError(f"Expected at least one example in {path}. Received: an empty file")
    return LabelledTexts(path=path, texts=texts, labels=labels, line_numbers=lines)
