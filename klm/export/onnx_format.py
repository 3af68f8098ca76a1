"""`klm export SOURCE OUT --format onnx`: `OUT/model.onnx` + the tokenizer, checked in ONNX Runtime alone.

The graph takes `token_ids` and `padding_mask` (int32, `(batch, seq)`, both
dynamic) and returns a language model's logits `(batch, seq, vocab)` (a
classifier's probabilities `(batch, classes)`: softmax, or one sigmoid per
class for a multi-label run) as its first output. It is written by Keras's
own `model.export(format="onnx")` under the backend klm runs on:
TensorFlow converts a `tf.function` with `tf2onnx`, JAX with `jax2onnx`
(klm's own call: `klm.backend.export.export_onnx_jax`),
PyTorch with `torch.onnx` (TorchScript exporter with dynamic axes).

Before OUT appears (written as a temporary folder beside it, renamed at the
end), a fresh process that can import ONNX Runtime, NumPy and `tokenizers`
only (no klm, Keras, TensorFlow, JAX or PyTorch) runs the graph on two
batches of different shapes (one with padding); its outputs must equal the
Keras model's to `tolerance` (1e-4 in float32), and the `tokenizer.json`
written beside it must give klm's token ids on sample texts.
"""

import os

import numpy as np

from klm.backend.export import (
    export_onnx_jax,
    export_onnx_torch,
    export_scope,
    onnx_exporter_extra,
    onnx_exporter_package,
)
from klm.errors import ConfigError
from klm.export.publish import file_sizes, require_runtime, run_isolated_check, staged_output
from klm.export.tokenizer_files import write_tokenizer
from klm.generate import position_limit

CHECK_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "runtime_check.py")
TOLERANCE = 1e-4
SAMPLE_TEXTS = ("The history of language models, in 3 short sentences.", "hello world")


def check_onnx_runtimes():
    """Raises `ConfigError` (naming `pip install klm[onnx]`, `klm[onnx-jax]` on JAX) when a package is missing."""

    require_runtime("onnx", "onnx", "Exporting to ONNX")
    require_runtime("onnxruntime", "onnx", "Checking the ONNX export")
    require_runtime(onnx_exporter_package(), onnx_exporter_extra(), "The ONNX export on this backend", "onnx")


def probe_batches(vocabulary_size, pad_id=0, seed=0):
    """Two input batches of different shapes (the second row of the first is padded): checks dynamic axes."""
    rng = np.random.default_rng(seed)
    batches = []
    for batch, length, padded in ((2, 7, 3), (1, 11, 0)):
        token_ids = rng.integers(0, vocabulary_size, size=(batch, length)).astype("int32")
        padding_mask = np.ones((batch, length), "int32")
        if padded:
            padding_mask[-1, length - padded :] = 0
            token_ids[-1, length - padded :] = pad_id
        batches.append({"token_ids": token_ids, "padding_mask": padding_mask})
    return batches


def inference_model(checkpoint):
    """The model to export: the LM as it is (logits), a classifier with its softmax / sigmoid appended."""
    import keras

    model = checkpoint.model
    if model.dtype_policy.name != "float32":
        raise ConfigError(
            f"ONNX and LiteRT exports need a float32 model; this one computes in {model.dtype_policy.name}. "
            "Export a float32 run, or load a pretrained checkpoint without --precision. Received: "
            f"dtype={model.dtype_policy.name!r}"
        )
    if not checkpoint.mode.has_labels:
        return model
    activation = "sigmoid" if getattr(checkpoint.run, "multi_label", False) else "softmax"
    inputs = {
        "token_ids": keras.Input(shape=(None,), dtype="int32", name="token_ids"),
        "padding_mask": keras.Input(shape=(None,), dtype="int32", name="padding_mask"),
    }
    probabilities = keras.layers.Activation(activation, name="probabilities")(model(inputs))
    return keras.Model(inputs, probabilities, name="classifier_probabilities")


def keras_outputs(model, batches):
    import keras

    return [
        keras.ops.convert_to_numpy(keras.ops.cast(model(dict(batch), training=False), "float32")) for batch in batches
    ]


def input_signature(batch=None, length=None):
    import keras

    return [
        {
            "padding_mask": keras.InputSpec(shape=(batch, length), dtype="int32", name="padding_mask"),
            "token_ids": keras.InputSpec(shape=(batch, length), dtype="int32", name="token_ids"),
        }
    ]


