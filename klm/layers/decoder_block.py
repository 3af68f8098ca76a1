"""One Transformer decoder block: causal self-attention + feed-forward."""

import keras

from klm.layers.causal_self_attention import CausalSelfAttention, decoding_call
from klm.layers.fused_dense import FusedDense
from klm.layers.initializers import fresh_initializer


@keras.saving.register_keras_serializable(package="klm")
class DecoderBlock(keras.layers.Layer):
    """A causal Transformer block with pre- or post-LayerNorm.

    Post-LN (`normalize_first=False`) is exactly PyTorch's
    `nn.TransformerEncoderLayer` as the seed uses it:

        x = norm1(x + dropout(attention(x)))
        x = norm2(x + dropout(linear2(dropout(activation(linear1(x))))))

    Pre-LN (`normalize_first=True`) is the GPT-2 arrangement, which trains
    stably without warm-up tricks at depth:

        x = x + dropout(attention(norm1(x)))
        x = x + dropout(linear2(activation(linear1(norm2(x)))))

    keras-hub's `TransformerDecoder` offers both orders too, but klm uses its
    own block so that attention is the fused-QKV, `dot_product_attention`
    layer (`CausalSelfAttention`) and so that the parameter layout matches the
    seed's PyTorch model one to one.

    Args:
        num_heads: int. Attention heads.
        intermediate_dim: int. Feed-forward hidden size.
        dropout: float. Dropout on the residual branches and inside the
            feed-forward network.
        attention_dropout: float. Dropout on attention probabilities.
        activation: str. Feed-forward activation (`"relu"`, `"gelu"`, ...).
        normalize_first: bool. Pre-LN if `True`, post-LN if `False`.
        layer_norm_epsilon: float.
        use_rotary: bool. Rotary position embeddings in attention.
        kernel_initializer: initializer for the kernels.
        qkv_initializer: initializer for the attention's fused q/k/v kernel
            (`None`: `kernel_initializer`).
        feedforward_bias_initialization: `"zeros"` or `"fan_in_uniform"`:
            the feed-forward biases drawn from uniform(+-1/sqrt(fan_in)), as
            PyTorch's `nn.Linear` initialises them (the seed's model).
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: `(batch, seq, hidden)`.
        cache, cache_update_index: see `CausalSelfAttention`.
        training: bool.
        attention_mask, positions: optional; see `CausalSelfAttention` (packed
            sequences).

    Examples:
    ```python
    block = klm.layers.DecoderBlock(num_heads=2, intermediate_dim=32)
    outputs = block(np.random.rand(2, 5, 16).astype("float32"))
    ```
    """

    def __init__(
        self,
        num_heads,
        intermediate_dim,
        dropout=0.0,
        attention_dropout=0.0,
        activation="gelu",
        normalize_first=True,
        layer_norm_epsilon=1e-5,
        use_rotary=False,
        kernel_initializer="glorot_uniform",
        qkv_initializer=None,
        feedforward_bias_initialization="zeros",
        **kwargs,
    ):
        if feedforward_bias_initialization not in ("zeros", "fan_in_uniform"):
            raise ValueError(
                'Expected feedforward_bias_initialization in ("zeros", "fan_in_uniform"). '
                f"Received: feedforward_bias_initialization={feedforward_bias_initialization!r}"
            )
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.activation = keras.activations.get(activation)
        self.normalize_first = normalize_first
        self.layer_norm_epsilon = layer_norm_epsilon
        self.use_rotary = use_rotary
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.qkv_initializer = keras.initializers.get(qkv_initializer) if qkv_initializer else None
        self.feedforward_bias_initialization = feedforward_bias_initialization

    def _bias_initializer(self, fan_in):
        if self.feedforward_bias_initialization == "zeros":
            return "zeros"
        limit = 1.0 / fan_in**0.5
        return keras.initializers.RandomUniform(-limit, limit)

    def build(self, inputs_shape):
        hidden_dim = inputs_shape[-1]
        dtype = self.dtype_policy
        self.attention = CausalSelfAttention(
            num_heads=self.num_heads,
            dropout=self.attention_dropout,
            use_rotary=self.use_rotary,
            kernel_initializer=self.kernel_initializer,
            qkv_initializer=self.qkv_initializer,
            dtype=dtype,
            name="attention",
        )
        self.attention.build(inputs_shape)
        self.attention_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=dtype, name="attention_norm"
        )
        self.attention_norm.build(inputs_shape)
        self.attention_dropout_layer = keras.layers.Dropout(self.dropout, dtype=dtype, name="attention_dropout")
        self.feedforward_intermediate = FusedDense(
            self.intermediate_dim,
            kernel_initializer=fresh_initializer(self.kernel_initializer),
            bias_initializer=self._bias_initializer(hidden_dim),
            dtype=dtype,
            name="feedforward_intermediate",
        )
        self.feedforward_intermediate.build(inputs_shape)
        self.feedforward_inner_dropout = keras.layers.Dropout(
            self.dropout, dtype=dtype, name="feedforward_inner_dropout"
        )
        self.feedforward_output = FusedDense(
            hidden_dim,
            kernel_initializer=fresh_initializer(self.kernel_initializer),
            bias_initializer=self._bias_initializer(self.intermediate_dim),
            dtype=dtype,
            name="feedforward_output",
        )
        self.feedforward_output.build(tuple(inputs_shape[:-1]) + (self.intermediate_dim,))
        self.feedforward_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=dtype, name="feedforward_norm"
        )
        self.feedforward_norm.build(inputs_shape)
        self.feedforward_dropout = keras.layers.Dropout(self.dropout, dtype=dtype, name="feedforward_dropout")
        self.built = True

    @staticmethod
    def _dropout(layer, x, training):
        # Dropout is the identity outside training; skipping the layer call
        # there matters for eager decoding (PyTorch backend), where every
        # Keras layer call costs more than this block's arithmetic on one
        # token. Inside `fit`, `training` is True and the layer runs.
        return layer(x, training=training) if training else x

    def _feedforward(self, x, training):
        x = self.feedforward_intermediate(x)  # (batch, seq, intermediate)
        x = self.activation(x)
        # PyTorch's post-LN layer drops inside the FFN too; GPT-2 does not.
        if not self.normalize_first:
            x = self._dropout(self.feedforward_inner_dropout, x, training)
        return self.feedforward_output(x)  # (batch, seq, hidden)

    def call(self, inputs, cache=None, cache_update_index=None, training=None, attention_mask=None, positions=None):
        if cache is not None:
            return self._call_with_cache(inputs, cache, cache_update_index)
        x = inputs
        # === Self-attention ===
        attention_input = self.attention_norm(x) if self.normalize_first else x
        if attention_mask is not None:
            attended = self.attention(
                attention_input, training=training, attention_mask=attention_mask, positions=positions
            )
        else:
            attended = self.attention(attention_input, training=training)
        x = x + self._dropout(self.attention_dropout_layer, attended, training)
        if not self.normalize_first:
            x = self.attention_norm(x)
        # === Feed-forward ===
        feedforward_input = self.feedforward_norm(x) if self.normalize_first else x
        x = x + self._dropout(self.feedforward_dropout, self._feedforward(feedforward_input, training), training)
        if not self.normalize_first:
            x = self.feedforward_norm(x)
        return x

    def _call_with_cache(self, inputs, cache, cache_update_index):
        """The decoding step (no dropout): `(outputs, cache)`; see `CausalSelfAttention`."""
        x = inputs
        # === Self-attention ===
        attention_input = decoding_call(self.attention_norm, x) if self.normalize_first else x
        attended, cache = decoding_call(
            self.attention, attention_input, cache=cache, cache_update_index=cache_update_index
        )
        x = x + attended
        if not self.normalize_first:
            x = decoding_call(self.attention_norm, x)
        # === Feed-forward ===
        feedforward_input = decoding_call(self.feedforward_norm, x) if self.normalize_first else x
        hidden = self.activation(decoding_call(self.feedforward_intermediate, feedforward_input))
        x = x + decoding_call(self.feedforward_output, hidden)
        if not self.normalize_first:
            x = decoding_call(self.feedforward_norm, x)
        return x, cache

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
                "intermediate_dim": self.intermediate_dim,
                "dropout": self.dropout,
                "attention_dropout": self.attention_dropout,
                "activation": keras.activations.serialize(self.activation),
                "normalize_first": self.normalize_first,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "use_rotary": self.use_rotary,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "qkv_initializer": (
                    keras.initializers.serialize(self.qkv_initializer) if self.qkv_initializer else None
                ),
                "feedforward_bias_initialization": self.feedforward_bias_initialization,
            }
        )
        return config
