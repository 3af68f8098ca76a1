import numpy as np
import pytest
import tensorflow as tf

from klm.data.lm.batches import lm_dataset, lm_steps_per_epoch, lm_tokens_per_epoch
from klm.errors import ConfigError, DataError


def reference_batches(data, batch_size, bptt):
    """The reference's `batchify` + `get_batch`, in NumPy (time-major batches)."""
    nbatch = len(data) // batch_size
    data = data[: nbatch * batch_size].reshape(batch_size, -1).T
    batches = []
    for i in range(0, data.shape[0] - 1, bptt):
        seq_len = min(bptt, data.shape[0] - 1 - i)
        batches.append((data[i : i + seq_len], data[i + 1 : i + 1 + seq_len]))
    return batches


def collect(dataset):
    return [(x.numpy(), y.numpy()) for x, y in dataset]


@pytest.mark.parametrize(
    "num_tokens,batch_size,seq_len,short_last", [(1000, 4, 7, True), (1003, 3, 10, True), (60, 2, 29, False)]
)
def test_contiguous_reproduces_the_seed(num_tokens, batch_size, seq_len, short_last):
    tokens = np.random.default_rng(1).integers(0, 500, size=num_tokens).astype(np.int32)
    expected = reference_batches(tokens, batch_size, seq_len)
    assert (len(expected[-1][0]) < seq_len) == short_last
    # Every batch of the seed, the short last one included.
    ours = collect(lm_dataset(tokens, seq_len, batch_size, mode="contiguous"))
    assert len(ours) == len(expected) == lm_steps_per_epoch(num_tokens, seq_len, batch_size, "contiguous")
    for (x, y), (reference_x, reference_y) in zip(ours, expected):
        np.testing.assert_array_equal(x, reference_x.T)
        np.testing.assert_array_equal(y, reference_y.T)
    assert sum(y.size for _, y in ours) == lm_tokens_per_epoch(num_tokens, seq_len, batch_size, "contiguous")
    # drop_remainder: only the full batches, all of the static shape.
    dropped = lm_dataset(tokens, seq_len, batch_size, mode="contiguous", drop_remainder=True)
    assert dropped.element_spec[0].shape.as_list() == [batch_size, seq_len]
    full = [(x, y) for x, y in expected if len(x) == seq_len]
    assert (
        len(collect(dropped))
        == len(full)
        == lm_steps_per_epoch(num_tokens, seq_len, batch_size, "contiguous", drop_remainder=True)
    )
    assert lm_tokens_per_epoch(num_tokens, seq_len, batch_size, "contiguous", drop_remainder=True) == (
        len(full) * batch_size * seq_len
    )


def test_contiguous_short_last_batch_from_disk_equals_in_memory(tmp_path):
    tokens = np.arange(1003, dtype=np.int32)
    path = tmp_path / "tokens.bin"
    tokens.tofile(path)
    on_disk = np.memmap(path, dtype=np.int32, mode="r")
    for ours, theirs in zip(
        collect(lm_dataset(on_disk, 10, 3, mode="contiguous")), collect(lm_dataset(tokens, 10, 3, mode="contiguous"))
    ):
        np.testing.assert_array_equal(ours[0], theirs[0])
        np.testing.assert_array_equal(ours[1], theirs[1])
    assert ours[0].shape == (3, 3)  # 334 tokens per column: 33 x 10 + 3 targets


def test_static_shapes_and_dtype():
    dataset = lm_dataset(np.arange(500, dtype=np.uint16), seq_len=8, batch_size=4)
    x_spec, y_spec = dataset.element_spec
    assert x_spec.shape.as_list() == [4, 8] and y_spec.shape.as_list() == [4, 8]
    assert x_spec.dtype == tf.int32
    assert int(dataset.cardinality()) == lm_steps_per_epoch(500, 8, 4)


def test_shuffled_windows_cover_the_stream_once_per_epoch():
    tokens = np.arange(1001, dtype=np.int64)
    dataset = lm_dataset(tokens, seq_len=10, batch_size=5, mode="shuffled", seed=3)
    epoch = collect(dataset)
    assert len(epoch) == lm_steps_per_epoch(1001, 10, 5, "shuffled") == 20
    starts = np.concatenate([x[:, 0] for x, _ in epoch])
    assert sorted(starts.tolist()) == list(range(0, 1000, 10))
    for x, y in epoch:
        np.testing.assert_array_equal(y, x + 1)


def test_shuffled_is_deterministic_per_seed_and_varies_by_epoch():
    tokens = np.arange(2000, dtype=np.int32)

    def first_columns(dataset):
        return np.concatenate([x[:, 0] for x, _ in collect(dataset)])

    dataset = lm_dataset(tokens, 10, 4, seed=7)
    epoch_1, epoch_2 = first_columns(dataset), first_columns(dataset)
    again = lm_dataset(tokens, 10, 4, seed=7)
    np.testing.assert_array_equal(first_columns(again), epoch_1)
    np.testing.assert_array_equal(first_columns(again), epoch_2)
    assert not np.array_equal(epoch_1, epoch_2)
    assert not np.array_equal(first_columns(lm_dataset(tokens, 10, 4, seed=8)), epoch_1)
    # The global TF seed does not change the order.
    tf.random.set_seed(123)
    np.testing.assert_array_equal(first_columns(lm_dataset(tokens, 10, 4, seed=7)), epoch_1)


def test_errors():
    tokens = np.arange(100, dtype=np.int32)
    with pytest.raises(ConfigError, match="seq_len=1"):
        lm_dataset(tokens, 1, 2)
    with pytest.raises(ConfigError, match="batch_size"):
        lm_dataset(tokens, 4, 0)
    with pytest.raises(ConfigError, match="mode"):
        lm_dataset(tokens, 4, 2, mode="random")
    with pytest.raises(DataError, match="Received: 100 tokens"):
        lm_dataset(tokens, 50, 4, mode="contiguous")
    with pytest.raises(DataError, match="1-D integer"):
        lm_dataset(np.zeros((4, 4), dtype=np.int32), 2, 2)
