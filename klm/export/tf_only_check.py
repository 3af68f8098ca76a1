"""Checks a SavedModel in a process that can import TensorFlow only: `python tf_only_check.py REQUEST.json`.

A standalone script: it imports the Python standard library and TensorFlow,
nothing from klm. `klm.export.worker.call_in_tensorflow_only_process` runs
it by its file path (running it with `python -m klm.export.tf_only_check`
would import `klm` and `klm.export` first, which is what the check must rule
out), with `PYTHONPATH` unset; the script also drops its own folder from
`sys.path`, so that the package's modules cannot shadow others.

The request (JSON): `saved_model` (the version folder), `calls` (a list of
`{"signature", "inputs"}`), `load_text_ops`, `load`, `blocked` (top-level
module names whose import must fail: `keras`, `keras_hub`, `klm`,
`tensorflow_text`, ...) and `result` (where to write the JSON result).

What it does, in order:

1. Installs an import hook that makes every import of a blocked module
   raise `ModuleNotFoundError` (TensorFlow probes for Keras; it must cope).
2. Reads `saved_model.pb`: the op types of the graph, those this
   TensorFlow does not register, and the SignatureDefs as
   `saved_model_cli show --all` prints them.
3. With `load_text_ops`, loads the tensorflow-text op libraries with
   `tf.load_op_library` (the kernels only, as a TF Serving build with those
   ops has them: the `tensorflow_text` Python package imports Keras).
4. Fails on XLA-only ops and on ops still unregistered.
5. With `load`, loads the SavedModel and makes each call.

The result records any error, `outputs` (one dict of lists per call, strings
decoded), `ops`, `custom_ops`, `signatures`, `signatures_text`,
`loaded_signatures`, `text_op_libraries` and `blocked_modules_imported`
(the blocked modules found in `sys.modules` at the end: must be empty).
"""

import os  # already imported by the interpreter's startup: no search of sys.path
import sys

# Run by path, sys.path[0] is this folder (klm/export): drop it before any other
# import, so that the package's modules (config.py, ...) cannot shadow others.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import importlib.abc  # noqa: E402
import importlib.machinery  # noqa: E402
import json  # noqa: E402
import traceback  # noqa: E402


