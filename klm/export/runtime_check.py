"""Runs an exported ONNX, LiteRT or GGUF model in its own runtime only: `python -I runtime_check.py REQUEST.json`.

A standalone script, run by its file path (see `klm.export.publish.
run_isolated_check`): it imports the standard library, NumPy and the one
runtime of the request's `format` (`onnxruntime`, `ai_edge_litert`,
`llama_cpp`; `tokenizers` to check a `tokenizer.json`), nothing from klm.
Importing a module named in the request's `blocked` list (klm, Keras,
keras-hub, TensorFlow, JAX, PyTorch) raises `ModuleNotFoundError`, and the
result lists any of them found in `sys.modules` at the end.

Request keys: `format`, `model` (the file), `arrays` (a folder: inputs are
read from and outputs written to `.npy` files there), `blocked`, `result`,
and per format:

- onnx / litert: `inputs`, a list of names of `.npz` files in `arrays`
  holding `token_ids` and `padding_mask`; each output is written as
  `output_<i>.npy`. `tokenizer_json` and `texts`: ids of each text.
- gguf: `probe` (token ids; the logits of every position are written to
  `gguf_logits.npy`), `prompts` (lists of ids) and `max_new_tokens`
  (greedy continuations: ids and text), `texts` (ids from the GGUF's own
  tokenizer), and the model's metadata.
"""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import importlib.abc  # noqa: E402
import importlib.machinery  # noqa: E402
import json  # noqa: E402
import traceback  # noqa: E402


class Blocker(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """An import hook: importing a blocked module raises `ModuleNotFoundError`."""

    def __init__(self, blocked):
        self.blocked = tuple(blocked)

    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in self.blocked:
            return importlib.machinery.ModuleSpec(name, self)
        return None

    def create_module(self, spec):
        raise ModuleNotFoundError(f"No module named {spec.name!r} (blocked by klm's export check)", name=spec.name)

    def exec_module(self, module):
        raise ModuleNotFoundError(f"No module named {module.__name__!r}")


def tokenize_texts(request, result):
    if not request.get("tokenizer_json"):
        return
    import tokenizers

    tokenizer = tokenizers.Tokenizer.from_file(request["tokenizer_json"])
    result["text_ids"] = [tokenizer.encode(text, add_special_tokens=False).ids for text in request["texts"]]


def check_onnx(request, result):
    import numpy as np
    import onnxruntime

    session = onnxruntime.InferenceSession(request["model"], providers=["CPUExecutionProvider"])
    result["inputs"] = {i.name: [i.type, list(map(str, i.shape))] for i in session.get_inputs()}
    result["outputs"] = {o.name: [o.type, list(map(str, o.shape))] for o in session.get_outputs()}
    for index, name in enumerate(request["inputs"]):
        data = np.load(os.path.join(request["arrays"], name))
        feed = {}
        for spec in session.get_inputs():
            key = "token_ids" if "token" in spec.name else "padding_mask"
            feed[spec.name] = data[key].astype("int64" if spec.type == "tensor(int64)" else "int32")
        first = session.run(None, feed)[0]
        np.save(os.path.join(request["arrays"], f"output_{index}.npy"), first)
    tokenize_texts(request, result)


def check_litert(request, result):
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=request["model"])
    runner = interpreter.get_signature_runner()
    details = runner.get_input_details()
    result["inputs"] = {name: [str(d["dtype"].__name__), list(map(int, d["shape"]))] for name, d in details.items()}
    for index, name in enumerate(request["inputs"]):
        data = np.load(os.path.join(request["arrays"], name))
        feed = {}
        for input_name, detail in details.items():
            key = "token_ids" if "token" in input_name else "padding_mask"
            feed[input_name] = data[key].astype(detail["dtype"])
        outputs = runner(**feed)
        first = outputs[sorted(outputs)[0]] if len(outputs) > 1 else next(iter(outputs.values()))
        np.save(os.path.join(request["arrays"], f"output_{index}.npy"), first)
    tokenize_texts(request, result)


def check_gguf(request, result):
    import llama_cpp
    import numpy as np

    probe = list(request["probe"])
    context = max(len(probe), max(len(p) for p in request["prompts"]) + request["max_new_tokens"]) + 8
    # llama.cpp keeps its KV cache in float16 by default (and its flash-attention path rounds Q to
    # float16): that alone moves a float32 model's logits by ~4e-3, so the check runs with a float32
    # cache and the plain attention path, comparing the weights in the file and nothing else.
    llm = llama_cpp.Llama(
        model_path=request["model"],
        n_ctx=context,
        logits_all=True,
        verbose=False,
        n_threads=2,
        seed=0,
        type_k=llama_cpp.GGML_TYPE_F32,
        type_v=llama_cpp.GGML_TYPE_F32,
        flash_attn=False,
    )
    result["metadata"] = {k: v for k, v in llm.metadata.items() if not k.startswith("tokenizer.ggml.merges")}
    llm.reset()
    llm.eval(probe)
    np.save(os.path.join(request["arrays"], "gguf_logits.npy"), np.asarray(llm.scores[: len(probe)], "float32"))
    greedy = []
    for prompt in request["prompts"]:
        llm.reset()
        ids = []
        for token in llm.generate(list(prompt), top_k=1, top_p=1.0, temp=0.0, repeat_penalty=1.0, reset=True):
            if token == llm.token_eos() or len(ids) >= request["max_new_tokens"]:
                break
            ids.append(int(token))
        greedy.append({"ids": ids, "text": llm.detokenize(ids).decode("utf-8", errors="replace")})
    result["greedy"] = greedy
    result["text_ids"] = [llm.tokenize(text.encode("utf-8"), add_bos=False, special=False) for text in request["texts"]]


def main(request_path):
    with open(request_path) as f:
        request = json.load(f)
    sys.meta_path.insert(0, Blocker(request["blocked"]))
    result = {"error": None}
    try:
        {"onnx": check_onnx, "litert": check_litert, "gguf": check_gguf}[request["format"]](request, result)
    except Exception as e:  # reported to the parent, which raises ExportError
        result["error"] = f"{type(e).__name__}: {e}\n{traceback.format_exc()[-3000:]}"
    result["blocked_modules_imported"] = sorted({m.split(".")[0] for m in sys.modules} & set(request["blocked"]))
    with open(request["result"], "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv[1])
