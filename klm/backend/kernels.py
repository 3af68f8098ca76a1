"""Kernels with a backend-specific fast path: dense, fused sparse cross-entropy, fused global-norm clipping.

Each one falls back to `keras.ops` where no faster path exists, with the same
results; the fast paths are where measurements found the per-op cost
(examples/benchmarks/README.md).
"""

import contextlib


def dense(inputs, kernel, bias=None):
    """`inputs @ kernel + bias` in the dtype of `inputs` (the compute dtype).

    Under mixed precision the (float32) kernel and bias are cast to the
    inputs' dtype first, so the matmul runs in bfloat16 with the backends'
    float32 accumulation (oneDNN on CPU, cuBLAS on GPU) instead of being
    promoted to a float32 matmul. PyTorch gets the bias fused into the matmul
    (`F.linear`, i.e. `addmm`) instead of a separate broadcast add over the
    output; JAX asks XLA for a float32-accumulating dot of bfloat16 operands
    (`preferred_element_type`), which its CPU backend runs faster than a
    bfloat16-output dot.

    Args:
        inputs: `(..., in)` float tensor.
        kernel: `(in, out)` weight (tensor or Keras variable).
        bias: `(out,)` or `None`.
    """
    import keras
    from keras import ops

    backend = keras.backend.backend()
    inputs = ops.convert_to_tensor(inputs)
    dtype = keras.backend.standardize_dtype(inputs.dtype)
    kernel = ops.convert_to_tensor(kernel)
    if keras.backend.standardize_dtype(kernel.dtype) != dtype:
        kernel = ops.cast(kernel, dtype)
    if bias is not None:
        bias = ops.convert_to_tensor(bias)
        if keras.backend.standardize_dtype(bias.dtype) != dtype:
            bias = ops.cast(bias, dtype)
    if backend == "torch":
        import torch

        return torch.nn.functional.linear(inputs, kernel.t(), bias)
    if backend == "jax" and dtype in ("bfloat16", "float16"):
        import jax.numpy as jnp

        outputs = jnp.matmul(inputs, kernel, preferred_element_type=jnp.float32)
        if bias is not None:
            outputs = outputs + bias.astype(jnp.float32)
        return outputs.astype(dtype)
    outputs = ops.matmul(inputs, kernel)
    return outputs if bias is None else ops.add(outputs, bias)


def sparse_softmax_cross_entropy(labels, logits):
    """Per-row `logsumexp(logits) - logits[label]` of float32 `(N, V)` logits and int `(N,)` labels.

    Each backend's fused kernel where it has one: PyTorch's
    `F.cross_entropy` (one vectorised log-softmax forward and backward
    instead of separate max, subtract, exp, sum, log and gather ops over the
    logits) and TensorFlow's `sparse_softmax_cross_entropy_with_logits`
    (loss and gradient in one kernel); under JAX the log-sum-exp and a gather,
    which XLA fuses. The result is float32.
    """
    import keras
    from keras import ops

    backend = keras.backend.backend()
    logits = ops.cast(logits, "float32")
    if backend == "torch":
        import torch

        labels = ops.convert_to_tensor(labels)
        return torch.nn.functional.cross_entropy(logits, labels.long(), reduction="none")
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=ops.cast(labels, "int32"), logits=logits)
    labels = ops.reshape(ops.cast(labels, "int32"), (-1, 1))
    log_normalizer = ops.logsumexp(logits, axis=-1)
    return log_normalizer - ops.squeeze(ops.take_along_axis(logits, labels, axis=-1), axis=-1)


