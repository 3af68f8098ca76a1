"""The one workaround in the export: tracing with a core-op `slice_update`.

Why it exists: every key/value cache update in the decoding loop (klm's
`CachedMultiHeadAttention` and keras-hub's cached attention layers alike)
goes through `keras.ops.slice_update`, which Keras's TensorFlow backend
implements with `tf.compiler.tf2xla`'s `XlaDynamicUpdateSlice`. That op has
no regular kernel: it runs only through XLA's on-demand compiler, so a TF
Serving build without an XLA compiler for its device cannot run the graph
(and the TensorFlow-only check refuses any `Xla*` op).

Keras offers no public switch for this (`keras.ops.slice_update` always calls
the backend's `core.slice_update`), and the cache updates live inside
keras-hub layers that klm does not own. So `core_ops_only` swaps the
backend's `slice_update` for `slice_update_core_ops` (pad + select, core
TensorFlow ops only) while a serving function is traced, and restores it
right after. It is the only place that touches a private Keras module; if
Keras ever grows a public hook, this file is what changes.
"""


def slice_update_core_ops(inputs, start_indices, updates):
    """`keras.ops.slice_update` in core TensorFlow ops.

    Keras's TensorFlow backend uses `XlaDynamicUpdateSlice`, which runs only
    through XLA's on-demand compiler: TF Serving builds without an XLA
    compiler for their device fail on it. Pad + select does the same
    (start indices clamped so that the update fits, as XLA does).
    """
    import tensorflow as tf

    inputs = tf.convert_to_tensor(inputs)
    updates = tf.cast(tf.convert_to_tensor(updates), inputs.dtype)
    shape = tf.shape(inputs, out_type=tf.int32)
    update_shape = tf.shape(updates, out_type=tf.int32)
    starts = tf.stack([tf.cast(index, tf.int32) for index in start_indices])
    starts = tf.clip_by_value(starts, 0, shape - update_shape)
    paddings = tf.stack([starts, shape - update_shape - starts], axis=1)
    inside = tf.pad(tf.ones_like(updates, dtype=tf.int8), paddings)
    outputs = tf.where(tf.cast(inside, tf.bool), tf.pad(updates, paddings), inputs)
    outputs.set_shape(inputs.shape)
    return outputs


def core_ops_only(fn):
    """Wraps a graph function so that tracing it emits no XLA-only ops."""
    import functools

    from keras.src.backend.tensorflow import core as tf_core

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        original = tf_core.slice_update
        tf_core.slice_update = slice_update_core_ops
        try:
            return fn(*args, **kwargs)
        finally:
            tf_core.slice_update = original

    return wrapper
