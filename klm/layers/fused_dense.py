"""`FusedDense`: `keras.layers.Dense` whose matmul goes through `klm.backend.dense`."""

import keras

from klm import backend


@keras.saving.register_keras_serializable(package="klm")
class FusedDense(keras.layers.Dense):
    """A `keras.layers.Dense` with the same weights, config and results, computed by `klm.backend.dense`.

    On PyTorch the bias is fused into the matmul (`addmm`) instead of a
    separate add over the output; under mixed precision on JAX the bfloat16
    matmul accumulates in float32 (`preferred_element_type`). Quantized and
    LoRA layers take Keras's own path.

    Example:
    ```python
    layer = klm.layers.FusedDense(8)
    outputs = layer(np.ones((2, 3, 4), "float32"))  # (2, 3, 8)
    ```
    """

    def call(self, inputs, training=None):
        if self.quantization_mode is not None or self.lora_enabled:
            return super().call(inputs, training=training)
        outputs = backend.dense(inputs, self.kernel, self.bias)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs
