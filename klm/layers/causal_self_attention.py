"""Multi-head causal self-attention with a key/value cache."""

import keras
from keras import ops
from keras_hub.layers import RotaryEmbedding

from klm import backend
from klm.layers.fused_dense import FusedDense
from klm.layers.initializers import fresh_initializer


def decoding_call(layer, inputs, **kwargs):
    """`layer(inputs, **kwargs)` in the KV-cache decoding step, without Keras's per-call bookkeeping.

    A built layer whose inputs already have its compute dtype gets the same
    numbers from `layer.call` as from `layer(...)` (which would only cast the
    inputs to that dtype and open name and autocast scopes; klm's dense layers
    cast their weights themselves, LayerNormalization does not autocast). On
    PyTorch, which runs the step eagerly, `Layer.__call__` costs more than
    one token's arithmetic in a small layer. Quantized and LoRA layers, and
    any other case, go through `layer(...)`.
    """
    if (
        layer.built
        and getattr(layer, "quantization_mode", None) is None
        and not getattr(layer, "lora_enabled", False)
        and keras.backend.standardize_dtype(inputs.dtype) == layer.compute_dtype
    ):
        return layer.call(inputs, **kwargs)
    return layer(inputs, **kwargs)


@keras.saving.register_keras_serializable(package="klm")
class CausalSelfAttention(keras.layers.Layer):
    """Multi-head causal self-attention with an optional key/value cache.

    Written for klm rather than reusing `keras_hub`'s
    `CachedMultiHeadAttention` (a `keras.layers.MultiHeadAttention` subclass)
    because that layer projects queries, keys and values with three separate
    `EinsumDense` layers and builds an explicit causal mask. Here one fused
    `Dense` produces q, k and v (one matmul instead of three; the same
    parameter layout as PyTorch's `nn.MultiheadAttention.in_proj_weight`), and
    attention goes through `keras.ops.dot_product_attention` with
    `is_causal=True`, which lets each backend pick a fused kernel (PyTorch
    SDPA, cuDNN flash attention under JAX on GPU).

    Padding is assumed to be trailing (right-padded sequences, as klm's
    pipelines produce): under a causal mask a real token never attends to a
    later position, so padded keys need no extra mask and the fused kernel
    stays usable.

    Args:
        num_heads: int. Number of attention heads; must divide the hidden size.
        dropout: float. Dropout on the attention probabilities (the seed's
            `nn.MultiheadAttention(dropout=...)`). When it is non-zero and the
            layer is training, PyTorch runs its fused SDPA kernel with
            `dropout_p`, and JAX and TensorFlow compute softmax attention
            explicitly so that the probabilities can be dropped; otherwise
            every backend takes the fused op (`klm.backend.choose_attention_path`
            says which path each configuration takes).
        use_rotary: bool. Apply rotary position embeddings to q and k.
        rotary_max_wavelength: int. Rotary base wavelength.
        kernel_initializer: initializer for the projection kernels.
        qkv_initializer: initializer for the fused q/k/v kernel; `None` uses
            `kernel_initializer` (PyTorch initialises `in_proj_weight` with
            Xavier but the output projection like any `nn.Linear`).
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: float tensor `(batch, seq, hidden)`.
        cache: optional float tensor `(batch, 2, max_len, heads, head_dim)`,
            keys and values of earlier positions. Continue with the cache
            returned: on PyTorch the given one is updated in place (see
            `klm.backend.cached_attention`).
        cache_update_index: int or int tensor, position of `inputs[:, 0]` in
            the whole sequence (required with `cache`).
        training: bool.
        attention_mask: optional bool tensor `(batch, seq, seq)`: query `i`
            may attend to key `j` where it is `True`. It replaces the plain
            causal mask (packed sequences: causal *within* each example, see
            `KlmBackbone`); every row must allow at least one key. `None`
            (the default) keeps the fused causal kernel.
        positions: optional int tensor `(batch, seq)`, the rotary position of
            each token (positions restarting per packed example); `None`:
            `0 .. seq - 1` (plus `cache_update_index`).

    Returns:
        `(batch, seq, hidden)` outputs, or `(outputs, cache)` when a cache is
        given.

    Examples:
    ```python
    attention = klm.layers.CausalSelfAttention(num_heads=2)
    outputs = attention(np.random.rand(1, 5, 8).astype("float32"))
    ```
    """

    def __init__(
        self,
        num_heads,
        dropout=0.0,
        use_rotary=False,
        rotary_max_wavelength=10000,
        kernel_initializer="glorot_uniform",
        qkv_initializer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.dropout = dropout
        self.use_rotary = use_rotary
        self.rotary_max_wavelength = rotary_max_wavelength
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.qkv_initializer = keras.initializers.get(qkv_initializer) if qkv_initializer else None

    def build(self, inputs_shape):
        hidden_dim = inputs_shape[-1]
        if hidden_dim % self.num_heads != 0:
            raise ValueError(
                "Expected the hidden size to be divisible by num_heads. "
                f"Received: hidden_dim={hidden_dim}, num_heads={self.num_heads}"
            )
        self.hidden_dim = hidden_dim
        self.head_dim = hidden_dim // self.num_heads
        self.qkv_dense = FusedDense(
            3 * hidden_dim,
            kernel_initializer=fresh_initializer(self.qkv_initializer or self.kernel_initializer),
            dtype=self.dtype_policy,
            name="qkv",
        )
        self.qkv_dense.build(inputs_shape)
        self.output_dense = FusedDense(
            hidden_dim,
            kernel_initializer=fresh_initializer(self.kernel_initializer),
            dtype=self.dtype_policy,
            name="output",
        )
        self.output_dense.build(inputs_shape)
        if self.use_rotary:
            self.rotary_embedding = RotaryEmbedding(
                max_wavelength=self.rotary_max_wavelength,
                dtype=self.dtype_policy,
                name="rotary",
            )
        self.probabilities_dropout = keras.layers.Dropout(
            self.dropout, dtype=self.dtype_policy, name="probabilities_dropout"
        )
        self.built = True

    def call(self, inputs, cache=None, cache_update_index=None, training=None, attention_mask=None, positions=None):
        batch_size, seq_len = ops.shape(inputs)[0], ops.shape(inputs)[1]
        if cache is not None:
            return self._call_with_cache(inputs, cache, cache_update_index)
        qkv = self.qkv_dense(inputs)  # (batch, seq, 3 * hidden)
        qkv = ops.reshape(qkv, (batch_size, seq_len, 3, self.num_heads, self.head_dim))
        query, key, value = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # (batch, seq, heads, head_dim)

        start_index = 0 if cache_update_index is None else cache_update_index
        if self.use_rotary and positions is not None:
            query = self.rotary_embedding(query, positions=positions)
            key = self.rotary_embedding(key, positions=positions)
        elif self.use_rotary:
            query = self.rotary_embedding(query, start_index=start_index)
            key = self.rotary_embedding(key, start_index=start_index)

        path = backend.attention_path(self.dropout, training, masked=attention_mask is not None)
        if path == "explicit-dropout":
            outputs = self._attention_with_dropout(query, key, value, training, attention_mask)
        elif path.startswith("sdpa-dropout"):  # the backend's fused kernel draws the dropout mask itself
            outputs = backend.dropout_attention(query, key, value, self.dropout, attention_mask)
        elif attention_mask is not None:
            mask = ops.expand_dims(ops.cast(attention_mask, "bool"), axis=1)  # (batch, 1, seq, seq)
            outputs = ops.dot_product_attention(query, key, value, mask=mask)
        elif path == "masked-causal":
            index = ops.arange(seq_len)
            causal = ops.expand_dims(index, 1) >= ops.expand_dims(index, 0)  # (seq, seq)
            outputs = ops.dot_product_attention(query, key, value, mask=ops.expand_dims(causal, (0, 1)))
        else:
            outputs = ops.dot_product_attention(query, key, value, is_causal=True)

        outputs = ops.reshape(outputs, (batch_size, seq_len, self.hidden_dim))
        return self.output_dense(outputs)

    def _call_with_cache(self, inputs, cache, cache_update_index):
        """The decoding step: `(outputs, cache)` (see `klm.backend.cached_attention`)."""
        if cache_update_index is None:
            raise ValueError("`cache_update_index` is required when `cache` is given.")
        batch_size, seq_len = ops.shape(inputs)[0], ops.shape(inputs)[1]
        qkv = decoding_call(self.qkv_dense, inputs)  # (batch, seq, 3 * hidden)
        qkv = ops.reshape(qkv, (batch_size, seq_len, 3, self.num_heads, self.head_dim))
        # Rotary positions for queries and keys in one call (elementwise, so
        # the same numbers as two calls), then write this step's keys/values
        # into the cache and attend over it.
        if self.use_rotary:
            query_key = decoding_call(self.rotary_embedding, qkv[:, :, :2], start_index=cache_update_index)
            query, key = query_key[:, :, 0], query_key[:, :, 1]
        else:
            query, key = qkv[:, :, 0], qkv[:, :, 1]
        outputs, cache = backend.cached_attention(query, key, qkv[:, :, 2], cache, cache_update_index)
        outputs = ops.reshape(outputs, (batch_size, seq_len, self.hidden_dim))
        return decoding_call(self.output_dense, outputs), cache

    def _attention_with_dropout(self, query, key, value, training, attention_mask=None):
        # Explicit softmax attention, used only when attention dropout is on.
        seq_len = ops.shape(query)[1]
        scale = ops.cast(1.0 / (self.head_dim**0.5), query.dtype)
        scores = ops.einsum("bqhd,bkhd->bhqk", query * scale, key)  # (batch, heads, seq, seq)
        if attention_mask is None:
            allowed = ops.tril(ops.ones((seq_len, seq_len), dtype="bool"))[None, None]
        else:
            allowed = ops.expand_dims(ops.cast(attention_mask, "bool"), axis=1)
        scores = ops.where(allowed, scores, ops.cast(-1e9, scores.dtype))
        probabilities = ops.softmax(ops.cast(scores, "float32"), axis=-1)
        probabilities = self.probabilities_dropout(ops.cast(probabilities, query.dtype), training=training)
        return ops.einsum("bhqk,bkhd->bqhd", probabilities, value)  # (batch, seq, heads, head_dim)

    def compute_output_spec(
        self, inputs, cache=None, cache_update_index=None, training=None, attention_mask=None, positions=None
    ):
        outputs = keras.KerasTensor(inputs.shape, dtype=self.compute_dtype)
        if cache is not None:
            return outputs, keras.KerasTensor(cache.shape, dtype=self.compute_dtype)
        return outputs

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "dropout": self.dropout,
                "use_rotary": self.use_rotary,
                "rotary_max_wavelength": self.rotary_max_wavelength,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "qkv_initializer": (
                    keras.initializers.serialize(self.qkv_initializer) if self.qkv_initializer else None
                ),
            }
        )
        return config
