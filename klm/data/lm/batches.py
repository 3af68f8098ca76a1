"""`lm_dataset`: `(x, y)` next-token batches from a token stream, in tf.data.

Both modes cut the stream into windows of `seq_len + 1` tokens; `x` is a
window's first `seq_len` tokens and `y` its last `seq_len` (x shifted by
one). Consecutive windows overlap by one token, so every pair of adjacent
tokens in the stream is trained on exactly once per epoch, as in the reference.

- `"contiguous"` reproduces the reference (PyTorch's word-language-model
  `batchify` + `get_batch`): the stream is trimmed to a multiple of
  `batch_size` and cut into `batch_size` equal columns (row `b` of every
  batch continues row `b` of the previous batch, which stateful models rely
  on); step `i` takes tokens `[i * seq_len, i * seq_len + seq_len]` of every
  column. As in the seed, the last step is shorter when the columns do not
  divide evenly (`get_batch`'s `min(bptt, len(source) - 1 - i)`); it matters:
  after one epoch on WikiText-2 that single short step changed the PyTorch
  reference's test perplexity by -16% to +2% (12% lower on average over four
  seeds; `examples/benchmarks/README.md`).
  `drop_remainder=True` drops it so that every batch has the static shape
  `[batch_size, seq_len]` (one compiled step). `seed` is ignored.
- `"shuffled"`: the stream is cut into windows starting at multiples of
  `seq_len` (the last partial window is dropped); each epoch visits them in a
  new random order, batched with the remainder dropped. The order of epoch
  `e` is a NumPy permutation seeded with `(seed, e)`, so it is deterministic
  for a seed and independent of TensorFlow's global seed. Epochs count
  iterations over the returned dataset (`model.fit` starts one per epoch).

The token source is a 1-D integer NumPy array or a `klm.data.PreparedSplit`.
An in-memory array becomes one constant tensor and windows are gathered in TF
ops; a `PreparedSplit` (or a `np.memmap`) stays on disk and windows are read
from its shards with `tf.numpy_function`, so memory does not grow with the
corpus. Either way the gathering map is parallel and order-keeping, and
batches are prefetched.
"""

import numpy as np
import tensorflow as tf

from klm.data.options import without_autotune
from klm.errors import ConfigError, DataError

MODES = ("shuffled", "contiguous")


