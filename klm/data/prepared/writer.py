"""`prepare`: raw sources -> cleaned text -> tokenizer -> token shards + manifest.

The folder layout and `manifest.json` are described in
`klm.data.prepared.manifest`.

The work streams (see `klm.data.text.clean_and_tokenize`): memory stays flat
as the corpus grows, except for the word tokenizer's word counts and the
de-duplication hashes. The subword tokenizers learn from a uniform sample of
at most 32 MB of the training documents
(`klm.data.tokenizers.training.TOKENIZER_SAMPLE_BYTES`), so their memory and
time are bounded too; every stage prints its progress with a rate (MB/s) and
an ETA. Cleaning (and the byte tokenizer's tokenizing) runs in
`config.workers` processes (one per usable CPU by default; see
`klm.data.text.clean_and_tokenize`), with the same output for any number.
All files are written to a hidden temporary folder beside `OUT` that is
renamed to `OUT` at the end, so a failure leaves no partial output.
"""

import contextlib
import datetime
import json
import os
import shutil
import signal
import sys
import tempfile
import threading

from klm import __version__, locks
from klm.checksums import sha256_of_file
from klm.data.prepared.manifest import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST_FILE,
    TOKENIZER_DIR,
    prepared_folder_problem,
    token_dtype,
)
from klm.data.prepared.shards import ShardWriter
from klm.data.text import clean_and_tokenize
from klm.data.text.cleaner import TextCleaner
from klm.data.tokenizers.tokenizer_io import save_tokenizer, special_token_ids, tokenizer_kind
from klm.errors import ConfigError, DataError


def _current_umask():
    # os.umask can only be read by setting it; set it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _is_inside(path, folder):
    """Whether `path` is `folder` or lies inside it (both resolved)."""
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _check_output_folder(config):
    """Checks `--out` before any work; returns its absolute path.

    `--out` must be a new or empty folder, or, with `--overwrite`, a folder
    written by `klm prepare` that holds nothing else: a folder of the user's
    own files is never replaced.
    """
    out = os.path.abspath(config.out)
    if os.path.lexists(out):
        if not os.path.isdir(out):
            raise ConfigError(f"Expected --out to be a folder path. Received: --out={config.out!r} (an existing file)")
        if os.listdir(out):
            if not config.overwrite:
                raise ConfigError(
                    f"Expected --out to be a new or empty folder; pass --overwrite to replace a folder written by "
                    f"klm prepare. Received: --out={config.out!r} (a folder with files)"
                )
            problem = prepared_folder_problem(out)
            if problem:
                raise ConfigError(
                    f"Expected --out to be a new or empty folder, or with --overwrite a folder written by klm prepare "
                    f"that holds nothing else; --overwrite never deletes other files. {out} {problem}. Choose "
                    f"another --out, or move those files away. Received: --out={config.out!r}, --overwrite"
                )
    return out


def _check_sources_outside(out, config, splits):
    """Refuses an `--out` that is, contains or lies inside one of the sources.

    Replacing such a folder would delete the sources, and an output inside a
    source folder would be read back as text by the next run on that folder.
    """
    for split, files in splits.items():
        for source in files:
            if _is_inside(source.path, out):
                raise ConfigError(
                    f"Expected --out to be a folder outside the sources: the {split} source {source.path} is inside "
                    f"it, and klm prepare would replace it. Choose another --out. Received: --out={config.out!r}"
                )
    for flag, specs in (("SOURCES", config.sources), ("--valid", config.valid), ("--test", config.test)):
        for spec in specs or []:
            if os.path.isdir(spec) and _is_inside(out, spec):
                raise ConfigError(
                    f"Expected --out to be a folder outside the sources: it is inside the source folder {spec} "
                    f"({flag}), so a later run on that folder would read the prepared files as text. Choose "
                    f"another --out. Received: --out={config.out!r}"
                )


def _make_parents(folder):
    """Creates `folder` and its missing parents; returns the ones it created."""
    created = []
    path = folder
    while not os.path.exists(path):
        created.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    os.makedirs(folder, exist_ok=True)
    return created


def _remove_empty(folders):
    for folder in folders:  # deepest first
        try:
            os.rmdir(folder)
        except OSError:
            break


