"""SFT batches: padded (bucketed by length) or packed, deterministic per (seed, epoch).

Padded (the default): each batch holds `batch_size` examples padded to its
longest, rounded up to a multiple of `PAD_MULTIPLE`, and a short last batch
gets empty rows, so compiled backends (JAX, TensorFlow's XLA) see one shape
per length bucket (each new shape is compiled once); padded positions have
loss weight 0. Examples are shuffled
per epoch, then sorted by length within windows of `BUCKET_BATCHES`
batches, so a batch's examples have similar lengths, and the batches are
shuffled again.

Packed (`--packing`): examples are placed, first fit in a seeded random
order, into rows of `seq_len` positions; `segment_ids` (1, 2, ... per
example, 0 for padding) make attention stay within each example and
positions restart per example (`KlmBackbone`). Rows are packed once per run
and shuffled per epoch, so every epoch has the same number of batches.
Cost: the segment mask is an explicit `(batch, seq, seq)` mask, so attention
runs as plain matmuls instead of the fused causal kernel; it pays when
examples are much shorter than `seq_len` (less padding computed).

A batch is `({"token_ids", "padding_mask"[, "segment_ids"]}, targets,
weights)`, all `(batch, length)`: `model.fit` passes `weights` as
`sample_weight`.
"""

import numpy as np

from klm.data.options import without_autotune

PAD_MULTIPLE = 8
BUCKET_BATCHES = 50


def epoch_rng(seed, epoch):
    return np.random.default_rng([int(seed), int(epoch), 5_318])


def _pad_length(longest, seq_len):
    return int(min(seq_len, -(-longest // PAD_MULTIPLE) * PAD_MULTIPLE))


def padded_batch(examples, pad_id, seq_len, train_on_prompt=False, batch_size=None):
    """One padded batch of `EncodedExample`s (numpy), padded to the longest (rounded up).

    With `batch_size`, a short (last) batch gets empty rows (no tokens, no
    loss), so that every batch has the same number of rows: compiled
    backends then see one shape per length bucket.
    """
    rows = [example.arrays(train_on_prompt) for example in examples]
    length = _pad_length(max(len(x) for x, _, _ in rows), seq_len)
    count = max(len(rows), batch_size or 0)
    token_ids = np.full((count, length), pad_id, "int32")
    targets = np.full((count, length), pad_id, "int32")
    weights = np.zeros((count, length), "float32")
    padding_mask = np.zeros((count, length), "int32")
    for row, (x, y, w) in enumerate(rows):
        token_ids[row, : len(x)] = x
        targets[row, : len(y)] = y
        weights[row, : len(w)] = w
        padding_mask[row, : len(x)] = 1
    return {"token_ids": token_ids, "padding_mask": padding_mask}, targets, weights


def padded_batches(examples, batch_size, pad_id, seq_len, seed=None, epoch=0, train_on_prompt=False):
    """The padded batches of one epoch (`seed=None`: the examples' order, no shuffling)."""
    order = np.arange(len(examples))
    if seed is not None:
        rng = epoch_rng(seed, epoch)
        order = rng.permutation(len(examples))
        window = batch_size * BUCKET_BATCHES
        chunks = []
        for start in range(0, len(order), window):
            chunk = order[start : start + window]
            lengths = np.array([len(examples[i].token_ids) for i in chunk])
            chunks.append(chunk[np.argsort(lengths, kind="stable")])
        order = np.concatenate(chunks) if chunks else order
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    if seed is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return [
        padded_batch([examples[i] for i in batch], pad_id, seq_len, train_on_prompt, batch_size=batch_size)
        for batch in batches
    ]


def pack_rows(examples, seq_len, seed=0):
    """Packs examples into rows of `seq_len` positions: a list of lists of example indices.

    First fit over a seeded random order (each example takes `len - 1`
    positions: its inputs); the search looks at the 64 newest open rows,
    which keeps packing linear in the number of examples.
    """
    rng = np.random.default_rng([int(seed), 7_919])
    order = rng.permutation(len(examples))
    rows, free = [], []
    for index in order:
        need = len(examples[index].token_ids) - 1
        placed = False
        for candidate in range(len(rows) - 1, max(len(rows) - 65, -1), -1):
            if free[candidate] >= need:
                rows[candidate].append(int(index))
                free[candidate] -= need
                placed = True
                break
        if not placed:
            rows.append([int(index)])
            free.append(seq_len - need)
    return rows


def packed_batch(examples, rows, pad_id, seq_len, train_on_prompt=False, batch_size=None):
    """One packed batch (numpy): `rows` lists the example indices of each row (empty rows up to `batch_size`)."""
    count = max(len(rows), batch_size or 0)
    token_ids = np.full((count, seq_len), pad_id, "int32")
    targets = np.full((count, seq_len), pad_id, "int32")
    weights = np.zeros((count, seq_len), "float32")
    segment_ids = np.zeros((count, seq_len), "int32")
    for row, members in enumerate(rows):
        position = 0
        for segment, index in enumerate(members, start=1):
            x, y, w = examples[index].arrays(train_on_prompt)
            end = position + len(x)
            token_ids[row, position:end] = x
            targets[row, position:end] = y
            weights[row, position:end] = w
            segment_ids[row, position:end] = segment
            position = end
    padding_mask = (segment_ids > 0).astype("int32")
    return {"token_ids": token_ids, "padding_mask": padding_mask, "segment_ids": segment_ids}, targets, weights


def packed_batches(examples, rows, batch_size, pad_id, seq_len, seed, epoch, train_on_prompt=False):
    """The packed batches of one epoch (rows shuffled per `(seed, epoch)`)."""
    order = epoch_rng(seed, epoch).permutation(len(rows))
    return [
        packed_batch(
            examples, [rows[i] for i in order[start : start + batch_size]], pad_id, seq_len, train_on_prompt
        )  # rows are all seq_len long: only the last batch may be shorter
        for start in range(0, len(order), batch_size)
    ]


def padding_fraction(batches):
    """Share of the batches' positions that are padding (no token)."""
    total = sum(batch[0]["padding_mask"].size for batch in batches)
    real = sum(int(batch[0]["padding_mask"].sum()) for batch in batches)
    return 0.0 if total == 0 else 1.0 - real / total


def to_dataset(batches):
    """A `tf.data.Dataset` of the given numpy batches, in order."""
    import tensorflow as tf

    if not batches:
        raise ValueError("Expected at least one batch. Received: batches=[]")
    keys = list(batches[0][0])
    signature = (
        {key: tf.TensorSpec((None, None), tf.int32) for key in keys},
        tf.TensorSpec((None, None), tf.int32),
        tf.TensorSpec((None, None), tf.float32),
    )

    def generate():
        yield from batches

    return without_autotune(tf.data.Dataset.from_generator(generate, output_signature=signature))
