"""`PreparedData` and `load_prepared`: reading a `klm prepare` output folder.

The layout and manifest are described in `klm.data.prepared.manifest`.
"""

import dataclasses
import os

import numpy as np

from klm.checksums import sha256_of_file
from klm.data.prepared.manifest import FORMAT, FORMAT_VERSION, MANIFEST_FILE, read_manifest
from klm.data.prepared.shards import PreparedSplit
from klm.data.tokenizers.tokenizer_io import load_tokenizer
from klm.errors import DataError
from klm.paths import contained_path


def _contained_path(directory, relative, manifest_path, what):
    """`directory/relative`, refusing paths that leave `directory` (see `klm.paths.contained_path`)."""
    return contained_path(directory, relative, manifest_path, what, DataError, folder="prepared folder")


@dataclasses.dataclass
class PreparedData:
    """A prepared folder: its manifest, tokenizer and token splits.

    Args:
        directory: the folder.
        manifest: the parsed `manifest.json` (layout: see `klm.data.prepared.manifest`).
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
        manifest = read_manifest(directory)
    except (OSError, ValueError) as e:
        raise DataError(f"Cannot read {manifest_path}: {e}. Run klm prepare again.") from None
    if manifest.get("format") != FORMAT:
        raise DataError(
            f"Expected {manifest_path} to have format {FORMAT!r}. Received: format={manifest.get('format')!r}"
        )
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
                actual = sha256_of_file(path)
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
            actual = sha256_of_file(path) if os.path.isfile(path) else "a missing file"
            if actual != expected:
                raise DataError(
                    f"Checksum mismatch for {path}: expected sha256 {expected} (manifest.json). "
                    f"Received: {actual}. The folder was modified or damaged; run klm prepare again."
                )
    tokenizer = load_tokenizer(tokenizer_dir)
    return PreparedData(directory=directory, manifest=manifest, tokenizer=tokenizer, splits=splits)
