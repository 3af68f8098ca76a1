"""Sources -> cleaned text -> tokens: the streaming stages shared by `prepare` and `load_corpus`.

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

Stages 2 and 4 can run in worker processes (`workers > 1`, see
`klm.data.text.workers`): the input is cut into ordered blocks of about 1 MB,
at most two blocks per worker are out at a time, and the results are written
in block order, so the output is the same as in one process, byte for byte,
and memory stays flat. The parent keeps what must see the documents in
order: de-duplication, the seeded valid split and the writing. Stage 4 uses
workers for the byte tokenizer only (`ENCODE_WORKERS_MIN_BYTES`): the other
tokenizers run TF ops, which `tf.data` already spreads over every core, and a
worker would have to import TensorFlow (measured: 5 s of CPU and 850 MB RSS,
375 MB PSS, per worker) to tokenize no faster.
"""

import contextlib
import os
import random
import sys

import numpy as np
import tensorflow as tf

from klm.data.downloads import get_dataset, is_dataset_name
from klm.data.text.progress import ProgressReporter
from klm.data.text.raw_lines import iter_line_blocks
from klm.data.text.sources import SPLITS, SourceFile, expand_sources, find_wikitext_splits, iter_documents
from klm.data.text.workers import OrderedPool
from klm.data.tokenizers.tokenizer_io import load_tokenizer, tokenizer_kind
from klm.data.tokenizers.training import train_tokenizer
from klm.errors import ConfigError, DataError

TEXT_BATCH_SIZE = 1024
# Worker processes get blocks of about this many bytes of whole lines.
BLOCK_BYTES = 1 << 20
# With less input than this, a stage runs in this process whatever `workers`
# says: starting the workers would cost more than they save. A cleaning
# worker, or a byte-tokenizer worker, starts in 0.1 s of CPU and 20-30 MB.
CLEAN_WORKERS_MIN_BYTES = 8 << 20
# The same per tokenizer kind, for tokenizing; a kind not listed always
# tokenizes in this process (in `tf.data`, which already uses every core: on 2
# cores, 2 workers took 10.6 s more CPU to start, and the same CPU per MB
# after, for 100 MB of text). The tests list them all, so that every kind's
# worker path stays checked against the in-process one.
ENCODE_WORKERS_MIN_BYTES = {"byte": 8 << 20}


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
    splits,
    cleaner,
    directory,
    text_field="text",
    valid_fraction=None,
    seed=0,
    verbose=True,
    role="training",
    workers=1,
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

    With `workers > 1` (and at least `CLEAN_WORKERS_MIN_BYTES` of sources),
    worker processes decode and clean blocks of documents; this process
    de-duplicates, splits and writes them in order, so the files, the
    cleaner's counts and any error are the same as with `workers=1`.

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
    total_bytes = _source_bytes([source for files_ in splits.values() for source in files_]) or 0
    use_workers = workers > 1 and total_bytes >= CLEAN_WORKERS_MIN_BYTES
    dedup = cleaner.config.deduplicate
    with contextlib.ExitStack() as stack:
        pool = None
        if use_workers:
            if verbose:
                print(f"[klm] cleaning in {workers} worker processes", file=sys.stderr)
            setup = (
                "klm.data.text.workers",
                "cleaning_worker",
                {"config": cleaner.config.to_dict(), "transform_only": dedup},
            )
            pool = stack.enter_context(OrderedPool(workers, setup, light=True))
        stack.callback(lambda: [f.close() for f in files.values()])
        for split in SPLITS:
            if split not in splits:
                continue
            open_split(split)
            if split == "train" and split_off_valid:
                open_split("valid")
            progress = ProgressReporter(
                f"cleaning {split}", "lines", enabled=verbose, total=_source_bytes(splits[split])
            )
            draw = split_off_valid and split == "train"
            if pool is None:
                for source in splits[split]:
                    for text, _ in iter_documents(source, text_field=text_field, decode=cleaner.decode):
                        progress.update(1, done=len(text) + 1)
                        cleaned = cleaner.clean(text)
                        if cleaned is None:
                            continue
                        if "\n" in cleaned or "\r" in cleaned:
                            cleaned = cleaned.replace("\r", " ").replace("\n", " ")
                        target = split
                        if draw and rng.random() < valid_fraction:
                            target = "valid"
                        files[target].write(cleaned + "\n")
                        counts[target] += 1
            else:
                tasks = _cleaning_tasks(splits[split], text_field, cleaner.decode)
                for texts, block_counts, read, size in pool.map(tasks):
                    cleaner.add_counts(block_counts)
                    progress.update(read, done=size)
                    if dedup:
                        texts = [t.replace("\r", " ").replace("\n", " ") for t in texts if cleaner.keep(t)]
                    if draw:
                        for cleaned in texts:
                            target = "valid" if rng.random() < valid_fraction else split
                            files[target].write(cleaned + "\n")
                            counts[target] += 1
                    elif texts:
                        files[split].write("\n".join(texts) + "\n")
                        counts[split] += len(texts)
            progress.close(summary=progress.count > 0)
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
            hint = (
                "raise --valid-fraction or pass --valid FILE"
                if split_off_valid and name == "valid"
                else "check the file"
            )
            raise DataError(f"Expected text in the {name} split after cleaning ({hint}). Received: 0 documents")
    return outputs


