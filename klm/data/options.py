"""tf.data options shared by klm's training and evaluation pipelines."""


def without_autotune(dataset):
    """Returns `dataset` with tf.data's autotuning turned off.

    klm's batches are cheap to make (a gather from an in-memory constant, or
    a memory-mapped read), so autotuning has nothing to win, and its
    optimisation thread costs a lot on a small CPU: deleting an iterator
    waits for that thread, and while the model's own threads keep the cores
    busy the wait took 1-5 s at the end of a `fit` segment on PyTorch (2-core
    CPU, reference preset; a segment is 200 steps, ~27 s), ~0.1 s in a
    TensorFlow-only loop. Without autotuning, `num_parallel_calls=AUTOTUNE`
    runs min(16, cores) calls in parallel and `prefetch(AUTOTUNE)` keeps its
    own buffer-size heuristic, so the input still overlaps the step.

    Args:
        dataset: a `tf.data.Dataset`.

    Returns:
        The same dataset with `options.autotune.enabled = False`.
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)