def compare_outputs(checkpoint, batches, reference, check, arrays, tolerance, label):
    """Max abs difference of the runtime's outputs (`output_<i>.npy`) from Keras's; `ConfigError` past `tolerance`."""
    diff = 0.0
    for index, ours in enumerate(reference):
        theirs = np.load(os.path.join(arrays, f"output_{index}.npy"))
        if theirs.shape != ours.shape:
            raise ConfigError(
                f"{label} returned shape {theirs.shape} for inputs {batches[index]['token_ids'].shape}, Keras "
                f"{ours.shape}; nothing was written."
            )
        diff = max(diff, float(np.abs(theirs - ours).max()))
    if not diff <= tolerance:
        raise ConfigError(f"{label}'s outputs differ from klm's by {diff:.3g} > {tolerance:g}; nothing was written.")
    return diff


def tokenizer_check(checkpoint, check, tokens):
    """`True` / `False` when a tokenizer.json was checked against klm's ids; raises when they differ."""
    if "text_ids" not in check:
        return None
    ours = [np.asarray(checkpoint.tokenizer.tokenize(text)).reshape(-1).tolist() for text in SAMPLE_TEXTS]
    if ours != check["text_ids"]:
        raise ConfigError(
            f"The written tokenizer.json gives ids {check['text_ids']} on {list(SAMPLE_TEXTS)}, klm's tokenizer "
            f"{ours}; nothing was written."
        )
    return True


def polish_graph(path, output_name):
    """Names the first output `output_name`; rewrites `Erfc(x)` as `1 - Erf(x)`, fixes `Min`/`Max` of booleans.

    TensorFlow computes exact GELU with `Erfc`, which tf2onnx passes through
    although ONNX has no such op (ONNX Runtime refuses the graph). jax2onnx
    writes `minimum` of keras-hub's padding (int) and causal (bool) masks
    as a `Min` with a boolean input, which ONNX defines for numbers only.
    """
    import onnx
    from onnx import helper, numpy_helper

    graph_model = onnx.load(path)
    graph = graph_model.graph
    old_name = graph.output[0].name
    if old_name != output_name:
        for node in graph.node:
            for i, name in enumerate(node.output):
                if name == old_name:
                    node.output[i] = output_name
            for i, name in enumerate(node.input):
                if name == old_name:
                    node.input[i] = output_name
        graph.output[0].name = output_name
    _bool_min_max_as_logic(graph_model)
    nodes = list(graph.node)
    one = "klm_erfc_one"
    if any(node.op_type == "Erfc" for node in nodes):
        graph.initializer.append(numpy_helper.from_array(np.array(1.0, "float32"), one))
    rewritten = []
    count = 0
    for node in nodes:
        if node.op_type != "Erfc":
            rewritten.append(node)
            continue
        count += 1
        erf_out = f"{node.output[0]}_klm_erf"
        rewritten.append(helper.make_node("Erf", [node.input[0]], [erf_out], name=f"{node.name}_klm_erf"))
        rewritten.append(helper.make_node("Sub", [one, erf_out], [node.output[0]], name=f"{node.name}_klm_sub"))
    del graph.node[:]
    graph.node.extend(rewritten)
    onnx.checker.check_model(graph_model)
    onnx.save(graph_model, path)
    return count


def _bool_min_max_as_logic(graph_model):
    """Makes `Min` / `Max` of boolean tensors valid ONNX: `And` / `Or`, or a `Cast` of the boolean input.

    JAX promotes `minimum(int32, bool)` to int32; jax2onnx writes the `Min`
    without casting the boolean side.
    """
    import onnx
    from onnx import helper

    inferred = onnx.shape_inference.infer_shapes(graph_model).graph
    types = {value.name: value.type.tensor_type.elem_type for value in inferred.value_info}
    types.update({value.name: value.type.tensor_type.elem_type for value in inferred.input})
    types.update({init.name: init.data_type for init in inferred.initializer})
    boolean = onnx.TensorProto.BOOL
    rewritten = []
    for node in graph_model.graph.node:
        kinds = [types.get(name) for name in node.input]
        if node.op_type not in ("Min", "Max") or boolean not in kinds:
            rewritten.append(node)
            continue
        numeric = [kind for kind in kinds if kind != boolean]
        if not numeric and len(node.input) == 2:
            node.op_type = {"Min": "And", "Max": "Or"}[node.op_type]
        elif numeric and None not in numeric and len(set(numeric)) == 1:
            for i, name in enumerate(node.input):
                if kinds[i] == boolean:
                    cast = f"{name}_klm_cast_{node.name}"
                    rewritten.append(helper.make_node("Cast", [name], [cast], name=cast, to=numeric[0]))
                    node.input[i] = cast
        rewritten.append(node)
    del graph_model.graph.node[:]
    graph_model.graph.node.extend(rewritten)


