import numpy as np

from klm.data.lm.batches import lm_dataset
from klm.data.prepared.shards import PreparedSplit, ShardWriter


def write_split(directory, tokens, shard_tokens, dtype="uint16"):
    writer = ShardWriter(str(directory), "train", dtype, shard_tokens)
    for chunk in np.array_split(tokens, 7):
        writer.write(chunk)
    shards = writer.close()
    return PreparedSplit(str(directory), "train", {"tokens": len(tokens), "shards": shards}, dtype)


def test_windows_across_shards(tmp_path):
    tokens = np.random.default_rng(0).integers(0, 60000, size=1000).astype(np.int64)
    split = write_split(tmp_path, tokens, shard_tokens=128)
    assert len(split.files) == 8 and split.num_tokens == 1000
    starts = np.array([0, 120, 127, 500, 989])
    np.testing.assert_array_equal(split.take_windows(starts, 11), tokens[starts[:, None] + np.arange(11)])
    np.testing.assert_array_equal(split.array(), tokens)


def test_lm_dataset_from_split_equals_array(tmp_path):
    tokens = np.arange(3000, dtype=np.int64) % 70000
    split = write_split(tmp_path, tokens, shard_tokens=1000, dtype="int32")
    for mode in ("contiguous", "shuffled"):
        from_split = [x.numpy() for x, _ in lm_dataset(split, 16, 4, mode=mode)]
        from_array = [x.numpy() for x, _ in lm_dataset(tokens, 16, 4, mode=mode)]
        assert len(from_split) == len(from_array)
        for ours, theirs in zip(from_split, from_array):  # contiguous: the last batch is shorter
            np.testing.assert_array_equal(ours, theirs)


def test_single_shard_is_a_memmap(tmp_path):
    split = write_split(tmp_path, np.arange(10), shard_tokens=100)
    assert isinstance(split.array(), np.memmap)
