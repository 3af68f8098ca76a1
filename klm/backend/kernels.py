"""Kernels with a backend-specific fast path: dense, fused sparse cross-entropy, fused global-norm clipping.

Each one falls back to `keras.ops` where no faster path exists, with the same
results; the fast paths are where measurements found the per-op cost
(examples/benchmarks/README.md).
"""


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