class Blocker(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """An import hook: a spec whose loader fails for the blocked modules.

    `find_spec` callers (TensorFlow probes for Keras) see a module; importing
    it raises `ModuleNotFoundError`.
    """

    def __init__(self, blocked):
        self.blocked = tuple(blocked)

    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in self.blocked:
            return importlib.machinery.ModuleSpec(name, self)
        return None

    def create_module(self, spec):
        raise ModuleNotFoundError(f"No module named {spec.name!r} (blocked by klm's serving check)", name=spec.name)

    def exec_module(self, module):
        raise ModuleNotFoundError(f"No module named {module.__name__!r}")


def describe(saved_model_dir, result):
    """Fills `ops`, `custom_ops`, `signatures` and `signatures_text` from `saved_model.pb`; returns the ops."""
    from tensorflow.core.framework import types_pb2
    from tensorflow.core.protobuf import saved_model_pb2
    from tensorflow.python.framework import op_def_registry

    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    meta_graph = proto.meta_graphs[0]
    ops = {node.op for node in meta_graph.graph_def.node}
    for function in meta_graph.graph_def.library.function:
        ops.update(node.op for node in function.node_def)
    result["ops"] = sorted(ops)
    result["custom_ops"] = sorted(op for op in ops if op_def_registry.get(op) is None)

    # As `saved_model_cli show --all` prints the SignatureDefs.
    dtype_names = {value: key for key, value in types_pb2.DataType.items()}

    def shape_text(info):
        if info.tensor_shape.unknown_rank:
            return "unknown_rank"
        return "(" + ", ".join(str(d.size) for d in info.tensor_shape.dim) + ")"

    tags = ", ".join(meta_graph.meta_info_def.tags)
    lines = [f"MetaGraphDef with tag-set: '{tags}' contains the following SignatureDefs:"]
    signatures = {}
    for key in sorted(meta_graph.signature_def):
        signature = meta_graph.signature_def[key]
        lines += ["", f"signature_def['{key}']:"]
        described = {}
        for kind, tensors in (("input", signature.inputs), ("output", signature.outputs)):
            lines.append(f"  The given SavedModel SignatureDef contains the following {kind}(s):")
            described[kind + "s"] = {}
            for name, info in sorted(tensors.items()):
                lines += [
                    f"    {kind}s['{name}'] tensor_info:",
                    f"        dtype: {dtype_names[info.dtype]}",
                    f"        shape: {shape_text(info)}",
                    f"        name: {info.name}",
                ]
                described[kind + "s"][name] = [dtype_names[info.dtype], shape_text(info)]
        lines.append(f"  Method name is: {signature.method_name}")
        signatures[key] = described
    result["signatures"] = signatures
    result["signatures_text"] = "\n".join(lines)
    return ops


def load_text_op_libraries():
    """Loads the tensorflow-text kernels (not its Python package, which imports Keras); returns the file names."""
    import tensorflow as tf

    spec = importlib.machinery.PathFinder.find_spec("tensorflow_text")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("tensorflow-text is not installed, and the SavedModel needs its ops")
    ops_dir = os.path.join(list(spec.submodule_search_locations)[0], "python", "ops")
    loaded = []
    for name in sorted(os.listdir(ops_dir)):
        if name.endswith(".so"):
            tf.load_op_library(os.path.join(ops_dir, name))
            loaded.append(name)
    return loaded


def check_ops(ops, text_ops_loaded):
    """Raises `RuntimeError` for XLA-only ops and for ops this TensorFlow does not register."""
    from tensorflow.python.framework import op_def_registry

    xla_ops = sorted(op for op in ops if op.startswith("Xla"))
    if xla_ops:
        raise RuntimeError(
            "the graph uses XLA-only ops, which TF Serving runs only with an XLA compiler: " + ", ".join(xla_ops)
        )
    missing = sorted(op for op in ops if op_def_registry.get(op) is None)
    if missing:
        raise RuntimeError(
            "the graph uses ops that this TensorFlow does not register: "
            + ", ".join(missing)
            + ("" if text_ops_loaded else " (a --portable export must use core TensorFlow ops only)")
        )


def call_signatures(saved_model_dir, calls, result):
    """Loads the SavedModel and makes each call; fills `loaded_signatures` and `outputs`."""
    import tensorflow as tf

    loaded = tf.saved_model.load(saved_model_dir)
    result["loaded_signatures"] = sorted(loaded.signatures.keys())
    for call in calls:
        function = loaded.signatures[call["signature"]]
        specs = function.structured_input_signature[1]
        inputs = {name: tf.constant(value, dtype=specs[name].dtype) for name, value in call["inputs"].items()}
        outputs = function(**inputs)
        converted = {}
        for name, tensor in outputs.items():
            value = tensor.numpy()
            if tensor.dtype == tf.string:
                value = [v.decode("utf-8", errors="replace") for v in value.reshape(-1)]
            else:
                value = value.tolist()
            converted[name] = value
        result["outputs"].append(converted)


def main(request_path):
    """Runs the check the request describes and writes its JSON result (errors included)."""
    with open(request_path) as f:
        request = json.load(f)
    blocked = tuple(request["blocked"])
    sys.meta_path.insert(0, Blocker(blocked))
    result = {"error": None, "outputs": []}
    try:
        import tensorflow  # noqa: F401 - first, under the import hook

        ops = describe(request["saved_model"], result)
        result["text_op_libraries"] = []
        if request["load_text_ops"]:
            result["text_op_libraries"] = load_text_op_libraries()
        check_ops(ops, request["load_text_ops"])
        if request["load"]:
            call_signatures(request["saved_model"], request["calls"], result)
    except BaseException as e:  # noqa: BLE001 - reported to the parent
        result["error"] = f"{type(e).__name__}: {e}"
        result["traceback"] = traceback.format_exc()
    result["blocked_modules_imported"] = sorted(m for m in sys.modules if m.split(".")[0] in blocked)
    with open(request["result"], "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python tf_only_check.py REQUEST.json", file=sys.stderr)
        sys.exit(2)
    main(sys.argv[1])
