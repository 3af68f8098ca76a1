"""Pools a padded sequence of hidden states into one vector per example."""

import keras
from keras import ops

POOLING_MODES = ("last", "mean")


@keras.saving.register_keras_serializable(package="klm")
class SequencePooling(keras.layers.Layer):
    """Pools `(batch, seq, hidden)` states to `(batch, hidden)`, ignoring padding.

    A causal model only "reads" the whole text at its last real token, so
    `"last"` (the GPT classifier convention) takes the hidden state at the last
    position where `padding_mask` is true; `"mean"` averages the states of the
    real tokens.

    Args:
        mode: `"last"` or `"mean"`.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: `(batch, seq, hidden)` hidden states.
        padding_mask: `(batch, seq)` int/bool, true for real tokens (trailing
            padding).

    Examples:
    ```python
    pool = klm.layers.SequencePooling("mean")
    pooled = pool(hidden_states, padding_mask=padding_mask)
    ```
    """

    def __init__(self, mode="last", **kwargs):
        super().__init__(**kwargs)
        if mode not in POOLING_MODES:
            raise ValueError(f"Expected pooling mode in {POOLING_MODES}. Received: mode={mode!r}")
        self.mode = mode

    def call(self, inputs, padding_mask):
        mask = ops.cast(padding_mask, "int32")  # (batch, seq)
        if self.mode == "last":
            # Index of the last real token; 0 for an all-padding row.
            last = ops.maximum(ops.sum(mask, axis=1) - 1, 0)  # (batch,)
            index = ops.reshape(last, (-1, 1, 1))
            return ops.squeeze(ops.take_along_axis(inputs, index, axis=1), axis=1)
        weights = ops.cast(mask, inputs.dtype)[:, :, None]  # (batch, seq, 1)
        total = ops.sum(inputs * weights, axis=1)
        count = ops.maximum(ops.sum(weights, axis=1), ops.cast(1.0, inputs.dtype))
        return total / count

    def compute_output_shape(self, inputs_shape, padding_mask_shape=None):
        return (inputs_shape[0], inputs_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update({"mode": self.mode})
        return config
