"""The per-backend half of `klm export --format onnx|litert`: which ONNX exporter Keras uses, and tracing weights.

Keras's `model.export(format="onnx")` converts with `tf2onnx` on TensorFlow,
`jax2onnx` on JAX and `torch.onnx` (TorchScript tracing with dynamic axes) on
PyTorch. PyTorch's tracer bakes the weights into the graph as constants but
refuses tensors that require gradients ("Cannot insert a Tensor that
requires grad as a constant"), so `export_scope` switches gradients off on
the model's variables for the export and restores them after.
"""

import contextlib

from klm.backend.kernels import explicit_causal_mask

ONNX_EXPORTERS = {"tensorflow": "tf2onnx", "jax": "jax2onnx", "torch": "onnxscript"}
# The klm extra that installs each exporter (jax2onnx is not in `klm[onnx]`).
ONNX_EXTRAS = {"tensorflow": "onnx", "jax": "onnx-jax", "torch": "onnx"}


def onnx_exporter_package():
    """The Python package Keras's ONNX export needs on the current backend."""
    import keras

    return ONNX_EXPORTERS[keras.backend.backend()]


def onnx_exporter_extra():
    """The klm extra (`pip install klm[...]`) that installs `onnx_exporter_package()`."""
    import keras

    return ONNX_EXTRAS[keras.backend.backend()]


@contextlib.contextmanager
def export_scope(model):
    """Runs an export with the model's PyTorch weights detached from autograd (no-op elsewhere)."""
    import keras

    if keras.backend.backend() != "torch":
        yield
        return
    changed = []
    for variable in model.variables:
        tensor = variable.value
        if getattr(tensor, "requires_grad", False):
            tensor.requires_grad_(False)
            changed.append(tensor)
    try:
        yield
    finally:
        for tensor in changed:
            tensor.requires_grad_(True)


def export_onnx_torch(model, path, output_name, opset=None):
    """PyTorch: `torch.onnx.export(dynamo=True)` with a dynamic batch and sequence.

    Keras's own PyTorch path traces with TorchScript when a dimension is
    dynamic, which fails on layers that read a dynamic shape (Keras's
    `LayerNormalization` builds its broadcast shape from `x.shape`); the
    `torch.export`-based exporter keeps those shapes symbolic.
    """
    import torch

    class Inference(torch.nn.Module):
        def __init__(self, wrapped):
            super().__init__()
            self.wrapped = wrapped

        def forward(self, token_ids, padding_mask):
            return self.wrapped({"token_ids": token_ids, "padding_mask": padding_mask}, training=False)

    batch, sequence = torch.export.Dim("batch", min=1), torch.export.Dim("sequence", min=2)
    sample = (torch.ones((2, 8), dtype=torch.int32), torch.ones((2, 8), dtype=torch.int32))
    program = torch.onnx.export(
        Inference(model).eval(),
        sample,
        dynamo=True,
        input_names=["token_ids", "padding_mask"],
        output_names=[output_name],
        dynamic_shapes={"token_ids": {0: batch, 1: sequence}, "padding_mask": {0: batch, 1: sequence}},
        opset_version=opset,
        verbose=False,
    )
    program.save(path)


def export_onnx_jax(model, path, output_name, opset=None, max_sequence_length=None):
    """JAX: `jax2onnx.to_onnx` with one batch and one sequence symbol shared by both inputs.

    Keras's own JAX path names each input's dynamic axes apart
    (`dim_0_1`, `dim_1_1`) and states no bound on them, so tracing stops
    where the position embedding slices its table to the sequence length
    ("Symbolic dimension comparison ... <= 48 is inconclusive"). Here both
    inputs share `batch` and `sequence`, bounded by the model's
    `max_sequence_length` when it has learned positions.

    Args:
        model: the Keras model; called on `{"token_ids", "padding_mask"}`.
        path: the `.onnx` file to write.
        output_name: the name of the graph's output.
        opset: ONNX opset, or `None` for jax2onnx's default.
        max_sequence_length: the longest sequence the graph accepts, or
            `None` for no bound.
    """
    import jax
    import numpy as np
    from jax2onnx import to_onnx

    constraints = [] if max_sequence_length is None else [f"sequence <= {int(max_sequence_length)}"]
    batch, sequence = jax.export.symbolic_shape("batch, sequence", constraints=constraints)
    spec = jax.ShapeDtypeStruct((batch, sequence), np.dtype("int32"))

    def inference(token_ids, padding_mask):
        return model({"token_ids": token_ids, "padding_mask": padding_mask}, training=False)

    options = {} if opset is None else {"opset": int(opset)}
    with explicit_causal_mask(), arange_with_explicit_stop():
        to_onnx(
            inference,
            inputs=[spec, spec],
            input_names=["token_ids", "padding_mask"],
            output_names=[output_name],
            return_mode="file",
            output_path=str(path),
            **options,
        )


@contextlib.contextmanager
def arange_with_explicit_stop():
    """Makes Keras's JAX `arange(n)` call `jnp.arange(0, n)` rather than `jnp.arange(n, None)`.

    jax2onnx's traced `jnp.arange` reads two positional arguments as
    `(start, stop)` and refuses `stop=None` ("Error interpreting argument to
    jax.numpy.arange as a JAX value ... NoneType"), which is how
    `keras.ops.arange(n)` calls it (keras-hub's causal masks do).
    """
    import jax
    from keras.src.backend.jax import numpy as jax_numpy

    original = jax_numpy.arange

    def arange(start, stop=None, step=None, dtype=None):
        if stop is None and step is None and jax.export.is_symbolic_dim(start):
            # `lax.iota` keeps the symbolic length (jax2onnx's arange gives an unnamed one that
            # later broadcasts against the inputs' `sequence` refuse).
            return jax.lax.iota(dtype or "int32", start)
        if stop is None:
            start, stop = 0, start
        return original(start, stop, step=step, dtype=dtype)

    jax_numpy.arange = arange
    try:
        yield
    finally:
        jax_numpy.arange = original
