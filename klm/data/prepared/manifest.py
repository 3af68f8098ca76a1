"""The prepared-folder format: its layout, `manifest.json`, and what counts as one.

`klm.data.prepared.writer` writes it (`prepare`), `klm.data.prepared.reader`
reads it (`load_prepared`) and `klm.data.prepared.shards` holds the token
shard files of both. The output folder:

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

Shards are `uint16` when every token id fits (`token_dtype`); the tokenizer
folder has the name of a run folder's (`klm.runs.TOKENIZER_DIR`).
"""

import json
import os

from klm.runs import TOKENIZER_DIR

MANIFEST_FILE = "manifest.json"
FORMAT = "klm-prepared"
FORMAT_VERSION = 1
# The files `save_tokenizer` may write into the tokenizer folder.
TOKENIZER_FILES = ("tokenizer.json", "vocabulary.txt", "vocabulary.spm")
UINT16_LIMIT = 1 << 16


def token_dtype(vocabulary_size):
    """The shard dtype name for a vocabulary: `"uint16"` when every id fits, else `"int32"`."""
    return "uint16" if vocabulary_size <= UINT16_LIMIT else "int32"


def is_prepared_folder(path):
    """Whether `path` is a folder written by `klm prepare`."""
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, MANIFEST_FILE))


def read_manifest(directory):
    """The parsed `manifest.json` of `directory` (raises `OSError`, `ValueError`)."""
    with open(os.path.join(directory, MANIFEST_FILE), encoding="utf-8") as f:
        return json.load(f)


def prepared_folder_problem(directory):
    """Why `directory` is not a folder written by `klm prepare` and nothing else.

    A prepared folder has a `manifest.json` with `"format": "klm-prepared"`,
    and holds only what `prepare` writes: the manifest, the shards it lists
    and `tokenizer/` with the tokenizer files. `--overwrite` replaces only
    such folders.

    Returns:
        `None` for a prepared folder, otherwise a phrase that completes
        "`directory` ..." (e.g. `"holds files klm prepare did not write: a.txt"`).
    """
    directory = os.fspath(directory)
    try:
        manifest = read_manifest(directory)
    except FileNotFoundError:
        return f"has no {MANIFEST_FILE}, so it was not written by klm prepare"
    except (OSError, ValueError) as e:
        return f"has an unreadable {MANIFEST_FILE} ({e}), so it is not known to be written by klm prepare"
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        return f"has a {MANIFEST_FILE} that is not a klm prepare manifest (format={found!r}, expected {FORMAT!r})"
    expected = {MANIFEST_FILE}
    try:
        for info in manifest.get("splits", {}).values():
            expected.update(shard["file"] for shard in info["shards"])
        tokenizer_dir = manifest.get("tokenizer", {}).get("path", TOKENIZER_DIR)
        tokenizer_files = set(manifest.get("tokenizer", {}).get("files", {})) | set(TOKENIZER_FILES)
    except (AttributeError, KeyError, TypeError):
        return f"has a damaged {MANIFEST_FILE}, so its files are not known"
    expected.add(tokenizer_dir)
    foreign = []
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if name not in expected:
            foreign.append(name)
        elif name == tokenizer_dir:
            if os.path.islink(path) or not os.path.isdir(path):
                foreign.append(name)
            else:
                foreign.extend(
                    f"{name}/{inner}"
                    for inner in sorted(os.listdir(path))
                    if inner not in tokenizer_files or not os.path.isfile(os.path.join(path, inner))
                )
        elif not os.path.isfile(path):
            foreign.append(name)
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        return f"holds files klm prepare did not write: {shown}"
    return None