def _check_arguments(seq_len, batch_size, mode):
    if isinstance(seq_len, bool) or not isinstance(seq_len, (int, np.integer)) or seq_len <= 1:
        raise ConfigError(
            "Expected --seq-len (seq_len) to be an integer > 1: each window needs an input and a "
            f"next-token target. Received: seq_len={seq_len!r}"
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ConfigError(
            f"Expected --batch-size (batch_size) to be an integer >= 1. Received: batch_size={batch_size!r}"
        )
    if mode not in MODES:
        raise ConfigError(f"Expected mode to be one of {', '.join(MODES)}. Received: mode={mode!r}")


def _contiguous_layout(num_tokens, seq_len, batch_size):
    """(full steps, length of the short last step or 0) of the contiguous mode."""
    targets_per_column = num_tokens // batch_size - 1  # the reference's `len(source) - 1`
    full_steps = max(0, targets_per_column // seq_len)
    if full_steps == 0:
        return 0, 0  # too short: no batch at all (a clear error in `lm_dataset`)
    return full_steps, targets_per_column - full_steps * seq_len


def lm_steps_per_epoch(num_tokens, seq_len, batch_size, mode="shuffled", drop_remainder=False):
    """The number of batches `lm_dataset` yields per epoch.

    Args:
        num_tokens: the length of the token stream.
        seq_len: the window length (`--seq-len`).
        batch_size: the batch size.
        mode: `"shuffled"` or `"contiguous"`.
        drop_remainder: bool. Contiguous mode: leave out the short last step.

    Example:

    >>> lm_steps_per_epoch(1000, seq_len=10, batch_size=4, mode="contiguous")
    25
    >>> lm_steps_per_epoch(1000, seq_len=10, batch_size=4, mode="contiguous", drop_remainder=True)
    24
    """
    _check_arguments(seq_len, batch_size, mode)
    num_tokens = int(num_tokens)
    if mode == "contiguous":
        full_steps, last_length = _contiguous_layout(num_tokens, seq_len, batch_size)
        return full_steps + (1 if last_length and not drop_remainder else 0)
    return max(0, (num_tokens - 1) // seq_len) // batch_size


def lm_tokens_per_epoch(num_tokens, seq_len, batch_size, mode="shuffled", drop_remainder=False):
    """The number of target tokens `lm_dataset` yields per epoch.

    Equals `steps * batch_size * seq_len` unless the contiguous mode keeps a
    short last step.

    Example:

    >>> lm_tokens_per_epoch(1000, seq_len=10, batch_size=4, mode="contiguous")
    996
    """
    steps = lm_steps_per_epoch(num_tokens, seq_len, batch_size, mode, drop_remainder)
    if mode != "contiguous" or drop_remainder:
        return steps * batch_size * seq_len
    full_steps, last_length = _contiguous_layout(int(num_tokens), seq_len, batch_size)
    return (full_steps * seq_len + last_length) * batch_size


def _window_gatherer(tokens):
    """Returns `(num_tokens, gather)`; `gather(starts, window)` maps to int32 windows.

    In-memory arrays become one constant tensor and windows are gathered in
    TF ops (no Python per batch). Memory-mapped arrays and `PreparedSplit`s
    stay on disk: windows are read with `tf.numpy_function`.
    """
    if hasattr(tokens, "take_windows") and hasattr(tokens, "num_tokens"):
        num_tokens, take = int(tokens.num_tokens), tokens.take_windows
    else:
        array = tokens if isinstance(tokens, np.ndarray) else np.asarray(tokens)
        if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
            raise DataError(
                "Expected tokens to be a 1-D integer array (or a PreparedSplit). "
                f"Received: array of shape {array.shape} and dtype {array.dtype}"
            )
        num_tokens = len(array)
        if not isinstance(array, np.memmap):
            constant = tf.constant(array if array.dtype in (np.int32, np.int64, np.uint16) else array.astype(np.int64))

            def gather_in_graph(starts, window):
                offsets = tf.range(window, dtype=tf.int64)
                return tf.cast(tf.gather(constant, starts[:, None] + offsets), tf.int32)

            return num_tokens, gather_in_graph

        def take(starts, length):
            return array[starts[:, None] + np.arange(length)]

    def gather_from_disk(starts, window):
        return tf.numpy_function(
            lambda s: np.asarray(take(s, window), dtype=np.int32), [starts], tf.int32, stateful=False
        )

    return num_tokens, gather_from_disk


def lm_dataset(
    tokens,
    seq_len,
    batch_size,
    mode="shuffled",
    seed=0,
    drop_remainder=False,
    num_parallel_calls=tf.data.AUTOTUNE,
    epoch=None,
):
    """A `tf.data.Dataset` of `(x, y)` language-model batches (one epoch).

    See the module docstring for the two modes.

    Args:
        tokens: a 1-D integer NumPy array (or `np.memmap`) of token ids, or a
            `klm.data.PreparedSplit`.
        seq_len: int > 1. The number of positions per example (`--seq-len`,
            the reference's `bptt`).
        batch_size: int. Examples per batch.
        mode: `"shuffled"` (default) or `"contiguous"`.
        seed: int. The shuffle seed (`"shuffled"` only).
        drop_remainder: bool. `"contiguous"` only: drop the reference's short last
            step so that every batch is `[batch_size, seq_len]`.
        num_parallel_calls: parallelism of the window-gathering map.
        epoch: int or `None`. `"shuffled"` only: yield the order of this
            (0-based) epoch on every iteration. A resumed run builds the
            dataset of the epoch it resumes in, so it sees the batches the
            uninterrupted run would. `None`: the k-th iteration of the
            dataset yields epoch k's order.

    Returns:
        A dataset of `(x, y)`, both `int32` `[batch_size, seq_len]`, with
        `y[:, t] == x[:, t + 1]` for `t < seq_len - 1`; in contiguous mode the
        last batch may be shorter (unless `drop_remainder`), so the sequence
        dimension is then not static. It yields `lm_steps_per_epoch(...)`
        batches per iteration.

    Raises:
        ConfigError: for `seq_len <= 1`, a bad `batch_size` or `mode`.
        DataError: when the stream is too short for one batch.

    Example:

    >>> tokens = np.arange(100, dtype=np.int32)
    >>> ds = lm_dataset(tokens, seq_len=4, batch_size=2, mode="contiguous")
    >>> x, y = next(iter(ds))
    >>> x.numpy().tolist(), y.numpy().tolist()
    ([[0, 1, 2, 3], [50, 51, 52, 53]], [[1, 2, 3, 4], [51, 52, 53, 54]])
    >>> [x.shape[1] for x, _ in ds][-2:]  # 49 targets per column: 12 x 4 + 1
    [4, 1]
    """
    _check_arguments(seq_len, batch_size, mode)
    seq_len, batch_size = int(seq_len), int(batch_size)
    window = seq_len + 1
    num_tokens, gather = _window_gatherer(tokens)
    steps = lm_steps_per_epoch(num_tokens, seq_len, batch_size, mode, drop_remainder)
    if steps < 1:
        if mode == "contiguous":
            needed = batch_size * (seq_len + 1)
        else:
            needed = batch_size * seq_len + 1
        raise DataError(
            f"Expected at least {needed} tokens for one {mode} batch of {batch_size} x {seq_len} "
            f"(--batch-size x --seq-len). Received: {num_tokens} tokens. Use more text or smaller values."
        )

    last_length = 0
    if mode == "contiguous":
        full_steps, last_length = _contiguous_layout(num_tokens, seq_len, batch_size)
        last_length = 0 if drop_remainder else last_length
        column_starts = tf.range(batch_size, dtype=tf.int64) * (num_tokens // batch_size)
        starts = tf.data.Dataset.range(full_steps).map(lambda step: column_starts + step * seq_len)
    else:
        num_windows = (num_tokens - 1) // seq_len
        epoch_counter = [0]

        def permutation():
            # Called once per iteration (epoch): a fresh order seeded by
            # (seed, epoch), so epochs differ but runs repeat exactly.
            this_epoch = epoch_counter[0] if epoch is None else int(epoch)
            epoch_counter[0] += 1
            order = np.random.default_rng([int(seed), this_epoch]).permutation(num_windows)
            yield order[: steps * batch_size].astype(np.int64) * seq_len

        starts = tf.data.Dataset.from_generator(permutation, output_signature=tf.TensorSpec([None], tf.int64))
        starts = starts.unbatch().batch(batch_size, drop_remainder=True)

    def examples(starts, window):
        def to_example(batch_starts):
            windows = tf.ensure_shape(gather(batch_starts, window), [batch_size, window])
            return windows[:, :-1], windows[:, 1:]

        return starts.map(to_example, num_parallel_calls=num_parallel_calls, deterministic=True)

    dataset = examples(starts, window)
    if last_length:
        # The reference's short last step: the remaining `last_length` targets of every column.
        last_starts = tf.data.Dataset.from_tensors(column_starts + full_steps * seq_len)
        dataset = dataset.concatenate(examples(last_starts, last_length + 1))
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(steps))
    return without_autotune(dataset.prefetch(tf.data.AUTOTUNE))
