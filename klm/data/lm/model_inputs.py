"""Language-model batches as the models take them, and token counts.

Kept apart from `batches.py` (`lm_dataset`) so that importing them needs TensorFlow only
when `lm_model_inputs` runs (the training and evaluation code both use them).
"""


def lm_model_inputs(dataset):
    """Maps `(x, y)` token batches to the backbone's `({"token_ids", "padding_mask"}, y)`.

    LM windows have no padding, so the mask is all ones.

    Args:
        dataset: a `tf.data.Dataset` of `(x, y)` int batches (`lm_dataset`).

    Returns:
        The mapped dataset.
    """
    import tensorflow as tf

    def to_inputs(x, y):
        return {"token_ids": x, "padding_mask": tf.ones_like(x)}, y

    return dataset.map(to_inputs, num_parallel_calls=tf.data.AUTOTUNE)


def num_tokens(tokens):
    """Length of a token stream (a 1-D array or a `PreparedSplit`)."""
    return int(tokens.num_tokens) if hasattr(tokens, "num_tokens") else len(tokens)
