"""`LabelVocabulary`: the mapping between label names and class ids."""

import json
import os

import numpy as np

from klm.errors import DataError

LABELS_FILE = "labels.json"


def _sort_key(labels):
    # Integer-like labels sort numerically, so "0".."9","10" keep their
    # values as ids (SST-2's "0"/"1" become ids 0/1); others sort as strings.
    if all(label.lstrip("-").isdigit() for label in labels):
        return lambda label: (int(label), label)
    return lambda label: label


class LabelVocabulary:
    """Label names in a fixed order; a label's id is its position.

    Built from the training labels (sorted: numerically when every label is
    an integer, otherwise by code point) and stored with the model as JSON
    (`{"labels": [...], "multi_label": false}`), so that valid/test data and
    later predictions use the same ids.

    Args:
        labels: the label names, in id order.
        multi_label: bool. Whether an example may have several labels
            (encoded multi-hot) or exactly one (encoded as an int).

    Example:

    >>> vocabulary = LabelVocabulary.from_labels(["pos", "neg", "pos"])
    >>> vocabulary.labels
    ['neg', 'pos']
    >>> vocabulary.encode(["pos", "neg"]).tolist()
    [1, 0]
    """

    def __init__(self, labels, multi_label=False):
        labels = [str(label) for label in labels]
        if not labels:
            raise DataError("Expected at least one label. Received: no labels")
        if len(set(labels)) != len(labels):
            raise DataError(f"Expected distinct labels. Received: labels={labels}")
        self.labels = labels
        self.multi_label = bool(multi_label)
        self._ids = {label: i for i, label in enumerate(labels)}

    @classmethod
    def from_labels(cls, labels, multi_label=None):
        """Builds the vocabulary from training labels.

        Args:
            labels: one label name per example, or one list of names per
                example (multi-label).
            multi_label: bool, or `None` to decide from `labels` (any list
                makes it multi-label).
        """
        if multi_label is None:
            multi_label = any(isinstance(label, (list, tuple)) for label in labels)
        names = set()
        for label in labels:
            names.update(label if isinstance(label, (list, tuple)) else [label])
        names = [str(name) for name in names]
        return cls(sorted(names, key=_sort_key(names)), multi_label=multi_label)

    def __len__(self):
        return len(self.labels)

    def __eq__(self, other):
        return isinstance(other, LabelVocabulary) and (self.labels, self.multi_label) == (
            other.labels,
            other.multi_label,
        )

    def id(self, label, path=None, line_number=None):
        """The id of one label name; unknown labels raise a `DataError`."""
        try:
            return self._ids[str(label)]
        except KeyError:
            where = f" on line {line_number} of {path}" if path is not None else ""
            shown = self.labels if len(self.labels) <= 20 else self.labels[:20] + ["..."]
            raise DataError(
                f"Expected a label seen in the training data {shown}{where}. Received: label={label!r}"
            ) from None

    def encode(self, labels, path=None, line_numbers=None):
        """Encodes labels: int32 ids `[n]`, or float32 multi-hot `[n, len(self)]`.

        Args:
            labels: one name (or list of names, multi-label) per example.
            path: the file the labels come from, for error messages.
            line_numbers: the line of each example in `path`.

        Raises:
            DataError: for a label not in the vocabulary (naming file and
                line), or several labels on a single-label vocabulary.
        """
        if line_numbers is None:
            line_numbers = [None] * len(labels)
        if self.multi_label:
            encoded = np.zeros((len(labels), len(self.labels)), dtype=np.float32)
            for row, (label, line) in enumerate(zip(labels, line_numbers)):
                for name in label if isinstance(label, (list, tuple)) else [label]:
                    encoded[row, self.id(name, path, line)] = 1.0
            return encoded
        encoded = np.zeros((len(labels),), dtype=np.int32)
        for row, (label, line) in enumerate(zip(labels, line_numbers)):
            if isinstance(label, (list, tuple)):
                if len(label) != 1:
                    where = f" on line {line} of {path}" if path is not None else ""
                    raise DataError(
                        f"Expected exactly one label per example{where} (the training data is single-label). "
                        f"Received: label={label!r}"
                    )
                label = label[0]
            encoded[row] = self.id(label, path, line)
        return encoded

    def decode(self, ids):
        """Label names of class ids (or, multi-label, of multi-hot rows)."""
        ids = np.asarray(ids)
        if self.multi_label and ids.ndim >= 1 and ids.shape[-1] == len(self.labels) and ids.dtype.kind == "f":
            rows = ids.reshape(-1, len(self.labels))
            return [[self.labels[i] for i in np.flatnonzero(row > 0.5)] for row in rows]
        return [self.labels[int(i)] for i in ids.reshape(-1)]

    def to_dict(self):
        return {"labels": list(self.labels), "multi_label": self.multi_label}

    def save(self, path):
        """Writes the vocabulary as JSON; a folder `path` gets `labels.json`."""
        if os.path.isdir(path):
            path = os.path.join(path, LABELS_FILE)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=2)
            f.write("\n")

    @classmethod
    def load(cls, path):
        """Reads a vocabulary written by `save` (a file or a folder)."""
        if os.path.isdir(path):
            path = os.path.join(path, LABELS_FILE)
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            return cls(data["labels"], multi_label=data.get("multi_label", False))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DataError(f"Cannot read the label vocabulary: {e}. Received: path={os.fspath(path)!r}") from None
