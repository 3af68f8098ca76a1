"""`prepare`: raw sources -> cleaned text -> tokenizer -> token shards + manifest.

The output folder:

```
OUT/
  manifest.json
  tokenizer/           tokenizer.json + vocabulary.txt | vocabulary.spm
  train-00000.bin      token shards: raw little-endian uint16 (int32 when the
  train-00001.bin      vocabulary exceeds 65,536 ids), `shard_tokens` each
  valid-00000.bin
  test-00000.bin
```

`manifest.json`:

```
{
  "format": "klm-prepared", "format_version": 1, "klm_version": "0.1.0",
  "created": "2025-01-01T00:00:00+00:00",
  "source_kind": "wikitext" | "text" | "jsonl" | ... | "mixed",
  "sources": {"train": [{"path": ..., "format": ...}], "valid": [...], ...},
  "valid_fraction": null | 0.05, "seed": 0,
  "cleaning": {"config": {CleaningConfig fields}, "report": {counts per step}},
  "tokenizer": {"kind": "word", "path": "tokenizer", "vocabulary_size": N,
                "special_token_ids": {"pad": 0, "unk": 1, "start": 2, "end": 3},
                "files": {"tokenizer.json": "<sha256>", "vocabulary.txt": "<sha256>"}},
  "eos_between_documents": false,
  "token_dtype": "uint16", "shard_tokens": 16777216,
  "splits": {"train": {"documents": D, "tokens": T,
                       "shards": [{"file": "train-00000.bin", "tokens": n,
                                   "sha256": "..."}]}, ...},
  "config": {PrepareConfig fields}
}
```

The work streams (see `klm.data.pipeline`): memory stays flat as the corpus
grows, except for the word tokenizer's word counts and the de-duplication
hashes. The subword tokenizers learn from a uniform sample of at most 32 MB
of the training documents (`train_tokenizer.TOKENIZER_SAMPLE_BYTES`), so
their memory and time are bounded too; every stage prints its progress with
a rate (MB/s) and an ETA. All
files are written to a hidden temporary folder beside `OUT` that is renamed
to `OUT` at the end, so a failure leaves no partial output.
"""

import datetime
import hashlib
import json
import os
import contextlib
import shutil
import signal
import sys
import tempfile
import threading

import numpy as np

from klm import __version__
from klm.data import pipeline
from klm.data.prepared_data import FORMAT
from klm.data.prepared_data import FORMAT_VERSION
from klm.data.prepared_data import MANIFEST_FILE
from klm.data.prepared_data import prepared_folder_problem
from klm.data.text_cleaner import TextCleaner
from klm.data.tokenizers.tokenizer_io import save_tokenizer
from klm.data.tokenizers.tokenizer_io import special_token_ids
from klm.data.tokenizers.tokenizer_io import tokenizer_kind
from klm.errors import ConfigError
from klm.errors import DataError

TOKENIZER_DIR = "tokenizer"


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
UINT16_LIMIT = 1 << 16


class _ShardWriter:
    """Writes a token stream into fixed-size shards, hashing as it goes."""

    def __init__(self, directory, split, dtype, shard_tokens):
        self.directory = directory
        self.split = split
        self.dtype = np.dtype(dtype).newbyteorder("<")
        self.shard_tokens = shard_tokens
        self.shards = []
        self._file = None

    def _open(self):
        name = f"{self.split}-{len(self.shards):05d}.bin"
        self._file = open(os.path.join(self.directory, name), "wb")
        self._hash = hashlib.sha256()
        self.shards.append({"file": name, "tokens": 0})

    def _close_current(self):
        if self._file is not None:
            self._file.close()
            self.shards[-1]["sha256"] = self._hash.hexdigest()
            self._file = None

    def write(self, ids):
        ids = np.asarray(ids)
        while len(ids):
            if self._file is None or self.shards[-1]["tokens"] == self.shard_tokens:
                self._close_current()
                self._open()
            room = self.shard_tokens - self.shards[-1]["tokens"]
            chunk = ids[:room].astype(self.dtype).tobytes()
            self._file.write(chunk)
            self._hash.update(chunk)
            self.shards[-1]["tokens"] += min(room, len(ids))
            ids = ids[room:]

    def close(self):
        self._close_current()
        return self.shards


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


def _publish(staging, out):
    # Swap in the finished folder with renames, so that OUT is never half
    # written: first move an old OUT aside, then rename the staging folder.
    if os.path.lexists(out):
        trash = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.old-", dir=os.path.dirname(out))
        old = os.path.join(trash, "old")
        os.rename(out, old)
        try:
            os.rename(staging, out)
        except BaseException:
            os.rename(old, out)
            os.rmdir(trash)
            raise
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.rename(staging, out)


def prepare(config):
    """Prepares a corpus for training: cleaning, tokenizer, token shards.

    Args:
        config: a `PrepareConfig`.

    Returns:
        The manifest (a dict, also written to `OUT/manifest.json`; layout in
        the module docstring).

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
    source_kind, splits = pipeline.resolve_splits(
        config.sources, config.valid, config.test, config.format, datasets_url=config.datasets_url
    )
    out = os.path.abspath(config.out)
    _check_sources_outside(out, config, splits)
    _check_output_folder(config)
    cleaning = config.resolve_cleaning(source_kind)
    cleaner = TextCleaner(cleaning)
    eos = config.eos_between_documents
    if eos is None:
        eos = source_kind != "wikitext"
    # Published folders get the mode `mkdir` would give them (mkdtemp's is
    # 0700 whatever the umask).
    folder_mode = 0o777 & ~_current_umask()
    created_parents = _make_parents(os.path.dirname(out))
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.tmp-", dir=os.path.dirname(out))
    try:
        texts = pipeline.clean_to_files(
            splits,
            cleaner,
            os.path.join(staging, "text"),
            text_field=config.text_field,
            valid_fraction=config.valid_fraction,
            seed=config.seed,
            verbose=config.verbose,
        )
        tokenizer = pipeline.train_or_load_tokenizer(
            texts["train"]["path"],
            tokenizer=config.tokenizer_from,
            kind=config.tokenizer,
            vocab_size=config.vocab_size,
            min_freq=config.min_freq,
            sentencepiece_type=config.sentencepiece_type,
            verbose=config.verbose,
        )
        save_tokenizer(tokenizer, os.path.join(staging, TOKENIZER_DIR))
        dtype = "uint16" if tokenizer.vocabulary_size() <= UINT16_LIMIT else "int32"
        split_info = {}
        for name, text in texts.items():
            writer = _ShardWriter(staging, name, dtype, config.shard_tokens)
            tokens = documents = 0
            for ids, count in pipeline.iter_token_chunks(
                tokenizer, text["path"], eos, label=f"tokenizing {name}", verbose=config.verbose
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
                    name: _sha256(os.path.join(staging, TOKENIZER_DIR, name))
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
        _publish(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        _remove_empty(created_parents)
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
            f"  {name:<5}  {info['tokens']:>12,} tokens  {info['documents']:>10,} documents  {len(info['shards'])} shard(s)"
        )
    return "\n".join(lines)
