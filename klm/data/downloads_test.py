import hashlib
import os
import zipfile

import pytest

from klm.checksums import git_blob_id
from klm.data.downloads import DATASETS_URL_ENV, get_dataset
from klm.data.text.sources import find_wikitext_splits
from klm.errors import DataError

TEXTS = {"train.txt": " = A = \n the cat sat \n", "valid.txt": " the dog \n", "test.txt": " a bird \n"}


def blob_id(text):
    data = text.encode()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def make_mirror(root):
    folder = root / "mirror" / "wikitext-2"
    folder.mkdir(parents=True)
    for name, text in TEXTS.items():
        (folder / name).write_text(text)
    return folder


def test_git_blob_id_matches_git_hash_object(tmp_path):
    path = tmp_path / "f.txt"
    path.write_bytes(b"hello\n")
    # `printf 'hello\n' | git hash-object --stdin`
    assert git_blob_id(path) == "ce013625030ba8dba906f756967f9e9ca394464a"


def test_download_verify_and_reuse_offline(tmp_path):
    mirror = make_mirror(tmp_path)
    hashes = {name: blob_id(text) for name, text in TEXTS.items()}
    base_url = (tmp_path / "mirror").as_uri()
    folder = get_dataset("wikitext-2", base_url=base_url, cache_dir=str(tmp_path / "cache"), expected_hashes=hashes)
    assert folder == tmp_path / "cache" / "datasets" / "klm" / "wikitext-2"
    assert (folder / "train.txt").read_text() == TEXTS["train.txt"]
    assert set(find_wikitext_splits(folder)) == {"train", "valid", "test"}
    # The mirror goes away (no network): the verified cache is reused.
    for path in mirror.iterdir():
        path.unlink()
    again = get_dataset("wikitext-2", base_url=base_url, cache_dir=str(tmp_path / "cache"), expected_hashes=hashes)
    assert again == folder


def test_base_url_from_environment(tmp_path, monkeypatch):
    make_mirror(tmp_path)
    monkeypatch.setenv(DATASETS_URL_ENV, (tmp_path / "mirror").as_uri())
    folder = get_dataset("wikitext-2", cache_dir=str(tmp_path / "cache"), expected_hashes={}, splits=("valid",))
    assert (folder / "valid.txt").read_text() == TEXTS["valid.txt"]


def test_corrupted_download_is_rejected_and_not_cached(tmp_path):
    make_mirror(tmp_path)
    hashes = {name: blob_id(text) for name, text in TEXTS.items()}
    hashes["valid.txt"] = blob_id("something else\n")
    with pytest.raises(DataError, match="valid.txt.*deleted"):
        get_dataset(
            "wikitext-2",
            base_url=(tmp_path / "mirror").as_uri(),
            cache_dir=str(tmp_path / "cache"),
            expected_hashes=hashes,
        )
    assert not (tmp_path / "cache" / "datasets" / "klm" / "wikitext-2" / "valid.txt").exists()


def test_corrupted_cache_is_fetched_again(tmp_path):
    make_mirror(tmp_path)
    hashes = {name: blob_id(text) for name, text in TEXTS.items()}
    kwargs = dict(base_url=(tmp_path / "mirror").as_uri(), cache_dir=str(tmp_path / "cache"), expected_hashes=hashes)
    folder = get_dataset("wikitext-2", **kwargs)
    (folder / "test.txt").write_text("truncated")
    get_dataset("wikitext-2", **kwargs)
    assert (folder / "test.txt").read_text() == TEXTS["test.txt"]


def test_offline_without_cache_says_how_to_use_local_files(tmp_path):
    with pytest.raises(DataError, match="point klm at local files") as info:
        get_dataset("wikitext-2", base_url=(tmp_path / "nowhere").as_uri(), cache_dir=str(tmp_path / "cache"))
    assert "KLM_DATASETS_URL" in str(info.value)


def test_unknown_name():
    with pytest.raises(DataError, match="wikitext-2, wikitext-103"):
        get_dataset("wikitext-7")


def make_archive(root, corrupt=False):
    folder = root / "mirror" / "wikitext-103"
    folder.mkdir(parents=True)
    path = folder / "wikitext-103-v1.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for split in ("train", "valid", "test"):
            z.writestr(f"wikitext-103/wiki.{split}.tokens", f" = {split} = \n words of {split} \n" * 50)
    if corrupt:
        data = bytearray(path.read_bytes())
        data[60:80] = b"x" * 20
        path.write_bytes(bytes(data))
    return path


def test_wikitext_103_archive_is_extracted(tmp_path):
    make_archive(tmp_path)
    folder = get_dataset("wikitext-103", base_url=(tmp_path / "mirror").as_uri(), cache_dir=str(tmp_path / "cache"))
    splits = find_wikitext_splits(folder)
    assert set(splits) == {"train", "valid", "test"}
    assert "words of valid" in splits["valid"].read_text()
    assert not any(p.suffix == ".zip" for p in folder.parent.iterdir())


def test_wikitext_103_corrupt_archive_is_deleted(tmp_path):
    make_archive(tmp_path, corrupt=True)
    with pytest.raises(DataError, match="deleted"):
        get_dataset("wikitext-103", base_url=(tmp_path / "mirror").as_uri(), cache_dir=str(tmp_path / "cache"))
    cache = tmp_path / "cache" / "datasets" / "klm" / "wikitext-103"
    assert not (cache / "wikitext-103-v1.zip").exists()
    assert not (cache / "extracted").exists()
    assert os.listdir(cache) == []