def scaled_gather(table, indices, scale):
    """`take(table, indices, axis=0) * scale`, with a dense gradient for `table`.

    On TensorFlow, gathering straight from the variable gives an
    `IndexedSlices` gradient with one row per token, repeated rows unsummed,
    and Keras's global-norm clipping measures that wrongly (the reference's
    `clip_grad_norm_`, JAX and PyTorch clip the dense gradient). Scaling the
    table first makes the gradient dense; the values are the same, element
    for element. JAX and PyTorch already give a dense gradient, and there the
    whole-table multiply cost two (vocabulary, hidden) passes per step: ~17 ms
    of a 242 ms reference-preset step on PyTorch (CPU profile). They scale
    the gathered rows instead.
    """
    import keras
    from keras import ops

    if keras.backend.backend() == "tensorflow":
        return ops.take(ops.multiply(table, ops.cast(scale, table.dtype)), indices, axis=0)
    outputs = ops.take(table, indices, axis=0)
    return outputs if scale == 1.0 else ops.multiply(outputs, ops.cast(scale, outputs.dtype))


def fuse_global_clipnorm(optimizer):
    """Makes `optimizer`'s global-norm clipping one fused pass on PyTorch; returns it.

    Keras clips with a square, a sum and a multiply per gradient (three
    passes over every weight-sized tensor, Python per op). On PyTorch this
    replaces it with `torch._foreach_norm` (one multi-tensor kernel, as
    `torch.nn.utils.clip_grad_norm_` does) and one `torch._foreach_mul` by
    `clipnorm / max(norm, clipnorm)`: the same
    result, NaN/inf included (the scale is NaN then, as in Keras). Other
    backends compile the step (XLA / tf.function), which fuses Keras's ops.
    """
    import keras

    if keras.backend.backend() != "torch" or not optimizer.global_clipnorm or optimizer.clipnorm:
        return optimizer
    import types

    import torch

    def clip_gradients(self, grads):
        if not self.global_clipnorm or self.global_clipnorm <= 0:
            return type(self)._clip_gradients(self, grads)
        present = [g for g in grads if g is not None]
        if not present:
            return grads
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(present)))
        clip = torch.as_tensor(float(self.global_clipnorm), dtype=norm.dtype, device=norm.device)
        scale = clip / torch.maximum(norm, clip) + (norm - norm)  # NaN for a NaN/inf norm, as in Keras
        if not self.gradient_accumulation_steps:
            # In place: these are the step's own `.grad` tensors. A new
            # weight-sized tensor per gradient cost ~7 ms per step for the
            # 12,000 x 200 embedding alone (allocation and page faults; CPU
            # profile of the reference preset), as `clip_grad_norm_` avoids too.
            torch._foreach_mul_(present, scale)
            return grads
        # Out of place: with gradient accumulation these are the accumulators.
        scaled = iter(torch._foreach_mul(present, scale))
        return [next(scaled) if g is not None else None for g in grads]

    optimizer._clip_gradients = types.MethodType(clip_gradients, optimizer)
    return optimizer


# The attention paths of `CausalSelfAttention` (training and plain inference;
# the KV-cache decoding step is `klm.backend.cached_attention`).
ATTENTION_PATHS = {
    "fused-causal": "keras.ops.dot_product_attention(is_causal=True): the backend's fused kernel "
    "(PyTorch SDPA; cuDNN flash attention under JAX on a GPU in bf16/fp16; XLA's softmax attention elsewhere)",
    "fused-masked": "keras.ops.dot_product_attention(mask=...): the backend's kernel with an explicit mask "
    "(packed sequences)",
    "sdpa-dropout-causal": "torch SDPA with dropout_p and is_causal=True (flash attention with dropout on CUDA; on a "
    "CPU SDPA runs its math kernel then, as the plain PyTorch loop does)",
    "sdpa-dropout-masked": "torch SDPA with dropout_p and a boolean attn_mask (packed sequences)",
    "explicit-dropout": "explicit softmax attention with a Keras Dropout layer on the probabilities",
    "cache-sdpa": "KV-cache decoding: torch SDPA over the filled part of the cache",
    "cache-fused": "KV-cache decoding: keras.ops.dot_product_attention over the cache with a position mask",
    "masked-causal": "keras.ops.dot_product_attention with an explicit causal mask (inside `explicit_causal_mask()`: "
    "the JAX ONNX export, whose jax2onnx converts is_causal=True for static lengths only)",
}

