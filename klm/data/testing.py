"""Helpers for klm.data's tests (not part of the public API)."""

import numpy as np


def to_python(value):
    """Converts tokenizer outputs of any backend to plain Python values.

    In eager mode keras-hub tokenizers return Python lists for ragged and
    string outputs and backend tensors for dense ids; inside `tf.data` they
    return TF tensors. Tests compare the plain values.
    """
    if hasattr(value, "to_list"):
        value = value.to_list()
    elif isinstance(value, (list, tuple)):
        return [to_python(v) for v in value]
    elif isinstance(value, (str, bytes, int, float)):
        value = value
    else:
        value = np.asarray(value).tolist()
    if isinstance(value, list):
        return [to_python(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return value
