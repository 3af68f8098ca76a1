"""The streaming stages shared by `prepare` and `load_corpus`.

1. `resolve_splits`: user sources -> `SourceFile`s per split, and the source
   kind (`"wikitext"` or another), which decides the defaults of cleaning and
   of `eos_between_documents`.
2. `clean_to_files`: read, clean and (with a valid fraction) split the
   documents, writing one document a line to a text file per split. Memory
   stays flat: documents stream through one at a time.
3. `train_or_load_tokenizer`: one pass over the cleaned training text.
4. `iter_token_chunks`: tokenize a cleaned text file in `tf.data` (parallel
   batches of lines) and yield NumPy chunks of ids, with the end-of-text id
   after every document when `eos_between_documents` is on.
"""

import os
import random
import sys

import numpy as np
import tensorflow as tf

from klm.data.datasets import get_dataset
from klm.data.datasets import is_dataset_name
from klm.data.progress import ProgressReporter
from klm.data.sources import SPLITS
from klm.data.sources import SourceFile
from klm.data.sources import expand_sources
from klm.data.sources import find_wikitext_splits
from klm.data.sources import iter_documents
from klm.data.tokenizers.tokenizer_io import load_tokenizer
from klm.data.tokenizers.train_tokenizer import train_tokenizer
from klm.errors import ConfigError
from klm.errors import DataError

TEXT_BATCH_SIZE = 1024


def _as_list(specs):
    if specs is None:
        return []
    if isinstance(specs, (str, os.PathLike)):
        return [os.fspath(specs)]
    return [os.fspath(s) for s in specs]


def resolve_splits(train, valid=None, test=None, format="auto", datasets_url=None, cache_dir=None):
    """Resolves the sources of each split.

    `train` may be files, globs, folders, a WikiText folder or a dataset
    name. A WikiText folder or dataset name also supplies the valid and test
    splits unless they are given.

    Returns:
        `(kind, splits)`: the source kind (`"wikitext"` when every training
        file is a WikiText split file or `format="wikitext"`, otherwise the
        common format of the training files, or `"mixed"`), and a dict from
        split name to a list of `SourceFile` (absent splits are left out).
    """
    train, valid, test = _as_list(train), _as_list(valid), _as_list(test)
    if not train:
        raise ConfigError("Expected at least one training SOURCE. Received: no sources")
    splits = {}
    if len(train) == 1 and is_dataset_name(train[0]):
        folder = get_dataset(train[0], base_url=datasets_url, cache_dir=cache_dir)
        train = [os.fspath(folder)]
    folder_splits = find_wikitext_splits(train[0]) if len(train) == 1 else None
    if folder_splits:
        if "train" not in folder_splits:
            raise DataError(
                f"Expected a training file in the WikiText folder {train[0]} (train.txt, wiki.train.tokens or "
                f"wiki.train.raw). Received: only {sorted(folder_splits)}. Pass the file to train on and "
                f"--valid, e.g. `{folder_splits[sorted(folder_splits)[-1]]} --valid ...`"
            )
        for split, path in folder_splits.items():
            splits[split] = [SourceFile(os.fspath(path), "wikitext")]
    else:
        splits["train"] = expand_sources(train, format)
    if valid:
        splits["valid"] = expand_sources(valid, format)
    if test:
        splits["test"] = expand_sources(test, format)
    formats = {source.format for source in splits["train"]}
    kind = "wikitext" if format == "wikitext" else (formats.pop() if len(formats) == 1 else "mixed")
    return kind, splits


