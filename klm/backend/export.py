"""The per-backend half of `klm export --format onnx|litert`: which ONNX exporter Keras uses, and tracing weights.

Keras's `model.export(format="onnx")` converts with `tf2onnx` on TensorFlow,
`jax2onnx` on JAX and `torch.onnx` (TorchScript tracing with dynamic axes) on
PyTorch. PyTorch's tracer bakes the weights into the graph as constants but
refuses tensors that require gradients ("Cannot insert a Tensor that
requires grad as a constant"), so `export_scope` switches gradients off on
the model's variables for the export and restores them after.
"""

import contextlib

ONNX_EXPORTERS = {"tensorflow": "tf2onnx", "jax": "jax2onnx", "torch": "onnxscript"}


def onnx_exporter_package():
    """The Python package Keras's ONNX export needs on the current backend."""
    import keras

    return ONNX_EXPORTERS[keras.backend.backend()]


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
