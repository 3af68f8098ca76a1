"""`PreparedSplit`: one split of a prepared folder, read from its token shards."""

import os

import numpy as np


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
