"""`ClassificationData` and `load_classification_data` for fine-tuning."""

import dataclasses

from klm.data.label_vocabulary import LabelVocabulary
from klm.data.labelled_texts import read_labelled_texts
from klm.data.text_cleaner import TextCleaner


@dataclasses.dataclass
class ClassificationData:
    """Train/valid/test examples with labels encoded by one vocabulary.

    Each split is `None` or a dict with `"texts"` (list of `str`),
    `"labels"` (int32 `[n]`, or float32 multi-hot `[n, num_labels]`) and
    `"path"`. Pass a split to `classification_dataset(split["texts"],
    split["labels"], tokenizer, ...)`.

    Args:
        label_vocabulary: the `LabelVocabulary` (save it with the model).
        train: the training split.
        valid: the validation split, or `None`.
        test: the test split, or `None`.
        cleaning_report: the `TextCleaner` counts, or `None` without cleaning.
    """

    label_vocabulary: LabelVocabulary
    train: dict
    valid: dict | None = None
    test: dict | None = None
    cleaning_report: dict | None = None


def load_classification_data(
    train,
    valid=None,
    test=None,
    format="auto",
    text_field="text",
    label_field="label",
    label_separator=None,
    label_vocabulary=None,
    cleaning=None,
):
    """Reads classification files and encodes their labels.

    The label vocabulary is built from the training labels (sorted), unless
    one is given (e.g. loaded with a model for evaluation). A label in
    `valid`/`test` that the vocabulary lacks is a `DataError` naming the file
    and line.

    Args:
        train: the training file (formats: see `read_labelled_texts`).
        valid: an optional validation file.
        test: an optional test file.
        format: `"auto"`, `"label-text"`, `"csv"`, `"tsv"` or `"jsonl"`.
        text_field: the text column or JSON field.
        label_field: the label column or JSON field.
        label_separator: split label strings on this (multi-label).
        label_vocabulary: a `LabelVocabulary` to reuse, or `None`.
        cleaning: a `CleaningConfig` to clean texts with, or `None` for none.
            Examples whose text a filter drops (`min_length`, `deduplicate`)
            are left out.

    Returns:
        A `ClassificationData`.

    Example:

    ```python
    data = load_classification_data("sst2/train.txt", valid="sst2/dev.txt")
    ds = classification_dataset(
        data.train["texts"], data.train["labels"], tokenizer, 64, 32
    )
    ```
    """
    cleaner = TextCleaner(cleaning) if cleaning is not None else None
    decode = cleaner.decode if cleaner else None

    def read(path):
        examples = read_labelled_texts(path, format, text_field, label_field, label_separator, decode)
        if cleaner is not None:
            kept = [(cleaner.clean(t), l, n) for t, l, n in zip(examples.texts, examples.labels, examples.line_numbers)]
            kept = [item for item in kept if item[0] is not None]
            examples.texts = [t for t, _, _ in kept]
            examples.labels = [l for _, l, _ in kept]
            examples.line_numbers = [n for _, _, n in kept]
        return examples

    train_examples = read(train)
    if label_vocabulary is None:
        label_vocabulary = LabelVocabulary.from_labels(train_examples.labels)

    def encode(examples):
        return {
            "path": examples.path,
            "texts": examples.texts,
            "labels": label_vocabulary.encode(examples.labels, examples.path, examples.line_numbers),
        }

    return ClassificationData(
        label_vocabulary=label_vocabulary,
        train=encode(train_examples),
        valid=encode(read(valid)) if valid is not None else None,
        test=encode(read(test)) if test is not None else None,
        cleaning_report=cleaner.report() if cleaner else None,
    )