def export_onnx(checkpoint, out_dir, verify=True, tolerance=TOLERANCE, opset=None):
    """Writes `checkpoint` as `out_dir/model.onnx` + tokenizer, checked in ONNX Runtime before `out_dir` appears.

    Args:
        checkpoint: a `klm.pretrained.Checkpoint` (klm run or pretrained).
        out_dir: the folder to create (must not exist, or be empty).
        verify: run the ONNX Runtime check (recommended).
        tolerance: largest accepted absolute difference from Keras.
        opset: ONNX opset, or `None` for the exporter's default.

    Returns:
        A dict: `path`, `format`, `backend`, `files` (name -> bytes),
        `verified`, `max_abs_diff`, `inputs`/`outputs` (as ONNX Runtime
        reports them), `tokenizer` (what was written and why).

    Example:

    ```python
    from klm.pretrained import load_checkpoint
    export_onnx(load_checkpoint("runs/lm"), "out/lm-onnx")
    ```
    """
    import keras

    check_onnx_runtimes()
    model = inference_model(checkpoint)
    batches = probe_batches(_vocabulary_size(checkpoint), pad_id=_pad_id(checkpoint))
    backend = keras.backend.backend()
    with staged_output(out_dir) as temp:
        path = os.path.join(temp, "model.onnx")
        # PyTorch's exporter traces one shape; the dynamic axes come from the signature's `None`s.
        output_name = "probabilities" if checkpoint.mode.has_labels else "logits"
        if backend == "torch":
            with export_scope(model):
                export_onnx_torch(model, path, output_name, opset)
        elif backend == "jax":
            export_onnx_jax(model, path, output_name, opset, max_sequence_length=position_limit(checkpoint.model))
        else:
            model.export(path, format="onnx", verbose=False, input_signature=input_signature(), opset_version=opset)
        polish_graph(path, output_name)
        tokenizer = write_tokenizer(checkpoint, temp)
        result = {"path": os.path.abspath(out_dir), "format": "onnx", "backend": backend, "verified": False}
        if verify:
            result.update(verify_runtime("onnx", path, checkpoint, model, batches, tokenizer, tolerance, temp))
        result["tokenizer"] = {k: v for k, v in tokenizer.items() if k != "tokenizer_json"}
        result["files"] = file_sizes(temp)
    return result


def verify_runtime(fmt, path, checkpoint, model, batches, tokenizer, tolerance, temp):
    """Runs `path` in its runtime alone (`runtime_check.py`) on `batches`; compares with the Keras model."""
    import tempfile

    reference = keras_outputs(model, batches)
    with tempfile.TemporaryDirectory(prefix="klm-export-arrays-") as arrays:
        names = []
        for index, batch in enumerate(batches):
            names.append(f"input_{index}.npz")
            np.savez(os.path.join(arrays, names[-1]), **batch)
        check = run_isolated_check(
            CHECK_SCRIPT,
            {
                "format": fmt,
                "model": path,
                "arrays": arrays,
                "inputs": names,
                "tokenizer_json": tokenizer["tokenizer_json"],
                "texts": list(SAMPLE_TEXTS),
            },
            allowed=(),
            what={"onnx": "The ONNX Runtime check", "litert": "The LiteRT check"}[fmt],
        )
        label = {"onnx": "ONNX Runtime", "litert": "The LiteRT interpreter"}[fmt]
        diff = compare_outputs(checkpoint, batches, reference, check, arrays, tolerance, label)
    return {
        "verified": True,
        "max_abs_diff": diff,
        "tolerance": tolerance,
        "checked_shapes": [list(b["token_ids"].shape) for b in batches],
        "inputs": check.get("inputs"),
        "outputs": check.get("outputs"),
        "tokenizer_ids_match": tokenizer_check(checkpoint, check, SAMPLE_TEXTS),
    }


def _vocabulary_size(checkpoint):
    return int(checkpoint.model.backbone.vocabulary_size)


def _pad_id(checkpoint):
    return int(getattr(checkpoint.tokenizer, "pad_token_id", 0) or 0)