def _replaceable_problem(folder):
    """Why `folder` (an existing `--out`) may not be replaced now, or `None`: empty, or klm prepare's alone."""
    if not os.path.isdir(folder) or os.path.islink(folder):
        return "is no longer a folder"
    if not os.listdir(folder):
        return None
    return prepared_folder_problem(folder)


def _publish(staging, out, config):
    """Swaps the finished folder in with renames, so that OUT is never half written.

    `--out` was checked when the command started, but hours may have passed:
    what is there now is checked again, after it has been moved aside (a
    rename, so nothing can be written into it unseen between the check and
    the swap), and put back untouched if it holds anything klm prepare did
    not write, e.g. a file the user saved there meanwhile.
    """
    if os.path.lexists(out):
        trash = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.old-", dir=os.path.dirname(out))
        old = os.path.join(trash, "old")
        os.rename(out, old)
        problem = _replaceable_problem(old)
        if problem or (os.listdir(old) and not config.overwrite):
            os.rename(old, out)
            os.rmdir(trash)
            raise ConfigError(
                f"{out} changed while klm prepare ran: it {problem or 'now holds files'}, so it was left as it is "
                f"and nothing was written (klm prepare never deletes files it did not write). Move those files "
                f"away or choose another --out, then run the command again. Received: --out={config.out!r}"
            )
        try:
            os.rename(staging, out)
        except BaseException:
            os.rename(old, out)
            os.rmdir(trash)
            raise
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.rename(staging, out)


@contextlib.contextmanager
def _output_lock(out, config):
    """Holds an OS lock on `--out` for the whole command: a second `klm prepare` to the same folder stops at once.

    The lock file sits beside `--out` (`.NAME.klm-prepare.lock`, since `--out`
    itself is replaced at the end) and is removed when the command ends.
    """
    lock_path = os.path.join(os.path.dirname(out), f".{os.path.basename(out)}.klm-prepare.lock")

    def in_use(holder):
        return (
            f"Another klm prepare (process {holder}) is writing {out} now (it holds {lock_path}). Wait for it to "
            f"finish, or choose another --out. Received: --out={config.out!r}"
        )

    try:
        fd = locks.acquire(lock_path, in_use)
    except locks.FolderInUse as e:
        raise ConfigError(str(e)) from None
    try:
        yield
    finally:
        locks.release(fd, lock_path)


def prepare(config):
    """Prepares a corpus for training: cleaning, tokenizer, token shards.

    Args:
        config: a `PrepareConfig`.

    Returns:
        The manifest (a dict, also written to `OUT/manifest.json`; layout in
        `klm.data.prepared.manifest`).

    Raises:
        ConfigError: for bad settings (an existing `--out` without
            `--overwrite`, an `--out` that holds files klm prepare did not
            write or that is, holds or lies inside a source, ...).
        DataError: for missing or malformed sources, or an empty corpus.

    Example:

    ```python
    manifest = prepare(PrepareConfig(sources=["books/"], out="prepared",
                                     tokenizer="sentencepiece", vocab_size=8000,
                                     valid_fraction=0.01))
    data = load_prepared("prepared")
    ```
    """
    with _cleanup_on_sigterm():
        return _prepare(config)