# Set by `explicit_causal_mask()`: plain causal attention takes "masked-causal".
_EXPLICIT_CAUSAL_MASK = []


@contextlib.contextmanager
def explicit_causal_mask():
    """Inside it, plain causal attention passes an explicit causal mask instead of `is_causal=True`.

    The same numbers; for graph converters that cannot express `is_causal`
    with a dynamic sequence length (jax2onnx).
    """
    _EXPLICIT_CAUSAL_MASK.append(True)
    try:
        yield
    finally:
        _EXPLICIT_CAUSAL_MASK.pop()


def choose_attention_path(backend, dropout, training, masked, cached=False):
    """The attention path (a key of `ATTENTION_PATHS`) a configuration takes; a pure function.

    With dropout off (`dropout == 0` or not training) every backend takes
    `keras.ops.dot_product_attention`, its fused kernel. With attention
    dropout in training, PyTorch keeps its fused kernel: SDPA takes
    `dropout_p` (flash attention with dropout on CUDA), with the same
    distribution as a `Dropout` layer on the probabilities (zero with
    probability `dropout`, the rest scaled by `1 / (1 - dropout)`), drawn from
    torch's global generator, which klm's backups save and restore at every
    segment start (`global_rng_state`), so a resumed run draws the same
    masks. JAX and TensorFlow have no fused attention with dropout that
    klm can seed from the run's random state: `jax.nn.dot_product_attention`
    has no dropout, and jax's cuDNN attention (the private
    `jax._src.cudnn.fused_attention_stablehlo.dot_product_attention`, GPU
    only) takes its dropout seed as a compile-time constant of the custom
    call rather than from klm's `SeedGenerator` state, so its masks would not
    follow the run's seed and a resumed run could not redraw them; TensorFlow
    has no fused attention op at all. They compute softmax attention
    explicitly, which is why the modern presets train with
    `attention_dropout=0` (see `klm.models.presets`).

    Args:
        backend: `"tensorflow"`, `"jax"` or `"torch"`.
        dropout: float. The attention-probability dropout rate.
        training: bool or `None`.
        masked: bool. An explicit `(batch, seq, seq)` mask (packed sequences).
        cached: bool. The KV-cache decoding step.
    """
    if cached:
        return "cache-sdpa" if backend == "torch" else "cache-fused"
    if not (training and dropout > 0):
        return "fused-masked" if masked else "fused-causal"
    if backend == "torch":
        return "sdpa-dropout-masked" if masked else "sdpa-dropout-causal"
    return "explicit-dropout"


def attention_path(dropout, training, masked, cached=False):
    """`choose_attention_path` on the running Keras backend."""
    import keras

    path = choose_attention_path(keras.backend.backend(), dropout, training, masked, cached)
    if path == "fused-causal" and _EXPLICIT_CAUSAL_MASK:
        return "masked-causal"
    return path


def dropout_attention(query, key, value, dropout, attention_mask=None):
    """Causal attention with dropout on the probabilities, in PyTorch's fused SDPA kernel.

    Only for the `sdpa-dropout-*` paths of `choose_attention_path` (the torch
    backend, training).

    Args:
        query, key, value: `(batch, seq, heads, head_dim)`.
        dropout: float in (0, 1).
        attention_mask: optional bool `(batch, seq, seq)`, `True` where query
            `i` may attend to key `j`; `None`: plain causal attention.

    Returns:
        `(batch, seq, heads, head_dim)`.
    """
    import torch
    from keras import ops

    query, key, value = (ops.convert_to_tensor(t).transpose(1, 2) for t in (query, key, value))
    mask = None if attention_mask is None else ops.convert_to_tensor(attention_mask).to(torch.bool)[:, None]
    outputs = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=mask, dropout_p=float(dropout), is_causal=mask is None
    )
    return outputs.transpose(1, 2)
