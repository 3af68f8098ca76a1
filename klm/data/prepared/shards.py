"""The token shard files of a prepared folder: `ShardWriter` writes them, `PreparedSplit` reads one split."""

import hashlib
import os

import numpy as np


class ShardWriter:
    """Writes a token stream into fixed-size shards, hashing as it goes.

    Args:
        directory: the folder to write `{split}-00000.bin`, ... into.
        split: the split name (the shards' file name prefix).
        dtype: the shard dtype (`token_dtype` of `klm.data.prepared.manifest`).
        shard_tokens: tokens per shard; the last shard may hold fewer.

    `close()` returns the shards' manifest entries: `{"file", "tokens", "sha256"}`.
    """

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


class PreparedSplit:
    """The token stream of one split, stored as fixed-width binary shards.

    Shards are raw little-endian arrays (`uint16` when every id fits,
    otherwise `int32`), read through `np.memmap`: nothing is loaded until a
    window is gathered, so memory does not grow with the corpus. Pass a split
    straight to `lm_dataset`, or call `array()` for a NumPy view.

    Args:
        directory: the prepared folder.
        name: the split name (`"train"`, `"valid"`, `"test"`).
        info: the split's manifest entry (`tokens`, `documents`, `shards`).
        dtype: the shard dtype name (`"uint16"` or `"int32"`).

    Example:

    ```python
    data = klm.data.load_prepared("prepared/")
    ds = klm.data.lm_dataset(data.splits["train"], seq_len=128, batch_size=32)
    ```
    """

    def __init__(self, directory, name, info, dtype):
        self.directory = os.fspath(directory)
        self.name = name
        self.num_tokens = int(info["tokens"])
        self.num_documents = int(info.get("documents", 0))
        self.dtype = np.dtype(dtype).newbyteorder("<")
        self.files = [os.path.join(self.directory, shard["file"]) for shard in info["shards"]]
        sizes = [int(shard["tokens"]) for shard in info["shards"]]
        self._offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).astype(np.int64)
        self._maps = [None] * len(self.files)

    def __len__(self):
        return self.num_tokens

    def __repr__(self):
        return f"PreparedSplit(name={self.name!r}, tokens={self.num_tokens}, shards={len(self.files)})"

    def _shard(self, index):
        if self._maps[index] is None:
            count = int(self._offsets[index + 1] - self._offsets[index])
            if count == 0:
                self._maps[index] = np.zeros((0,), dtype=self.dtype)
            else:
                self._maps[index] = np.memmap(self.files[index], dtype=self.dtype, mode="r", shape=(count,))
        return self._maps[index]

    def array(self):
        """The whole split as a 1-D array.

        A single shard is returned as a read-only `np.memmap` (no copy);
        several shards are concatenated into memory.
        """
        if len(self.files) == 1:
            return self._shard(0)
        if not self.files:
            return np.zeros((0,), dtype=self.dtype)
        return np.concatenate([self._shard(i) for i in range(len(self.files))])

    def take_windows(self, starts, length):
        """Gathers windows `[start, start + length)` across shard boundaries.

        Args:
            starts: a 1-D integer array of window starts.
            length: the window length.

        Returns:
            An array `[len(starts), length]` of the shard dtype.
        """
        positions = np.asarray(starts, dtype=np.int64)[:, None] + np.arange(length, dtype=np.int64)
        if len(self.files) == 1:
            return self._shard(0)[positions]
        shard_ids = np.searchsorted(self._offsets, positions, side="right") - 1
        windows = np.empty(positions.shape, dtype=self.dtype)
        for shard in np.unique(shard_ids):
            mask = shard_ids == shard
            windows[mask] = self._shard(int(shard))[positions[mask] - self._offsets[shard]]
        return windows
