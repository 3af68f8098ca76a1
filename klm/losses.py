"""Loss functions for klm's language models.

`SparseCrossEntropyFromLogits` is the next-token loss: the same value as
`keras.losses.SparseCategoricalCrossentropy(from_logits=True)`, computed as

    loss[i] = logsumexp(logits[i, :]) - logits[i, label[i]]

in float32 on logits flattened to `(positions, vocabulary)`. Compared with
the Keras loss on `(batch, seq, vocabulary)` logits it avoids

- under PyTorch, a strided view: Keras moves the class axis to position 1
  for `F.cross_entropy`, so the log-softmax of a 3-D batch runs over a
  non-contiguous layout and its input is copied;
- under JAX, a one-hot matrix of the logits' size multiplied into the
  log-probabilities (Keras's JAX loss), replaced by a gather of one logit per
  position;
- under mixed precision, a softmax over bfloat16 logits: they are cast to
  float32 first, as PyTorch's reference casts `output.float()`.

Each backend computes it with its fused kernel where it has one
(`klm.backend.sparse_softmax_cross_entropy`: PyTorch `F.cross_entropy`,
TensorFlow `sparse_softmax_cross_entropy_with_logits`; JAX a log-sum-exp and
a gather that XLA fuses).
"""

import keras
from keras import ops

from klm import backend


def sparse_cross_entropy_from_logits(y_true, y_pred):
    """Per-position cross-entropy of integer labels against logits.

    Args:
        y_true: integer labels, shape `(...)` (or `(..., 1)`).
        y_pred: logits, shape `(..., vocabulary)`, any float dtype.

    Returns:
        float32 tensor of shape `y_true.shape` (without a trailing 1): the
        negative log-probability of each label.

    Example:
    ```python
    loss = sparse_cross_entropy_from_logits(np.array([[1, 0]]), np.random.rand(1, 2, 5))
    # shape (1, 2); equals keras.ops.sparse_categorical_crossentropy(..., from_logits=True)
    ```
    """
    logits = ops.cast(y_pred, "float32")
    labels = ops.cast(y_true, "int32")
    if len(labels.shape) == len(logits.shape):
        labels = ops.squeeze(labels, axis=-1)
    out_shape = ops.shape(labels)
    vocabulary = ops.shape(logits)[-1]
    flat_logits = ops.reshape(logits, (-1, vocabulary))
    flat_labels = ops.reshape(labels, (-1,))
    losses = backend.sparse_softmax_cross_entropy(flat_labels, flat_logits)
    return ops.reshape(losses, out_shape)


@keras.saving.register_keras_serializable(package="klm")
class SparseCrossEntropyFromLogits(keras.losses.Loss):
    """Sparse categorical cross-entropy from logits, in float32 (see module doc).

    A drop-in replacement for
    `keras.losses.SparseCategoricalCrossentropy(from_logits=True)` with the
    same values and reductions.

    Args:
        reduction: Keras loss reduction (default `"sum_over_batch_size"`,
            the mean over all positions).
        name: loss name.
        dtype: dtype of the loss computation (default float32).

    Example:
    ```python
    model.compile(optimizer="sgd", loss=klm.losses.SparseCrossEntropyFromLogits())
    ```
    """

    def __init__(self, reduction="sum_over_batch_size", name="sparse_cross_entropy_from_logits", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        return sparse_cross_entropy_from_logits(y_true, y_pred)

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction, "dtype": self.dtype}


def lm_loss():
    """The next-token loss of klm's language models: a `SparseCrossEntropyFromLogits`.

    Same values as `keras.losses.SparseCategoricalCrossentropy(from_logits=True)`,
    without Keras's one-hot (JAX) or strided log-softmax (PyTorch) and with the
    softmax always in float32.
    """
    return SparseCrossEntropyFromLogits()
