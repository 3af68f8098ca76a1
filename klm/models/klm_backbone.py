"""The klm causal Transformer backbone."""

import math

import keras
from keras_hub.layers import PositionEmbedding, SinePositionEncoding
from keras_hub.models import Backbone

from klm.layers.decoder_block import DecoderBlock
from klm.layers.token_embedding import TokenEmbedding
from klm.models.describe import ParameterCountRepr

POSITION_ENCODINGS = ("sinusoidal", "learned", "rotary")
INITIALIZATIONS = ("gpt", "pytorch")


def _initializers(initialization):
    """(embeddings, kernel, qkv) initializers of an initialization scheme.

    `"gpt"`: GPT-2's normal(0, 0.02) everywhere. `"pytorch"`: the seed's
    PyTorch model: embedding and decoder uniform(-0.1, 0.1) (its
    `init_weights`), attention in-projection Xavier-uniform, every other
    kernel `nn.Linear`'s default kaiming-uniform(a=sqrt(5)), i.e.
    uniform(+-1/sqrt(fan_in)), feed-forward biases uniform(+-1/sqrt(fan_in))
    too, and (see `KlmBackbone.__init__`) every block a copy of the first.
    With SGD at lr 5 the scheme matters: the seed preset trains to the seed's
    perplexity only with the seed's init.
    """
    if initialization == "pytorch":
        return (
            keras.initializers.RandomUniform(-0.1, 0.1),
            keras.initializers.VarianceScaling(scale=1.0 / 3.0, mode="fan_in", distribution="uniform"),
            keras.initializers.GlorotUniform(),
        )
    normal = keras.initializers.RandomNormal(stddev=0.02)
    return normal, normal, None


def segment_attention(segment_ids):
    """`(attention_mask, positions)` of packed sequences.

    Args:
        segment_ids: int tensor `(batch, seq)`: `1, 2, ...` per packed
            example, `0` for padding.

    Returns:
        `attention_mask`, bool `(batch, seq, seq)`: query `i` may see key `j`
        when `j <= i` and both belong to the same segment (padding sees
        padding, so no row is empty); `positions`, int32 `(batch, seq)`: the
        index of each token within its own example.

    Example:
    ```python
    mask, positions = segment_attention(np.array([[1, 1, 2, 2, 2, 0]]))
    # positions [[0, 1, 0, 1, 2, 0]]
    ```
    """
    segments = keras.ops.cast(segment_ids, "int32")
    length = keras.ops.shape(segments)[1]
    index = keras.ops.arange(length)
    causal = keras.ops.expand_dims(index, 1) >= keras.ops.expand_dims(index, 0)  # (seq, seq)
    same = keras.ops.equal(keras.ops.expand_dims(segments, 2), keras.ops.expand_dims(segments, 1))
    attention_mask = keras.ops.logical_and(same, keras.ops.expand_dims(causal, 0))
    positions = keras.ops.sum(keras.ops.cast(attention_mask, "int32"), axis=-1) - 1
    return attention_mask, positions


