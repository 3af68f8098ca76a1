"""Named datasets (`wikitext-2`, `wikitext-103`), downloaded once and cached.

`get_dataset(name)` downloads a dataset on first use with
`keras.utils.get_file` into the Keras cache (`$KERAS_HOME/datasets/klm/NAME/`,
by default `~/.keras/datasets/klm/NAME/`), checks its integrity, and returns
the folder. Later calls find the verified files in the cache and need no
network.

Where the files come from:

- `wikitext-2`: the three files of the PyTorch word-language-model example,
  `https://raw.githubusercontent.com/pytorch/examples/main/word_language_model/data/wikitext-2/{train,valid,test}.txt`
  (the "tokens" form: already word-tokenized, rare words replaced by
  `<unk>`). Each file is checked against its git blob id (the sha1 of
  `b"blob <size>\\0" + content`, what `git hash-object FILE` prints), taken
  from the pytorch/examples repository.
- `wikitext-103`: the "tokens" archive `wikitext-103-v1.zip` (about 190 MB)
  from `https://wikitext.smerity.com`, the mirror run by the dataset's author
  since the original S3 bucket closed. The archive is checked with the CRC-32
  of every member (a truncated or corrupted download fails); no digest of the
  archive is pinned because none is published with it. Pass
  `expected_hashes={"wikitext-103-v1.zip": "<sha256>"}` to pin one.

The base URL can be replaced with the `base_url` argument or the
`KLM_DATASETS_URL` environment variable. The replacement holds one folder per
dataset: `{base_url}/wikitext-2/train.txt`,
`{base_url}/wikitext-103/wikitext-103-v1.zip`. `file://` URLs work, for an
offline mirror.

Without network and without a cached copy, `get_dataset` raises a `DataError`
that says how to point klm at local files instead.
"""

import os
import shutil
import tempfile
import zipfile
import zlib
from pathlib import Path

from klm.checksums import git_blob_id, sha256_of_file
from klm.errors import DataError

DATASETS_URL_ENV = "KLM_DATASETS_URL"

# name -> how to fetch it. "files" are fetched one by one; an "archive" is
# fetched and its "members" extracted. "hashes" maps a file name to its git
# blob id (40 hex digits) or sha256 (64 hex digits).
DATASETS = {
    "wikitext-2": {
        "url": "https://raw.githubusercontent.com/pytorch/examples/main/word_language_model/data/wikitext-2",
        "files": {"train": "train.txt", "valid": "valid.txt", "test": "test.txt"},
        "hashes": {
            "train.txt": "2d84b35af79e411d73ea7cae83c73964c6ac83b4",
            "valid.txt": "eec944eb2d9e46061cd34a6913528797db6842fc",
            "test.txt": "6f3fc88e4cd88456ea892971f9f12243e8428624",
        },
    },
    "wikitext-103": {
        "url": "https://wikitext.smerity.com",
        "archive": "wikitext-103-v1.zip",
        "members": {
            "train": "wikitext-103/wiki.train.tokens",
            "valid": "wikitext-103/wiki.valid.tokens",
            "test": "wikitext-103/wiki.test.tokens",
        },
        "hashes": {},
    },
}


def _hash_matches(path, expected):
    if not expected:
        return True
    expected = expected.lower()
    if len(expected) == 40:
        return git_blob_id(path) == expected
    return sha256_of_file(path) == expected


def is_dataset_name(name):
    """Whether `name` names a downloadable dataset (and is not a local path)."""
    return isinstance(name, str) and name in DATASETS and not os.path.exists(name)


def _offline_help(name):
    return (
        f"klm downloads {name} once into the Keras cache and then works offline. Without network, "
        f"point klm at local files instead: pass the folder that holds the split files "
        f"(train.txt/valid.txt/test.txt or wiki.train.tokens/...) in place of the name, e.g. "
        f"`klm prepare path/to/{name} --out DIR`, or set {DATASETS_URL_ENV}=file:///path/to/mirror "
        f"(a folder holding {name}/...)"
    )


def _cache_root(cache_dir):
    """The cache root `keras.utils.get_file` will use for `cache_dir`."""
    root = os.path.expanduser(cache_dir or os.environ.get("KERAS_HOME") or os.path.join("~", ".keras"))
    try:
        # get_file silently falls back to /tmp/.keras when the folder is not
        # writable, which includes "does not exist yet": create it first.
        os.makedirs(root, exist_ok=True)
    except OSError:
        pass
    if not os.access(root, os.W_OK):
        root = os.path.join(tempfile.gettempdir(), ".keras")
    return root


def _fetch(url, file_name, cache_dir, cache_subdir, force):
    import keras

    try:
        return keras.utils.get_file(
            fname=file_name,
            origin=url,
            cache_dir=_cache_root(cache_dir),
            cache_subdir=cache_subdir,
            force_download=force,
        )
    except Exception as e:  # noqa: BLE001 - get_file raises bare Exception for URL errors.
        raise DataError(f"Cannot download {url}: {e}.") from e


