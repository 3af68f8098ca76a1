"""`FusedDense`: `keras.layers.Dense` whose matmul goes through `klm.backend.dense`."""

import keras

from klm import backend


@keras.saving.register_keras_serializable(package="klm")
class FusedDense(keras.layers.Dense):
    """A `keras.layers.Dense` with the same weights, config and results, computed by `klm.backend.dense`.

    On PyTorch the bias is fused into the matmul (`addmm`) instead of a
    separate add over the output; under mixed precision on JAX the bfloat16
    matmul accumulates in float32 (`preferred_element_type`). Quantized and
    LoRA layers take Keras's own path. GPTQ/AWQ layers save every variable
    their `load_own_variables` reads (Keras 3.15's `Dense` leaves out
    `kernel_zero` for them, so its own file did not reload).

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

    def save_own_variables(self, store):
        if self.built and self.quantization_mode in CALIBRATED_MODES:
            save_calibrated_variables(self, store)
        else:
            super().save_own_variables(store)


CALIBRATED_MODES = ("gptq", "awq")


def save_calibrated_variables(layer, store):
    """Saves a GPTQ/AWQ-quantized `Dense`/`EinsumDense` in the order its `load_own_variables` reads.

    Keras 3.15.1's `save_own_variables` takes `kernel_zero` from the LoRA-merge
    helper, which returns `None` for these modes, so the zero points were
    dropped: the file held one variable fewer than the layer and could not be
    loaded (and zero points of 0 would have dequantized wrongly). The zero
    points matter: GPTQ/AWQ quantize asymmetrically. This mirrors
    `load_own_variables` exactly (same names, same skips).

    Args:
        layer: a built `Dense` or `EinsumDense` with `quantization_mode` gptq or awq.
        store: the weights store `save_own_variables` receives.
    """
    index = 0
    for name in layer.variable_serialization_spec[layer.quantization_mode]:
        if name == "bias" and layer.bias is None:
            continue
        if name in ("kernel_zero", "g_idx") and not hasattr(layer, name):
            continue
        store[str(index)] = getattr(layer, name)
        index += 1