@keras.saving.register_keras_serializable(package="klm")
class KlmBackbone(ParameterCountRepr, Backbone):
    """A decoder-only (causal) Transformer: token ids -> hidden states.

    The same class expresses the seed's model (post-LN, ReLU, sinusoidal
    positions, embeddings scaled by `sqrt(hidden_dim)`, untied output with a
    bias) and GPT-style models (pre-LN, GELU, learned or rotary positions, tied
    embeddings). Named configurations live in `klm.models.presets`.

    The output projection lives in `token_embedding` (a `TokenEmbedding`,
    called with `reverse=True`) so that tied and untied models share one code
    path and the classifier can reuse a pretrained backbone unchanged.

    Args:
        vocabulary_size: int. Size of the token vocabulary.
        num_layers: int. Number of decoder blocks.
        num_heads: int. Attention heads per block.
        hidden_dim: int. Model width (`d_model`).
        intermediate_dim: int. Feed-forward width.
        dropout: float. Dropout after embeddings, on residual branches and in
            the feed-forward network.
        attention_dropout: float or `None`. Dropout on attention probabilities;
            `None` uses `dropout` (as PyTorch's encoder layer does).
        max_sequence_length: int. Longest sequence (learned positions need it;
            sinusoidal and rotary encodings extrapolate).
        position_encoding: `"sinusoidal"`, `"learned"` or `"rotary"`.
        normalize_first: bool. Pre-LN (`True`) or post-LN (`False`) blocks.
        activation: str. Feed-forward activation.
        layer_norm_epsilon: float.
        tie_embeddings: bool. Share input embedding and output projection.
        scale_embeddings: bool. Multiply embeddings by `sqrt(hidden_dim)`.
        output_bias: bool. Bias on the output projection.
        initialization: `"gpt"` (normal 0.02) or `"pytorch"` (the seed's
            PyTorch initialisation).
        dtype: dtype policy for the whole model.

    Inputs: a dict with `"token_ids"` and `"padding_mask"` (int, `(batch,
    seq)`; right-padded, so the causal mask alone keeps real tokens off the
    padding), and optionally `"segment_ids"` for *packed* sequences (several
    examples in one row, `klm finetune --task sft --packing`): int `(batch,
    seq)`, `1, 2, ...` for the tokens of the 1st, 2nd, ... example, `0` for
    padding. With it, attention is causal *within* each example only (a
    token never sees another example) and positions restart at 0 with each
    example (learned, sinusoidal and rotary alike), so an example's logits
    are the same packed or alone. The segment mask is an explicit
    `(batch, seq, seq)` mask, so that path does not use the fused causal
    kernel; without `"segment_ids"` the model is unchanged (saved models,
    exported graphs and the `{"token_ids", "padding_mask"}` interface).

    Examples:
    ```python
    backbone = klm.models.KlmBackbone(
        vocabulary_size=1000, num_layers=2, num_heads=2,
        hidden_dim=64, intermediate_dim=128,
    )
    hidden = backbone({
        "token_ids": np.ones((1, 12), "int32"),
        "padding_mask": np.ones((1, 12), "int32"),
    })  # (1, 12, 64)
    # Two examples packed in one row: 5 + 4 tokens, then padding.
    packed = backbone({
        "token_ids": np.ones((1, 12), "int32"),
        "padding_mask": np.array([[1] * 9 + [0] * 3], "int32"),
        "segment_ids": np.array([[1] * 5 + [2] * 4 + [0] * 3], "int32"),
    })
    ```
    """

    def __init__(
        self,
        vocabulary_size,
        num_layers,
        num_heads,
        hidden_dim,
        intermediate_dim,
        dropout=0.1,
        attention_dropout=None,
        max_sequence_length=1024,
        position_encoding="learned",
        normalize_first=True,
        activation="gelu",
        layer_norm_epsilon=1e-5,
        tie_embeddings=True,
        scale_embeddings=False,
        output_bias=False,
        initialization="gpt",
        dtype=None,
        **kwargs,
    ):
        if position_encoding not in POSITION_ENCODINGS:
            raise ValueError(
                f"Expected position_encoding in {POSITION_ENCODINGS}. Received: position_encoding={position_encoding!r}"
            )
        if hidden_dim % num_heads != 0:
            raise ValueError(
                "Expected hidden_dim to be divisible by num_heads. "
                f"Received: hidden_dim={hidden_dim}, num_heads={num_heads}"
            )
        if initialization not in INITIALIZATIONS:
            raise ValueError(
                f"Expected initialization in {INITIALIZATIONS}. Received: initialization={initialization!r}"
            )
        if attention_dropout is None:
            attention_dropout = dropout
        embeddings_initializer, kernel_initializer, qkv_initializer = _initializers(initialization)

        # === Layers ===
        self.token_embedding = TokenEmbedding(
            input_dim=vocabulary_size,
            output_dim=hidden_dim,
            tie_weights=tie_embeddings,
            embeddings_scale=math.sqrt(hidden_dim) if scale_embeddings else 1.0,
            use_output_bias=output_bias,
            embeddings_initializer=embeddings_initializer,
            dtype=dtype,
            name="token_embedding",
        )
        if position_encoding == "learned":
            self.position_embedding = PositionEmbedding(
                sequence_length=max_sequence_length,
                initializer=keras.initializers.RandomNormal(stddev=0.02),
                dtype=dtype,
                name="position_embedding",
            )
        elif position_encoding == "sinusoidal":
            self.position_embedding = SinePositionEncoding(dtype=dtype, name="position_embedding")
        else:
            self.position_embedding = None  # rotary: applied inside attention
        # Only additive encodings need the Add layer (an unused layer would be
        # left unbuilt and confuse Keras's build checks).
        self.embeddings_add = (
            keras.layers.Add(dtype=dtype, name="embeddings_add") if self.position_embedding is not None else None
        )
        self.embeddings_dropout = keras.layers.Dropout(dropout, dtype=dtype, name="embeddings_dropout")
        self.transformer_layers = [
            DecoderBlock(
                num_heads=num_heads,
                intermediate_dim=intermediate_dim,
                dropout=dropout,
                attention_dropout=attention_dropout,
                activation=activation,
                normalize_first=normalize_first,
                layer_norm_epsilon=layer_norm_epsilon,
                use_rotary=position_encoding == "rotary",
                kernel_initializer=kernel_initializer,
                qkv_initializer=qkv_initializer,
                feedforward_bias_initialization="fan_in_uniform" if initialization == "pytorch" else "zeros",
                dtype=dtype,
                name=f"transformer_layer_{i}",
            )
            for i in range(num_layers)
        ]
        # Post-LN blocks already end in a LayerNorm; pre-LN needs a final one.
        self.layer_norm = (
            keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, dtype=dtype, name="layer_norm")
            if normalize_first
            else None
        )

        # === Functional Model ===
        token_id_input = keras.Input(shape=(None,), dtype="int32", name="token_ids")
        padding_mask_input = keras.Input(shape=(None,), dtype="int32", name="padding_mask")
        x = self.embed(token_id_input)
        for transformer_layer in self.transformer_layers:
            x = transformer_layer(x)
        if self.layer_norm is not None:
            x = self.layer_norm(x)
        super().__init__(
            inputs={"token_ids": token_id_input, "padding_mask": padding_mask_input},
            outputs=x,
            dtype=dtype,
            **kwargs,
        )
        if initialization == "pytorch":
            # `nn.TransformerEncoder` deep-copies one encoder layer, so all of
            # the seed's layers start identical. Measured on WikiText-2 (seed
            # reference, 200 SGD steps): independently drawn layers train
            # ~0.1 nats worse early on. Loading a checkpoint overwrites this.
            first = self.transformer_layers[0].get_weights()
            for transformer_layer in self.transformer_layers[1:]:
                transformer_layer.set_weights(first)

        # === Config ===
        self.vocabulary_size = vocabulary_size
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.hidden_dim = hidden_dim
        self.intermediate_dim = intermediate_dim
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.max_sequence_length = max_sequence_length
        self.position_encoding = position_encoding
        self.normalize_first = normalize_first
        self.activation = activation
        self.layer_norm_epsilon = layer_norm_epsilon
        self.tie_embeddings = tie_embeddings
        self.scale_embeddings = scale_embeddings
        self.output_bias = output_bias
        self.initialization = initialization

    def call(self, inputs, training=None, mask=None, **kwargs):
        if isinstance(inputs, dict) and "segment_ids" in inputs:
            return self.call_with_segments(inputs["token_ids"], inputs["segment_ids"], training=training)
        return super().call(inputs, training=training, mask=mask, **kwargs)

    def call_with_segments(self, token_ids, segment_ids, training=None):
        """Hidden states of packed sequences, `(batch, seq, hidden)`.

        Args:
            token_ids: int tensor `(batch, seq)`.
            segment_ids: int tensor `(batch, seq)`: `1, 2, ...` per packed
                example, `0` for padding (see the class docstring).
            training: bool.
        """
        attention_mask, positions = segment_attention(segment_ids)
        x = self.embed(token_ids, training=training, positions=positions)
        rotary_positions = positions if self.position_encoding == "rotary" else None
        for transformer_layer in self.transformer_layers:
            x = transformer_layer(x, training=training, attention_mask=attention_mask, positions=rotary_positions)
        if self.layer_norm is not None:
            x = self.layer_norm(x)
        return x

    def embed(self, token_ids, start_index=0, training=None, positions=None):
        """Token embedding + position encoding + dropout, `(batch, seq, hidden)`.

        Shared by the functional graph and cached decoding (`start_index` is
        the absolute position of `token_ids[:, 0]`); `positions` (int,
        `(batch, seq)`) gives each token its own position instead (packed
        sequences).
        """
        x = self.token_embedding(token_ids)  # (batch, seq, hidden)
        if self.position_embedding is not None:
            if positions is not None:
                if self.position_encoding == "sinusoidal":
                    positions = keras.ops.cast(positions, self.position_embedding.compute_dtype)
                position_vectors = self.position_embedding(x, positions=positions)
            else:
                position_vectors = self.position_embedding(x, start_index=start_index)
            x = self.embeddings_add((x, position_vectors))
        if training is False:
            # Cached decoding says so explicitly and saves a layer call per
            # token. (The functional graph is built with `training=None` and
            # keeps the dropout layer, which `fit` then runs in training mode.)
            return x
        return self.embeddings_dropout(x, training=training)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "num_layers": self.num_layers,
                "num_heads": self.num_heads,
                "hidden_dim": self.hidden_dim,
                "intermediate_dim": self.intermediate_dim,
                "dropout": self.dropout,
                "attention_dropout": self.attention_dropout,
                "max_sequence_length": self.max_sequence_length,
                "position_encoding": self.position_encoding,
                "normalize_first": self.normalize_first,
                "activation": self.activation,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "tie_embeddings": self.tie_embeddings,
                "scale_embeddings": self.scale_embeddings,
                "output_bias": self.output_bias,
                "initialization": self.initialization,
            }
        )
        return config