def _fetch_verified(name, url, file_name, cache_dir, cache_subdir, expected):
    """Fetches one file (or reuses the cache) and checks its hash.

    A cached file that fails the check is fetched again once; a download that
    fails the check is deleted so that the cache never holds a bad file.
    """
    for attempt in range(2):
        try:
            path = _fetch(url, file_name, cache_dir, cache_subdir, force=attempt > 0)
        except DataError as e:
            raise DataError(f"{e} {_offline_help(name)}. Received: dataset={name!r}") from None
        if _hash_matches(path, expected):
            return path
        os.remove(path)
    raise DataError(
        f"Expected {file_name} of {name} from {url} to have hash {expected}; the downloaded file "
        f"does not match and was deleted (corrupted download or changed upstream file). "
        f"Received: {file_name} with another hash"
    )


def get_dataset(name, base_url=None, cache_dir=None, expected_hashes=None, splits=("train", "valid", "test")):
    """Returns the local folder of a named dataset, downloading it if needed.

    Args:
        name: `"wikitext-2"` or `"wikitext-103"`.
        base_url: replaces the download URL; holds one folder per dataset
            (`{base_url}/wikitext-2/train.txt`). Defaults to
            `$KLM_DATASETS_URL`, then the dataset's own URL (see the module
            docstring).
        cache_dir: the cache root, as in `keras.utils.get_file`. Defaults to
            `$KERAS_HOME` or `~/.keras`.
        expected_hashes: a dict from file name to git blob id (40 hex digits)
            or sha256 (64 hex digits), replacing the built-in ones; a file
            missing from the dict is not checked.
        splits: the splits to fetch (`wikitext-2` only; an archive holds all).

    Returns:
        The `Path` of the folder holding the split files (a WikiText folder,
        see `klm.data.text.sources.find_wikitext_splits`).

    Raises:
        DataError: unknown name, no network and no cache (the message says
            how to use local files), or a file that fails its hash check.

    Example:

    >>> folder = get_dataset("wikitext-2")  # doctest: +SKIP
    >>> sorted(p.name for p in folder.iterdir())  # doctest: +SKIP
    ['test.txt', 'train.txt', 'valid.txt']
    """
    if name not in DATASETS:
        raise DataError(f"Expected a dataset name in {', '.join(DATASETS)}. Received: dataset={name!r}")
    spec = DATASETS[name]
    hashes = dict(spec["hashes"]) if expected_hashes is None else dict(expected_hashes)
    base_url = base_url or os.environ.get(DATASETS_URL_ENV)
    url = f"{base_url.rstrip('/')}/{name}" if base_url else spec["url"]
    cache_subdir = os.path.join("datasets", "klm", name)
    if "files" in spec:
        path = None
        for split in splits:
            if split not in spec["files"]:
                raise DataError(f"Expected a split in {', '.join(spec['files'])}. Received: split={split!r}")
            file_name = spec["files"][split]
            path = _fetch_verified(
                name, f"{url}/{file_name}", file_name, cache_dir, cache_subdir, hashes.get(file_name)
            )
        return Path(path).parent
    return _get_archive(name, spec, url, cache_dir, cache_subdir, hashes)


def _get_archive(name, spec, url, cache_dir, cache_subdir, hashes):
    archive = spec["archive"]
    extracted = Path(_cache_root(cache_dir)) / cache_subdir / "extracted"
    members = spec["members"]
    if all((extracted / Path(member).name).is_file() for member in members.values()):
        return extracted
    zip_path = _fetch_verified(name, f"{url}/{archive}", archive, cache_dir, cache_subdir, hashes.get(archive))
    extracted = Path(zip_path).parent / "extracted"
    try:
        with zipfile.ZipFile(zip_path) as z:
            bad = z.testzip()
            if bad is not None:
                raise zipfile.BadZipFile(f"CRC error in member {bad}")
            missing = [m for m in members.values() if m not in z.namelist()]
            if missing:
                raise zipfile.BadZipFile(f"missing members {missing}")
            staging = Path(tempfile.mkdtemp(prefix=".extracting-", dir=Path(zip_path).parent))
            try:
                for member in members.values():
                    with z.open(member) as source, open(staging / Path(member).name, "wb") as target:
                        shutil.copyfileobj(source, target, 1 << 20)
                if extracted.exists():
                    shutil.rmtree(extracted)
                os.replace(staging, extracted)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except (zipfile.BadZipFile, OSError, zlib.error, EOFError) as e:
        os.remove(zip_path)
        raise DataError(
            f"Expected {archive} of {name} to be a complete zip archive; it failed its check ({e}) and "
            f"was deleted. Run again to download it anew. Received: {url}/{archive}"
        ) from None
    # The archive is no longer needed once its members are extracted.
    os.remove(zip_path)
    return extracted
