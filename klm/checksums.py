"""File checksums, read in 1 MiB chunks: `sha256_of_file` and `git_blob_id`.

`sha256_of_file` checks prepared folders (shards and tokenizer files, see
`klm.data.prepared`), pinned downloads (`klm.data.downloads`) and resume
backups (`klm.training.run_folder`); standard library only, so the run
folder code can use it without importing the data pipeline (TensorFlow);
`git_blob_id` checks the WikiText-2 files against the ids git gives them.
"""

import hashlib
import os

CHUNK_BYTES = 1 << 20


def _update_from_file(digest, path):
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_of_file(path):
    """The hex sha256 of a file."""
    return _update_from_file(hashlib.sha256(), path)


def git_blob_id(path):
    """The git blob id of a file: sha1 of `b"blob <size>\\0" + content`.

    Equal to what `git hash-object FILE` prints.
    """
    return _update_from_file(hashlib.sha1(f"blob {os.path.getsize(path)}\0".encode()), path)
