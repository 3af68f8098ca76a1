"""`Corpus` and `load_corpus`: token arrays for the trainer in one call."""

import dataclasses
import os
import tempfile

import numpy as np

from klm.data.prepared.manifest import is_prepared_folder
from klm.data.prepared.reader import load_prepared
from klm.data.text import clean_and_tokenize
from klm.data.text.cleaner import TextCleaner, note_invalid_utf8
from klm.data.text.cleaning_config import CleaningConfig
from klm.errors import ConfigError


@dataclasses.dataclass
class Corpus:
    """A tokenized corpus: the tokenizer and the token stream of each split.

    Each of `train`, `valid`, `test` is a 1-D int32 NumPy array, a
    `PreparedSplit` (when loaded from a prepared folder), or `None`. Both
    kinds go straight into `lm_dataset`.

    Args:
        tokenizer: the tokenizer layer.
        train: the training tokens.
        valid: the validation tokens or `None`.
        test: the test tokens or `None`.
        cleaning_report: the cleaning counts per step.
        eos_between_documents: whether the end-of-text id separates documents.
        source_kind: `"wikitext"`, `"text"`, ... (see `resolve_splits`).
        prepared: the `PreparedData` when read from a prepared folder.
    """

    tokenizer: object
    train: object
    valid: object = None
    test: object = None
    cleaning_report: dict | None = None
    eos_between_documents: bool = True
    source_kind: str = "text"
    prepared: object = None

    def split(self, name):
        return getattr(self, name)


def load_corpus(
    train,
    valid=None,
    test=None,
    tokenizer=None,
    tokenizer_kind="word",
    vocab_size=None,
    min_freq=1,
    sentencepiece_type="unigram",
    text_field="text",
    format="auto",
    cleaning=None,
    valid_fraction=None,
    seed=0,
    eos_between_documents=None,
    datasets_url=None,
    verbose=True,
    role="training",
):
    """Loads and tokenizes a corpus in memory, or opens a prepared folder.

    `train` may be a file, glob, folder, list of them, a WikiText folder, a
    dataset name (`"wikitext-2"`), or a folder written by `klm prepare` (then
    the splits stream from its shards, checksums are verified, and the other
    arguments are ignored). Otherwise the text is cleaned and tokenized with the same
    streaming stages as `prepare` (through a temporary folder) and the token
    ids are returned as in-memory arrays; for corpora that do not fit in
    memory run `klm prepare` first.

    Args:
        train: the training source(s), or a prepared folder.
        valid: optional validation file(s) (default: a WikiText folder's
            valid file, or `valid_fraction` of train, or none).
        test: optional test file(s).
        tokenizer: an existing tokenizer to reuse (a layer, or a tokenizer
            folder); if `None`, one is trained on the training text.
        tokenizer_kind: `"word"`, `"wordpiece"`, `"sentencepiece"`, `"byte"`.
        vocab_size: see `train_tokenizer`.
        min_freq: see `train_tokenizer` (`"word"` only).
        sentencepiece_type: `"unigram"` or `"bpe"`.
        text_field: JSONL field or CSV/TSV column.
        format: `"auto"` or a format for every file.
        cleaning: a `CleaningConfig`, a dict of overrides of the default for
            the source kind (e.g. `{"strict_utf8": True, "scrub_privacy":
            True}`, the `--strict` and `--scrub-privacy` flags), or `None`
            for that default. Invalid UTF-8 is replaced and counted
            (`cleaning_report["invalid_utf8_lines"]`, `["invalid_utf8_replaced"]`,
            and a one-line note on stderr, even when not `verbose`), or with
            `strict_utf8` a `DataError` naming file and line. Binary files
            are always a `DataError`.
        valid_fraction: float. Split this fraction off train when there is no
            valid file.
        seed: int. For the valid split.
        eos_between_documents: `None` for the default per source kind (off
            for WikiText, like the reference; on otherwise).
        datasets_url: base URL for named datasets.
        verbose: print progress to stderr.
        role: what the text is for, in error messages: `"training"`
            (default), `"evaluation"`, ...

    Returns:
        A `Corpus`. Its `cleaning_report` has the counts of every cleaning
        step (keys: `klm.data.text.cleaner.REPORT_KEYS`).

    Example:

    ```python
    corpus = load_corpus("../shared/data/wikitext-2/valid.txt",
                         test="../shared/data/wikitext-2/test.txt")
    ds = lm_dataset(corpus.train, seq_len=35, batch_size=20, mode="contiguous")
    ```
    """
    if isinstance(train, (str, os.PathLike)) and is_prepared_folder(train):
        if tokenizer is not None:
            raise ConfigError(
                "Expected no tokenizer with a prepared folder: it holds its own tokenizer. "
                f"Received: train={os.fspath(train)!r} and a tokenizer"
            )
        data = load_prepared(train)
        return Corpus(
            tokenizer=data.tokenizer,
            train=data.splits.get("train"),
            valid=data.splits.get("valid"),
            test=data.splits.get("test"),
            cleaning_report=data.cleaning_report,
            eos_between_documents=data.eos_between_documents,
            source_kind=data.manifest.get("source_kind", "text"),
            prepared=data,
        )
    if valid_fraction is not None and not (0.0 < valid_fraction < 1.0):
        raise ConfigError(
            f"Expected --valid-fraction strictly between 0 and 1. Received: --valid-fraction={valid_fraction!r}"
        )
    source_kind, splits = clean_and_tokenize.resolve_splits(train, valid, test, format, datasets_url=datasets_url)
    if isinstance(cleaning, CleaningConfig):
        cleaning_config = cleaning
    elif cleaning is None or isinstance(cleaning, dict):
        cleaning_config = CleaningConfig.for_source_kind(source_kind, **(cleaning or {}))
    else:
        raise ConfigError(
            f"Expected cleaning to be a CleaningConfig, a dict or None. Received: {type(cleaning).__name__}"
        )
    cleaner = TextCleaner(cleaning_config)
    if eos_between_documents is None:
        eos_between_documents = source_kind != "wikitext"
    with tempfile.TemporaryDirectory(prefix="klm-corpus-") as workdir:
        texts = clean_and_tokenize.clean_to_files(
            splits,
            cleaner,
            workdir,
            text_field=text_field,
            valid_fraction=valid_fraction,
            seed=seed,
            verbose=verbose,
            role=role,
        )
        note_invalid_utf8(cleaner.report(), f"the {role} text")
        tokenizer = clean_and_tokenize.train_or_load_tokenizer(
            texts["train"]["path"],
            tokenizer=tokenizer,
            kind=tokenizer_kind,
            vocab_size=vocab_size,
            min_freq=min_freq,
            sentencepiece_type=sentencepiece_type,
            verbose=verbose,
        )
        arrays = {}
        for name, text in texts.items():
            chunks = [
                ids.astype(np.int32)
                for ids, _ in clean_and_tokenize.iter_token_chunks(
                    tokenizer, text["path"], eos_between_documents, label=f"tokenizing {name}", verbose=verbose
                )
            ]
            arrays[name] = np.concatenate(chunks) if chunks else np.zeros((0,), dtype=np.int32)
    return Corpus(
        tokenizer=tokenizer,
        train=arrays["train"],
        valid=arrays.get("valid"),
        test=arrays.get("test"),
        cleaning_report=cleaner.report(),
        eos_between_documents=eos_between_documents,
        source_kind=source_kind,
    )
