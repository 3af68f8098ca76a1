"""`classification_dataset`: padded token batches with labels, in tf.data."""

import numpy as np
import tensorflow as tf

from klm.data.options import without_autotune
from klm.errors import ConfigError, DataError


def classification_dataset(
    texts,
    labels,
    tokenizer,
    seq_len,
    batch_size,
    shuffle=False,
    seed=0,
    drop_remainder=False,
    num_parallel_calls=tf.data.AUTOTUNE,
    epoch=None,
):
    """A `tf.data.Dataset` of `({"token_ids", "padding_mask"}, labels)`.

    Texts are tokenized in the pipeline (batch-wise, with the tokenizer's TF
    ops), truncated to `seq_len` tokens (the end is cut) and right-padded
    with the tokenizer's `pad_token_id`. No start or end token is added.

    Args:
        texts: a sequence of `str` (one example each).
        labels: for single-label data, a sequence of class ids (ints); for
            multi-label data, a 2-D array `[num_examples, num_labels]` of 0/1
            (multi-hot). `LabelVocabulary.encode` produces both.
        tokenizer: a klm tokenizer (or any keras-hub tokenizer with
            `pad_token_id`).
        seq_len: int >= 1. The padded length.
        batch_size: int >= 1.
        shuffle: bool. Shuffle all examples each epoch (seeded).
        seed: int. The shuffle seed.
        drop_remainder: bool. Drop the last partial batch (static batch dim).
        num_parallel_calls: parallelism of the tokenizing map.
        epoch: int or `None`. With `shuffle`, yield the order of this
            (0-based) epoch on every iteration (a NumPy permutation seeded by
            `(seed, epoch)`), so a run resumed mid-training sees the batches
            the uninterrupted run would. `None`: tf.data's seeded reshuffle
            each iteration.

    Returns:
        A dataset of `(features, labels)`: `features["token_ids"]` `int32`
        `[batch, seq_len]`, `features["padding_mask"]` `bool`
        `[batch, seq_len]` (true on real tokens), and labels `int32 [batch]`
        or `float32 [batch, num_labels]`.

    Raises:
        DataError: different numbers of texts and labels, or no examples.
        ConfigError: bad `seq_len` or `batch_size`.

    Example:

    ```python
    ds = classification_dataset(
        ["a fine film", "dull"], [1, 0], tokenizer, seq_len=8, batch_size=2
    )
    features, labels = next(iter(ds))
    ```
    """
    if isinstance(seq_len, bool) or not isinstance(seq_len, (int, np.integer)) or seq_len < 1:
        raise ConfigError(f"Expected --seq-len (seq_len) to be an integer >= 1. Received: seq_len={seq_len!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ConfigError(
            f"Expected --batch-size (batch_size) to be an integer >= 1. Received: batch_size={batch_size!r}"
        )
    texts = list(texts)
    labels = np.asarray(labels)
    if len(texts) != len(labels):
        raise DataError(f"Expected as many labels as texts. Received: {len(texts)} texts and {len(labels)} labels")
    if not texts:
        raise DataError("Expected at least one example. Received: no texts")
    if labels.ndim == 1:
        if not np.issubdtype(labels.dtype, np.integer):
            raise DataError(
                f"Expected integer class ids for single-label data (see LabelVocabulary.encode). "
                f"Received: labels of dtype {labels.dtype}"
            )
        labels = labels.astype(np.int32)
    elif labels.ndim == 2:
        labels = labels.astype(np.float32)
    else:
        raise DataError(f"Expected labels of shape [n] or [n, num_labels]. Received: shape {labels.shape}")
    pad_id = tokenizer.pad_token_id
    seq_len = int(seq_len)

    def encode(batch_texts, batch_labels):
        token_ids = tokenizer.tokenize(batch_texts)
        if isinstance(token_ids, tf.RaggedTensor):
            token_ids = token_ids[:, :seq_len]
            lengths = token_ids.row_lengths()
            # The static batch size (known with drop_remainder) is kept.
            shape = [batch_texts.shape[0], seq_len]
            token_ids = token_ids.to_tensor(default_value=tf.cast(pad_id, token_ids.dtype), shape=shape)
        else:  # A tokenizer with its own sequence_length returns dense ids.
            token_ids = token_ids[:, :seq_len]
            lengths = tf.reduce_sum(tf.cast(token_ids != pad_id, tf.int64), axis=-1)
        token_ids = tf.cast(token_ids, tf.int32)
        padding_mask = tf.sequence_mask(lengths, seq_len)
        return {"token_ids": token_ids, "padding_mask": padding_mask}, batch_labels

    if shuffle and epoch is not None:
        order = np.random.default_rng([int(seed), int(epoch)]).permutation(len(texts))
        texts, labels = [texts[i] for i in order], labels[order]
    dataset = tf.data.Dataset.from_tensor_slices((tf.constant(texts, dtype=tf.string), labels))
    if shuffle and epoch is None:
        # A NumPy-seeded permutation per epoch would need a generator; the
        # examples fit in memory here, so tf.data's seeded shuffle is used.
        dataset = dataset.shuffle(len(texts), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    dataset = dataset.map(encode, num_parallel_calls=num_parallel_calls, deterministic=True)
    return without_autotune(dataset.prefetch(tf.data.AUTOTUNE))
