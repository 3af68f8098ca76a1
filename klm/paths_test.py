import os

import pytest

from klm.errors import DataError
from klm.paths import contained_path, hugging_face_cache_blobs


def test_contained_path_refuses_escapes(tmp_path):
    (tmp_path / "folder").mkdir()
    (tmp_path / "outside.bin").write_bytes(b"x")
    folder = str(tmp_path / "folder")
    assert contained_path(folder, "a/b.bin", "index.json", "the shard", DataError) == os.path.join(folder, "a/b.bin")
    os.symlink(tmp_path / "outside.bin", tmp_path / "folder" / "link.bin")
    for bad in ("../outside.bin", str(tmp_path / "outside.bin"), "a/../../outside.bin", "link.bin", "", None):
        with pytest.raises(DataError, match="index.json"):
            contained_path(folder, bad, "index.json", "the shard", DataError)
    # A link into an allowed root is fine; `..` never is.
    assert contained_path(folder, "link.bin", "index.json", "the shard", DataError, allowed_roots=[str(tmp_path)])
    with pytest.raises(DataError, match="inside the checkpoint folder"):
        contained_path(
            folder, "../outside.bin", "i", "s", DataError, folder="checkpoint folder", allowed_roots=[str(tmp_path)]
        )


def test_hugging_face_cache_blobs(tmp_path):
    snapshot = tmp_path / "models--a--b" / "snapshots" / "rev"
    snapshot.mkdir(parents=True)
    assert hugging_face_cache_blobs(snapshot) is None
    (tmp_path / "models--a--b" / "blobs").mkdir()
    assert hugging_face_cache_blobs(snapshot) == str(tmp_path / "models--a--b" / "blobs")
    assert hugging_face_cache_blobs(tmp_path) is None