def clean_to_files(
    splits, cleaner, directory, text_field="text", valid_fraction=None, seed=0, verbose=True, role="training"
):
    """Cleans every split into `directory/{split}.txt`, one document a line.

    With `valid_fraction` (and no valid sources), each cleaned training
    document goes to the valid split with that probability, drawn from
    `random.Random(seed)`: deterministic for a seed, and streaming (the
    valid share is close to, not exactly, the fraction). Line breaks inside a
    document (possible in JSONL fields when whitespace is not collapsed)
    become spaces.

    `role` names what the "train" split is for in error messages
    (`"training"`, `"evaluation"`, ...): `klm evaluate` reads its data as
    the train split of a corpus.

    Returns:
        A dict from split name to `{"path", "documents"}`.

    Raises:
        DataError: when the training split is empty after cleaning, or the
            valid fraction leaves the valid split empty.
    """
    os.makedirs(directory, exist_ok=True)
    outputs = {}
    files = {}
    counts = {}

    def open_split(name):
        path = os.path.join(directory, f"{name}.txt")
        files[name] = open(path, "w", encoding="utf-8", newline="\n")
        counts[name] = 0
        outputs[name] = {"path": path}

    rng = random.Random(seed)
    split_off_valid = bool(valid_fraction) and "valid" not in splits
    try:
        for split in SPLITS:
            if split not in splits:
                continue
            open_split(split)
            if split == "train" and split_off_valid:
                open_split("valid")
            progress = ProgressReporter(
                f"cleaning {split}", "lines", enabled=verbose, total=_source_bytes(splits[split])
            )
            for source in splits[split]:
                for text, _ in iter_documents(source, text_field=text_field, decode=cleaner.decode):
                    progress.update(1, done=len(text) + 1)
                    cleaned = cleaner.clean(text)
                    if cleaned is None:
                        continue
                    if "\n" in cleaned or "\r" in cleaned:
                        cleaned = cleaned.replace("\r", " ").replace("\n", " ")
                    target = split
                    if split_off_valid and split == "train" and rng.random() < valid_fraction:
                        target = "valid"
                    files[target].write(cleaned + "\n")
                    counts[target] += 1
            progress.close(summary=progress.count > 0)
    finally:
        for f in files.values():
            f.close()
    for name in outputs:
        outputs[name]["documents"] = counts[name]
    if counts.get("train", 0) == 0:
        sources = ", ".join(s.path for s in splits["train"][:3])
        raise DataError(
            f"Expected text in the {role} sources after cleaning. Received: 0 documents kept out of "
            f"{cleaner.report()['documents_in']} read from {sources}. Check the files, --text-field, "
            f"--format and the cleaning flags (--min-length, --dedup)."
        )
    for name in ("valid", "test"):
        if name in counts and counts[name] == 0:
            hint = "raise --valid-fraction or pass --valid FILE" if split_off_valid and name == "valid" else "check the file"
            raise DataError(f"Expected text in the {name} split after cleaning ({hint}). Received: 0 documents")
    return outputs


def _source_bytes(sources):
    """Total size of the source files (the ETA's yardstick; None if unknown)."""
    try:
        return sum(os.path.getsize(source.path) for source in sources) or None
    except (OSError, TypeError):
        return None


def text_file_dataset(path):
    """A `tf.data.Dataset` of the lines (documents) of a cleaned text file."""
    return tf.data.TextLineDataset(path)


def train_or_load_tokenizer(
    train_text_path,
    tokenizer=None,
    kind="word",
    vocab_size=None,
    min_freq=1,
    sentencepiece_type="unigram",
    verbose=True,
):
    """Returns `tokenizer` (an instance, or a folder to load), or trains one.

    Training reads the cleaned training text once, as a `tf.data` stream.
    """
    if tokenizer is not None:
        if isinstance(tokenizer, (str, os.PathLike)):
            return load_tokenizer(tokenizer)
        return tokenizer
    progress = ProgressReporter(
        f"reading text for the {kind} tokenizer", "batches", enabled=verbose and kind != "byte",
        total=os.path.getsize(train_text_path) or None,
    )
    result = train_tokenizer(
        kind,
        text_file_dataset(train_text_path).batch(TEXT_BATCH_SIZE),
        vocab_size=vocab_size,
        min_freq=min_freq,
        sentencepiece_model_type=sentencepiece_type,
        progress=lambda n: progress.update(1, done=n),
    )
    if verbose:
        elapsed = progress.close(summary=False)
        print(f"[klm] trained {kind} tokenizer: {result.vocabulary_size():,} tokens in {elapsed:.1f}s", file=sys.stderr)
    return result


def iter_token_chunks(tokenizer, text_path, eos_between_documents, label="tokenizing", verbose=True):
    """Tokenizes a cleaned text file; yields `(ids, documents)` chunks.

    Lines are tokenized in `tf.data` in parallel batches of 1024. A document
    that yields no tokens is skipped (the seed drops empty lines the same
    way); with `eos_between_documents`, the tokenizer's `end_token_id` follows
    every other document.

    Yields:
        `(ids, documents)`: an int64 NumPy array and the number of non-empty
        documents it holds.
    """
    eos_id = tokenizer.end_token_id if eos_between_documents else None
    if eos_between_documents and eos_id is None:
        raise ConfigError("Expected a tokenizer with an end-of-text token for --eos. Received: none")

    def tokenize(batch):
        tokens = tokenizer.tokenize(batch)
        text_bytes = tf.reduce_sum(tf.strings.length(batch)) + tf.size(batch)
        return tokens.flat_values, tokens.row_lengths(), text_bytes

    dataset = (
        text_file_dataset(text_path)
        .batch(TEXT_BATCH_SIZE)
        .map(tokenize, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .prefetch(tf.data.AUTOTUNE)
    )
    progress = ProgressReporter(label, "tokens", enabled=verbose, total=os.path.getsize(text_path) or None)
    for flat, lengths, text_bytes in dataset.as_numpy_iterator():
        flat = flat.astype(np.int64, copy=False)
        documents = int(np.count_nonzero(lengths))
        if eos_id is not None and documents:
            ends = np.cumsum(lengths)[lengths > 0]
            flat = np.insert(flat, ends, eos_id)
        progress.update(len(flat), done=int(text_bytes))
        yield flat, documents
    progress.close(summary=progress.count > 0)
