"""`ClassificationData` and `load_classification_data` for fine-tuning."""

import dataclasses

from klm.data.classification.label_vocabulary import LabelVocabulary
from klm.data.classification.labelled_files import read_labelled_texts
from klm.data.text.cleaner import TextCleaner, note_invalid_utf8
from klm.data.text.cleaning_config import CleaningConfig
from klm.errors import ConfigError

# The `CleaningConfig` of `cleaning=None` (and the base of a dict): every step
# off, so that texts are used as read.
NO_CLEANING = {
    "unicode_normalization": None,
    "remove_control_characters": False,
    "collapse_whitespace": False,
    "min_length": 0,
}


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
        cleaning_report: the `TextCleaner` counts (UTF-8 decoding is always
            counted, the other steps only run with `cleaning`).
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
    verbose=True,
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
        cleaning: a `CleaningConfig` to clean texts with; a dict of
            `CleaningConfig` fields to turn on over no cleaning at all (e.g.
            `{"strict_utf8": True, "scrub_privacy": True}`, the `--strict`
            and `--scrub-privacy` flags: only the named steps run); or `None`
            for no cleaning. Examples whose text a filter drops
            (`min_length`, `deduplicate`) are left out. Whatever the
            cleaning, invalid UTF-8 is replaced with U+FFFD and counted (or
            with `strict_utf8` a `DataError` naming file and line), and
            binary files are a `DataError`.
        verbose: print a note on stderr when invalid UTF-8 was replaced.

    Returns:
        A `ClassificationData`. Its `cleaning_report` has the counts of
        every step (keys: `klm.data.text.cleaner.REPORT_KEYS`), over all
        splits: `invalid_utf8_lines`, `invalid_utf8_replaced`,
        `privacy_email`, ... (all zero for steps that did not run).

    Example:

    ```python
    data = load_classification_data("sst2/train.txt", valid="sst2/dev.txt")
    ds = classification_dataset(
        data.train["texts"], data.train["labels"], tokenizer, 64, 32
    )
    ```
    """
    if cleaning is None or isinstance(cleaning, dict):
        fields = {f.name for f in dataclasses.fields(CleaningConfig)}
        unknown = sorted(set(cleaning or {}) - fields)
        if unknown:
            raise ConfigError(f"Expected cleaning options among {sorted(fields)}. Received: {unknown}")
        config = CleaningConfig(**{**NO_CLEANING, **(cleaning or {})})
    elif isinstance(cleaning, CleaningConfig):
        config = cleaning
    else:
        raise ConfigError(
            f"Expected cleaning to be a CleaningConfig, a dict or None. Received: {type(cleaning).__name__}"
        )
    # Decoding always goes through the cleaner, which counts invalid UTF-8.
    cleaner = TextCleaner(config)

    def read(path):
        examples = read_labelled_texts(path, format, text_field, label_field, label_separator, cleaner.decode)
        if cleaning is not None:
            rows = zip(examples.texts, examples.labels, examples.line_numbers)
            kept = [(cleaner.clean(t), label, n) for t, label, n in rows]
            kept = [item for item in kept if item[0] is not None]
            examples.texts = [t for t, _, _ in kept]
            examples.labels = [label for _, label, _ in kept]
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

    data = ClassificationData(
        label_vocabulary=label_vocabulary,
        train=encode(train_examples),
        valid=encode(read(valid)) if valid is not None else None,
        test=encode(read(test)) if test is not None else None,
        cleaning_report=cleaner.report(),
    )
    if verbose:
        note_invalid_utf8(data.cleaning_report, "the classification data")
    return data