@contextlib.contextmanager
def _cleanup_on_sigterm():
    """Turns SIGTERM into `SystemExit` while preparing, so that `kill` (the
    default signal of `kill`, `timeout`, job schedulers) removes the
    temporary folder like any failure does. Only in the main thread, and only
    when nobody else handles SIGTERM."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) not in (
        signal.SIG_DFL,
        None,
    ):
        yield
        return

    def terminate(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _prepare(config):
    source_kind, splits = clean_and_tokenize.resolve_splits(
        config.sources, config.valid, config.test, config.format, datasets_url=config.datasets_url
    )
    out = os.path.abspath(config.out)
    _check_sources_outside(out, config, splits)
    _check_output_folder(config)
    created_parents = _make_parents(os.path.dirname(out))
    try:
        with _output_lock(out, config):
            _check_output_folder(config)  # again, now that no other klm prepare can change it
            return _prepare_locked(config, source_kind, splits, out)
    except BaseException:
        _remove_empty(created_parents)
        raise


def _prepare_locked(config, source_kind, splits, out):
    cleaning = config.resolve_cleaning(source_kind)
    cleaner = TextCleaner(cleaning)
    workers = config.resolved_workers()
    eos = config.eos_between_documents
    if eos is None:
        eos = source_kind != "wikitext"
    # Published folders get the mode `mkdir` would give them (mkdtemp's is
    # 0700 whatever the umask).
    folder_mode = 0o777 & ~_current_umask()
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.tmp-", dir=os.path.dirname(out))
    try:
        texts = clean_and_tokenize.clean_to_files(
            splits,
            cleaner,
            os.path.join(staging, "text"),
            text_field=config.text_field,
            valid_fraction=config.valid_fraction,
            seed=config.seed,
            verbose=config.verbose,
            workers=workers,
        )
        tokenizer = clean_and_tokenize.train_or_load_tokenizer(
            texts["train"]["path"],
            tokenizer=config.tokenizer_from,
            kind=config.tokenizer_kind,
            vocab_size=config.vocab_size,
            min_freq=config.min_freq,
            sentencepiece_type=config.sentencepiece_type,
            verbose=config.verbose,
        )
        save_tokenizer(tokenizer, os.path.join(staging, TOKENIZER_DIR))
        dtype = token_dtype(tokenizer.vocabulary_size())
        split_info = {}
        text_bytes = sum(os.path.getsize(text["path"]) for text in texts.values())
        with clean_and_tokenize.encoding_workers(
            tokenizer, os.path.join(staging, TOKENIZER_DIR), workers, text_bytes, verbose=config.verbose
        ) as pool:
            for name, text in texts.items():
                writer = ShardWriter(staging, name, dtype, config.shard_tokens)
                tokens = documents = 0
                for ids, count in clean_and_tokenize.iter_token_chunks(
                    tokenizer, text["path"], eos, label=f"tokenizing {name}", verbose=config.verbose, pool=pool
                ):
                    writer.write(ids)
                    tokens += len(ids)
                    documents += count
                split_info[name] = {"documents": documents, "tokens": tokens, "shards": writer.close()}
        if split_info["train"]["tokens"] < 2:
            raise DataError(
                f"Expected at least 2 training tokens after tokenization. Received: {split_info['train']['tokens']} "
                f"tokens from {texts['train']['documents']} documents"
            )
        shutil.rmtree(os.path.join(staging, "text"))
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "klm_version": __version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "source_kind": source_kind,
            "sources": {name: [s.to_dict() for s in files] for name, files in splits.items()},
            "valid_fraction": config.valid_fraction if "valid" not in splits else None,
            "seed": config.seed,
            "cleaning": {"config": cleaning.to_dict(), "report": cleaner.report()},
            "tokenizer": {
                "kind": tokenizer_kind(tokenizer),
                "path": TOKENIZER_DIR,
                "vocabulary_size": int(tokenizer.vocabulary_size()),
                "special_token_ids": special_token_ids(tokenizer),
                "files": {
                    name: sha256_of_file(os.path.join(staging, TOKENIZER_DIR, name))
                    for name in sorted(os.listdir(os.path.join(staging, TOKENIZER_DIR)))
                },
            },
            "eos_between_documents": eos,
            "token_dtype": dtype,
            "shard_tokens": config.shard_tokens,
            "splits": split_info,
            "config": config.to_dict(),
        }
        with open(os.path.join(staging, MANIFEST_FILE), "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=2)
            f.write("\n")
        os.chmod(staging, folder_mode)
        _publish(staging, out, config)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if config.verbose:
        print(f"[klm] wrote {out}", file=sys.stderr)
    return manifest


def format_summary(manifest):
    """A human-readable summary of a manifest: cleaning report and token counts."""
    lines = ["Cleaning report:"]
    report = manifest["cleaning"]["report"]
    width = max(len(key) for key in report)
    for key, value in report.items():
        lines.append(f"  {key:<{width}}  {value:>12,}")
    tokenizer = manifest["tokenizer"]
    lines.append(
        f"Tokenizer: {tokenizer['kind']}, {tokenizer['vocabulary_size']:,} tokens, special ids "
        + ", ".join(f"{k}={v}" for k, v in tokenizer["special_token_ids"].items() if v is not None)
    )
    lines.append(f"End-of-text between documents: {'yes' if manifest['eos_between_documents'] else 'no'}")
    lines.append("Tokens:")
    for name, info in manifest["splits"].items():
        lines.append(
            f"  {name:<5}  {info['tokens']:>12,} tokens  {info['documents']:>10,} documents  "
            f"{len(info['shards'])} shard(s)"
        )
    return "\n".join(lines)
