"""Token embedding that doubles as the language-model output projection."""

import keras
from keras import ops
from keras_hub.layers import ReversibleEmbedding

from klm import backend
from klm.layers.initializers import fresh_initializer


@keras.saving.register_keras_serializable(package="klm")
class TokenEmbedding(ReversibleEmbedding):
    """Token embedding with optional weight tying to the output projection.

    Built on `keras_hub.layers.ReversibleEmbedding`: called normally it maps
    token ids to vectors, called with `reverse=True` it maps hidden states to
    vocabulary logits. klm adds two things the reference's model needs:

    - `embeddings_scale`: the forward output is multiplied by this constant
      (the reference multiplies by `sqrt(hidden_dim)`; GPT-style models use 1).
    - `use_output_bias`: a bias on the reverse (output) projection, as in the
      reference's untied `nn.Linear(hidden_dim, vocabulary_size)` decoder.

    Args:
        input_dim: int. Vocabulary size.
        output_dim: int. Hidden size.
        tie_weights: bool. If `True` the output projection is the transposed
            embedding matrix; if `False` it has its own weights.
        embeddings_scale: float. Multiplier applied to the embedded tokens.
        use_output_bias: bool. Whether the output projection has a bias.
        **kwargs: other `ReversibleEmbedding` / `keras.layers.Embedding`
            arguments (`embeddings_initializer`, `dtype`, `name`, ...).

    Examples:
    ```python
    embedding = klm.layers.TokenEmbedding(100, 16, tie_weights=False)
    hidden = embedding(np.array([[1, 2, 3]]))     # (1, 3, 16)
    logits = embedding(hidden, reverse=True)      # (1, 3, 100)
    ```
    """

    def __init__(
        self,
        input_dim,
        output_dim,
        tie_weights=True,
        embeddings_scale=1.0,
        use_output_bias=False,
        **kwargs,
    ):
        super().__init__(input_dim, output_dim, tie_weights=tie_weights, **kwargs)
        # Not `self.embeddings_scale`: Keras names its quantization scale variable so.
        self.embedding_multiplier = float(embeddings_scale)
        self.use_output_bias = bool(use_output_bias)

    def build(self, inputs_shape=None):
        # The parent draws the untied output projection with the embeddings'
        # own initializer instance, i.e. from the same seed: give it a copy.
        embeddings_initializer = self.embeddings_initializer
        super().build(inputs_shape)
        if not self.tie_weights and self.quantization_mode is None:  # quantized: loaded, not drawn
            self.reverse_embeddings.assign(
                fresh_initializer(embeddings_initializer)(self.reverse_embeddings.shape, self.reverse_embeddings.dtype)
            )
        if self.use_output_bias:
            self.output_bias = self.add_weight(
                shape=(self.input_dim,),
                initializer="zeros",
                name="output_bias",
                trainable=True,
            )

    @property
    def variable_serialization_spec(self):
        # The parent saves an explicit list of variables per quantization mode;
        # the output bias must be added to it or it would not be saved.
        spec = super().variable_serialization_spec
        if self.use_output_bias:
            spec = {mode: list(names) + ["output_bias"] for mode, names in spec.items()}
        return spec

    def call(self, inputs, reverse=False, training=None):
        if reverse:
            if self.logit_soft_cap is not None or self.reverse_dtype is not None:
                outputs = super().call(inputs, reverse=True)
                if self.use_output_bias:
                    outputs = ops.add(outputs, ops.cast(self.output_bias, outputs.dtype))
                return outputs
            # The vocabulary projection, most of a small model's FLOPs, in the
            # compute dtype: the parent multiplies compute-dtype (bfloat16)
            # hidden states by the float32 variable, which promotes the whole
            # matmul to float32 under mixed precision. `backend.dense` casts
            # the weights first (float32 accumulation inside the bfloat16
            # matmul) and fuses the bias into it on PyTorch.
            kernel = ops.transpose(self.embeddings) if self.tie_weights else self.reverse_embeddings
            bias = self.output_bias if self.use_output_bias else None
            return backend.dense(ops.cast(inputs, self.compute_dtype), kernel, bias)
        if inputs.dtype not in ("int32", "int64"):
            inputs = ops.cast(inputs, "int32")
        if training:
            # A gather whose table gradient is dense on every backend (global-
            # norm clipping must see the summed rows, as the reference's
            # `clip_grad_norm_` does); see `klm.backend.scaled_gather`.
            outputs = backend.scaled_gather(self.embeddings, inputs, self.embedding_multiplier)
            return ops.cast(outputs, self.compute_dtype)
        # Without gradients, gather first: a decoding step then touches one
        # row per token instead of the whole (vocabulary, hidden) table.
        outputs = ops.take(self.embeddings, inputs, axis=0)
        if self.embedding_multiplier != 1.0:
            outputs = ops.multiply(outputs, ops.cast(self.embedding_multiplier, outputs.dtype))
        return ops.cast(outputs, self.compute_dtype)

    def quantized_call(self, inputs, reverse=False, training=None):
        # A quantized layer's `__call__` runs `quantized_call` (Keras's int8/int4/... kernels) instead of
        # `call`: klm's embedding scale and output bias are applied around it here.
        if reverse:
            outputs = super().quantized_call(inputs, reverse=True)
            if self.use_output_bias:
                outputs = ops.add(outputs, ops.cast(self.output_bias, outputs.dtype))
            return outputs
        if inputs.dtype not in ("int32", "int64"):
            inputs = ops.cast(inputs, "int32")
        outputs = super().quantized_call(inputs)
        if self.embedding_multiplier != 1.0:
            outputs = ops.multiply(outputs, ops.cast(self.embedding_multiplier, outputs.dtype))
        return outputs

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "embeddings_scale": self.embedding_multiplier,
                "use_output_bias": self.use_output_bias,
            }
        )
        return config
