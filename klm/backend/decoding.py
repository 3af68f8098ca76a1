"""Key/value-cache decoding helpers: the per-backend half of `klm.decoding`."""


# === Key/value-cache decoding ===
#
# PyTorch runs eagerly, so a decoding step costs what its Python does: every
# Keras op and copy counts, on one token's worth of arithmetic. There the
# cache is written in place and attention calls SDPA directly on views of
# it. JAX and TensorFlow compile the step (jit, tf.function, tf.while_loop
# in exported graphs) and keep the functional updates, which XLA turns into
# in-place ones.


def decoding_scope():
    """A context manager for eager decoding loops: no autograd on PyTorch, nothing elsewhere."""
    import contextlib

    import keras

    if keras.backend.backend() == "torch":
        import torch

        return torch.no_grad()
    return contextlib.nullcontext()


def cache_index(index):
    """`index` (a position in the cache) in the form the cached attention takes best.

    On PyTorch a Python int (one read of a scalar tensor per step instead of
    one per layer, and plain slicing of the cache); elsewhere unchanged (a
    traced scalar under jit / tf.function).
    """
    import keras

    if keras.backend.backend() == "torch" and not isinstance(index, int):
        return int(index)
    return index


def cached_attention(query, key, value, cache, start_index):
    """Writes `key`/`value` into a layer's cache at `start_index` and attends over it.

    Query `i` (absolute position `start_index + i`) sees the cached keys
    `0 .. start_index + i`.

    Args:
        query, key, value: `(batch, seq, heads, head_dim)`, in the cache's dtype.
        cache: `(batch, 2, max_len, heads, head_dim)`: keys, values.
        start_index: int or scalar int tensor (see `cache_index`).

    Returns:
        `(outputs, cache)`: `(batch, seq, heads, head_dim)` and the cache
        with this step written. On PyTorch the given cache is updated in
        place (and returned); elsewhere a new tensor.
    """
    import keras
    from keras import ops

    if keras.backend.backend() == "torch" and isinstance(start_index, int):
        import torch

        seq_len = query.shape[1]
        end = start_index + seq_len
        cache[:, 0, start_index:end] = key
        cache[:, 1, start_index:end] = value
        # Attend over the filled part only: one new token then needs no mask,
        # and a prompt written from position 0 is plain causal attention.
        keys = cache[:, 0, :end].transpose(1, 2)  # (batch, heads, end, head_dim)
        values = cache[:, 1, :end].transpose(1, 2)
        mask = None
        if seq_len > 1 and start_index > 0:
            positions = torch.arange(end, device=cache.device)
            mask = positions[start_index:, None] >= positions[None, :]  # (seq, end)
        outputs = torch.nn.functional.scaled_dot_product_attention(
            query.transpose(1, 2), keys, values, attn_mask=mask, is_causal=seq_len > 1 and mask is None
        )
        return outputs.transpose(1, 2), cache
    key_cache = ops.slice_update(cache[:, 0], [0, start_index, 0, 0], key)
    value_cache = ops.slice_update(cache[:, 1], [0, start_index, 0, 0], value)
    cache = ops.stack((key_cache, value_cache), axis=1)
    # Query i (absolute position start + i) may see keys 0..start + i.
    seq_len = ops.shape(query)[1]
    query_positions = ops.arange(seq_len) + start_index
    key_positions = ops.arange(ops.shape(key_cache)[1])
    mask = ops.expand_dims(query_positions, 1) >= ops.expand_dims(key_positions, 0)
    mask = mask[None, None, :, :]  # (1, 1, seq, max_len)
    return ops.dot_product_attention(query, key_cache, value_cache, mask=mask), cache


def stack_layer_caches(cache, layer_caches):
    """The model's cache `(batch, layers, 2, max_len, heads, head_dim)` after each layer wrote its own.

    Args:
        cache: the model's cache the step started from.
        layer_caches: per layer, the `(batch, 2, max_len, heads, head_dim)`
            cache `cached_attention` returned for `cache[:, i]`.

    On PyTorch those are views of `cache` written in place, so `cache` is
    returned as is (a layer cache that is not such a view is copied in);
    elsewhere they are stacked.
    """
    import keras
    from keras import ops

    if keras.backend.backend() == "torch":
        for i, layer_cache in enumerate(layer_caches):
            target = cache[:, i]
            if layer_cache.data_ptr() != target.data_ptr() or layer_cache.stride() != target.stride():
                target.copy_(layer_cache)
        return cache
    return ops.stack(layer_caches, axis=1)


# === Compiled model functions ===


def compile_model_function(model, function, static_argnums=()):
    """`function` (which calls `model`) compiled the way keras-hub compiles `CausalLM.generate_step`.

    keras-hub's `CausalLM.make_generate_function` runs `generate_step` under
    `jax.jit` with the model's variables passed in as state (a
    `keras.StatelessScope` maps them), under `tf.function` on TensorFlow and
    eagerly under `torch.no_grad` on PyTorch. This does the same for any
    function of the model (a scoring forward pass, one decoding step), so a
    caller that drives its own loop in Python (lm-eval's stop strings) still
    runs every model call compiled. JAX and TensorFlow compile once per input
    shape: callers pad to a few bucketed shapes.

    Args:
        model: the Keras model `function` calls (its variables are read at
            each call, so later weight changes are seen).
        function: `(*args) -> outputs`, Keras ops only.
        static_argnums: positions of Python-int arguments that fix shapes
            (a cache length): compiled per value. Other int arguments (a
            cache position) are traced, so every value shares one program.

    Returns:
        A callable with `function`'s signature.
    """
    import keras

    name = keras.backend.backend()
    static_argnums = tuple(static_argnums)
    if name == "jax":
        import itertools

        import jax

        def stateless(state, *args):
            trainable, non_trainable = state
            mapping = itertools.chain(
                zip(model.trainable_variables, trainable), zip(model.non_trainable_variables, non_trainable)
            )
            with keras.StatelessScope(state_mapping=mapping):
                return function(*args)

        compiled = jax.jit(stateless, static_argnums=tuple(i + 1 for i in static_argnums))

        def call(*args):
            # `.value`, as keras-hub does, keeps a distribution's sharding.
            state = ([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables])
            return compiled(state, *args)

        return call
    if name == "tensorflow":
        import tensorflow as tf

        # XLA, as keras-hub's generate() uses by default; autograph off: `function` has no Python control flow
        # that depends on tensors.
        compiled = tf.function(function, jit_compile=True, autograph=False)

        def call(*args):
            # A Python int would be a new trace per value; as a tensor, one trace serves every position.
            args = [
                tf.constant(a, tf.int32) if isinstance(a, int) and i not in static_argnums else a
                for i, a in enumerate(args)
            ]
            return compiled(*args)

        return call

    def call(*args):
        with decoding_scope():
            return function(*args)

    return call
