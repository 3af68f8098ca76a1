"""`PreparedData` and `load_prepared`: reading a `klm prepare` output folder."""

import dataclasses
import hashlib
import json
import os

import numpy as np

from klm.data.prepared_split import PreparedSplit
from klm.data.tokenizers.tokenizer_io import load_tokenizer
from klm.errors import DataError

MANIFEST_FILE = "manifest.json"
FORMAT = "klm-prepared"
FORMAT_VERSION = 1


def is_prepared_folder(path):
    """Whether `path` is a folder written by `klm prepare`."""
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, MANIFEST_FILE))


TOKENIZER_FILES = ("tokenizer.json", "vocabulary.txt", "vocabulary.spm")


def _read_manifest(directory):
    path = os.path.join(directory, MANIFEST_FILE)
    with open(path, encoding="utf-8") as f:
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
        manifest = _read_manifest(directory)
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
        tokenizer_dir = manifest.get("tokenizer", {}).get("path", "tokenizer")
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
                    f"{name}/{inner}" for inner in sorted(os.listdir(path)) if inner not in tokenizer_files
                    or not os.path.isfile(os.path.join(path, inner))
                )
        elif not os.path.isfile(path):
            foreign.append(name)
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        return f"holds files klm prepare did not write: {shown}"
    return None


def _contained_path(directory, relative, manifest_path, what):
    """`directory/relative`, refusing paths that leave `directory`."""
    if not isinstance(relative, str) or not relative:
        raise DataError(f"Expected a file name for {what} in {manifest_path}. Received: {relative!r}")
    parts = relative.replace("\\", "/").split("/")
    path = os.path.join(directory, relative)
    real_directory = os.path.realpath(directory)
    real_path = os.path.realpath(path)
    if (
        os.path.isabs(relative)
        or ".." in parts
        or not (real_path == real_directory or real_path.startswith(real_directory.rstrip(os.sep) + os.sep))
    ):
        raise DataError(
            f"Expected {what} in {manifest_path} to name a file inside the prepared folder {directory}; a path "
            f"that leaves it is refused (the manifest may have been edited or crafted). Received: {relative!r}"
        )
    return path


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclasses.dataclass
class PreparedData:
    """A prepared folder: its manifest, tokenizer and token splits.

    Args:
        directory: the folder.
        manifest: the parsed `manifest.json` (layout: see `klm.data.prepare`).
        tokenizer: the tokenizer loaded from `directory/tokenizer`.
        splits: a dict from split name to `PreparedSplit`.
    """

    directory: str
    manifest: dict
    tokenizer: object
    splits: dict

    @property
    def cleaning_report(self):
        return self.manifest.get("cleaning", {}).get("report")

    @property
    def eos_between_documents(self):
        return bool(self.manifest.get("eos_between_documents"))


def load_prepared(directory, verify=True):
    """Opens a folder written by `klm prepare` / `klm.data.prepare`.

    Args:
        directory: the prepared folder.
        verify: bool. Check the sha256 of every shard and tokenizer file
            against the manifest (reads each file once). Shard sizes are
            always checked.

    Returns:
        A `PreparedData`.

    Raises:
        DataError: when the folder, manifest, tokenizer or a shard is missing,
            or a shard's size or checksum differs from the manifest.

    Example:

    ```python
    data = load_prepared("prepared/")
    data.tokenizer.vocabulary_size(), data.splits["train"].num_tokens
    ```
    """
    directory = os.fspath(directory)
    manifest_path = os.path.join(directory, MANIFEST_FILE)
    if not os.path.isfile(manifest_path):
        raise DataError(
            f"Expected a prepared folder (written by `klm prepare`) with {MANIFEST_FILE}. Received: path={directory!r}"
        )
    try:
        with open(manifest_path, encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError) as e:
        raise DataError(f"Cannot read {manifest_path}: {e}. Run klm prepare again.") from None
    if manifest.get("format") != FORMAT:
        raise DataError(f"Expected {manifest_path} to have format {FORMAT!r}. Received: format={manifest.get('format')!r}")
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise DataError(
            f"Expected a prepared format version <= {FORMAT_VERSION} (upgrade klm to read it). "
            f"Received: format_version={manifest.get('format_version')}"
        )
    dtype = np.dtype(manifest["token_dtype"])
    splits = {}
    for name, info in manifest["splits"].items():
        for shard in info["shards"]:
            path = _contained_path(directory, shard.get("file"), manifest_path, f"the {name} shard")
            if not os.path.isfile(path):
                raise DataError(f"Expected the shard {shard['file']} in {directory}. Received: a missing file")
            expected_size = int(shard["tokens"]) * dtype.itemsize
            if os.path.getsize(path) != expected_size:
                raise DataError(
                    f"Expected {path} to hold {shard['tokens']} tokens ({expected_size} bytes) as the manifest says. "
                    f"Received: {os.path.getsize(path)} bytes. The folder is damaged; run klm prepare again."
                )
            if verify:
                actual = _sha256(path)
                if actual != shard["sha256"]:
                    raise DataError(
                        f"Checksum mismatch for {path}: expected sha256 {shard['sha256']} (manifest.json). "
                        f"Received: sha256 {actual}. The folder was modified or damaged; run klm prepare again."
                    )
        splits[name] = PreparedSplit(directory, name, info, dtype.name)
    tokenizer_dir = _contained_path(directory, manifest["tokenizer"]["path"], manifest_path, "the tokenizer path")
    if verify:
        for name, expected in manifest["tokenizer"].get("files", {}).items():
            path = _contained_path(
                directory, f"{manifest['tokenizer']['path']}/{name}", manifest_path, "a tokenizer file"
            )
            actual = _sha256(path) if os.path.isfile(path) else "a missing file"
            if actual != expected:
                raise DataError(
                    f"Checksum mismatch for {path}: expected sha256 {expected} (manifest.json). "
                    f"Received: {actual}. The folder was modified or damaged; run klm prepare again."
                )
    tokenizer = load_tokenizer(tokenizer_dir)
    return PreparedData(directory=directory, manifest=manifest, tokenizer=tokenizer, splits=splits)