def _cleaning_tasks(sources, text_field, decode):
    """The tasks of `klm.data.text.workers.cleaning_worker` for `sources`, in order.

    Plain text and WikiText files go out as raw blocks of lines, decoded in
    the workers; the other formats are parsed here (`iter_documents`) and go
    out as blocks of documents.
    """
    for source in sources:
        if source.format in ("text", "wikitext"):
            for first, block in iter_line_blocks(source.path, BLOCK_BYTES):
                yield ("lines", source.path, first, block)
            continue
        texts, size = [], 0
        for text, _ in iter_documents(source, text_field=text_field, decode=decode):
            texts.append(text)
            size += len(text) + 1
            if size >= BLOCK_BYTES:
                yield ("documents", texts, size)
                texts, size = [], 0
        if texts:
            yield ("documents", texts, size)


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
        f"reading text for the {kind} tokenizer",
        "batches",
        enabled=verbose and kind != "byte",
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


def encoding_workers(tokenizer, tokenizer_dir, workers, total_bytes, verbose=True):
    """A context manager giving the worker pool for `iter_token_chunks`, or `None`.

    `None` (tokenize in this process) when `workers <= 1`, or the cleaned
    text is smaller than `ENCODE_WORKERS_MIN_BYTES` of the tokenizer's kind,
    or the kind is not listed there. Otherwise `workers` processes that load
    the tokenizer saved in `tokenizer_dir` (the byte tokenizer needs no file
    and no TensorFlow). Enter it once for all splits: a worker that tokenizes
    with TF ops imports TensorFlow, which takes seconds.
    """
    kind = tokenizer_kind(tokenizer)
    least = ENCODE_WORKERS_MIN_BYTES.get(kind)
    if workers <= 1 or least is None or total_bytes < least:
        return contextlib.nullcontext(None)
    if verbose:
        print(f"[klm] tokenizing in {workers} worker processes", file=sys.stderr)
    # The tokenizers run TF ops whatever the Keras backend: the workers skip importing JAX or PyTorch.
    return OrderedPool(
        workers,
        ("klm.data.text.workers", "encoding_worker", {"kind": kind, "tokenizer_dir": os.fspath(tokenizer_dir)}),
        light=True,
        env={"KERAS_BACKEND": "tensorflow"},
    )


def _tf_batches(tokenizer, text_path):
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
    return dataset.as_numpy_iterator()


def iter_token_chunks(tokenizer, text_path, eos_between_documents, label="tokenizing", verbose=True, pool=None):
    """Tokenizes a cleaned text file; yields `(ids, documents)` chunks.

    Lines are tokenized in `tf.data` in parallel batches of 1024, or with
    `pool` (from `encoding_workers`) in worker processes, in blocks of about
    `BLOCK_BYTES` that come back in order: the ids are the same. A document
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

    if pool is None:
        batches = _tf_batches(tokenizer, text_path)
    else:
        batches = pool.map(block for _, block in iter_line_blocks(text_path, BLOCK_BYTES, check_binary=False))
    progress = ProgressReporter(label, "tokens", enabled=verbose, total=os.path.getsize(text_path) or None)
    for flat, lengths, text_bytes in batches:
        flat = flat.astype(np.int64, copy=False)
        documents = int(np.count_nonzero(lengths))
        if eos_id is not None and documents:
            ends = np.cumsum(lengths)[lengths > 0]
            flat = np.insert(flat, ends, eos_id)
        progress.update(len(flat), done=int(text_bytes))
        yield flat, documents
    progress.close(summary=progress.count > 0)
