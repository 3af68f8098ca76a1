"""`klm export SOURCE OUT --format gguf`: `OUT/model.gguf` for llama.cpp / Ollama, checked in llama-cpp-python.

The file holds the weights (f32, f16 or q8_0: `--gguf-type`, default the
model's own precision), the hyperparameters, the tokenizer (byte-level BPE:
tokens, merges, types, special ids, llama.cpp's pre-tokenizer name) and the
chat template when the checkpoint has one, written with the `gguf` package.
Architectures: those `klm.export.gguf_tensors.ARCHITECTURES` lists (GPT-2,
Llama 3 / SmolLM-style Llama, Qwen 3). Others are refused by name; so are
klm's own models: their GELU is the exact (erf) form while llama.cpp's
`gpt2` computes the tanh approximation, `small` uses rotary positions the
`gpt2` architecture lacks, and klm's tokenizers (word, WordPiece,
SentencePiece, byte) have no GGUF tokenizer model that reproduces them, so
no llama.cpp architecture holds them exactly.

Before OUT appears (a temporary folder beside it, renamed at the end), a
fresh process that can import llama-cpp-python and NumPy only loads the file
and must give (1) the logits of a probe sequence equal to klm's (1e-3 for
f32), (2) greedy continuations whose ids and text equal `klm generate`'s, and
(3) the same token ids as klm's tokenizer on sample texts.
"""

import json
import os
import tempfile

import numpy as np

from klm.errors import ConfigError
from klm.export.gguf_tensors import ARCHITECTURES, gguf_tensors, hyperparameters, read_vocabulary, unsupported_config
from klm.export.hf_format import _write as write_hf_folder
from klm.export.options import GGUF_TYPES
from klm.export.publish import file_sizes, require_runtime, run_isolated_check, staged_output
from klm.export.tokenizer_files import hf_tokenizer_json
from klm.generate import generate_text, tokens_to_list

CHECK_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "runtime_check.py")
# Largest accepted |llama.cpp - klm| logit difference: absolute for f32, relative to max |logit| otherwise.
TOLERANCES = {"f32": 1e-3, "f16": 2e-2, "q8_0": 1e-1}
# llama.cpp's CPU backend evaluates GELU through a float16 lookup table (GGML_GELU_FP16 in
# ggml-cpu/vec.h: input and output rounded to float16, ~5e-4 relative), so a float32 file of a GELU
# architecture cannot match to 1e-3 however exact its weights are: measured 1.7e-3 on the tiny GPT-2
# test checkpoint, where the SiLU Llama one matches to 3e-6. GELU architectures get this float32
# tolerance instead (greedy text must still be equal).
GELU_TABLE_F32_TOLERANCE = 5e-3
GELU_TABLE_ARCHITECTURES = ("gpt2",)
VERIFY_PROMPTS = ("The history of", "Perplexity is")
SAMPLE_TEXTS = ("The history of language models, in 3 short sentences.", "hello world 2024")


def default_gguf_type(model):
    """The model's own precision: f32 for a float32 model, f16 for float16 / bfloat16 ones."""
    return "f32" if model.dtype_policy.compute_dtype == "float32" else "f16"


def gguf_architecture(checkpoint):
    """`(llama.cpp architecture, pre-tokenizer)` for `checkpoint`; `ConfigError` naming why not."""
    from klm.models import KlmCausalLM

    model = checkpoint.model
    if not checkpoint.mode.generates:
        raise ConfigError(
            f"Cannot export to GGUF: {checkpoint.source.get('name')} is a {checkpoint.task}; llama.cpp runs causal "
            f"language models. Received: --format=gguf"
        )
    if isinstance(model, KlmCausalLM):
        backbone = model.backbone
        raise ConfigError(
            "Cannot export klm's own architecture (KlmCausalLM) to GGUF: no llama.cpp architecture holds it exactly "
            f"(this model: {backbone.position_encoding} positions, {backbone.activation} activation, "
            f"{'pre' if backbone.normalize_first else 'post'}-LN). llama.cpp's gpt2 computes tanh-approximated GELU "
            "where klm's is the exact erf form, has learned positions only (no rotary or sinusoidal), and klm's "
            "tokenizers have no GGUF tokenizer model. Export it as --format onnx or savedmodel, or start a run "
            "from a GPT-2 / Llama / Qwen checkpoint. Received: architecture='KlmCausalLM'"
        )
    name = type(model.backbone).__name__
    if name not in ARCHITECTURES:
        raise ConfigError(
            f"Cannot export {name} to GGUF: klm writes GGUF for {', '.join(sorted(ARCHITECTURES))}. "
            f"Received: architecture={name!r}"
        )
    return ARCHITECTURES[name]


def write_gguf(checkpoint, path, gguf_type, scratch):
    """Writes `path`; returns what it wrote (arch, tensors by type, chat template or `None`)."""
    import gguf

    arch, pre = gguf_architecture(checkpoint)
    model, tokenizer = checkpoint.model, checkpoint.tokenizer
    write_hf_folder(model, tokenizer, scratch)
    hf_tokenizer_json(tokenizer, scratch)
    with open(os.path.join(scratch, "config.json")) as f:
        config = json.load(f)
    reason = unsupported_config(arch, config)
    if reason:
        raise ConfigError(f"Cannot export to GGUF exactly: {reason}. Received: architecture={arch!r}")
    from safetensors.numpy import load_file

    weights = load_file(os.path.join(scratch, "model.safetensors"))
    writer = gguf.GGUFWriter(path, arch)
    writer.add_name(os.path.basename(str(checkpoint.source.get("name", "klm"))).rstrip("/") or "klm")
    for method, value in hyperparameters(arch, config).items():
        getattr(writer, method)(value)
    file_type = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16}.get(
        gguf_type, gguf.LlamaFileType.MOSTLY_Q8_0
    )
    writer.add_file_type(int(file_type))
    vocabulary_size = int(model.backbone.vocabulary_size)
    tokens, token_types, merges = read_vocabulary(scratch, vocabulary_size)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(token_types)
    writer.add_token_merges(merges)
    start_id, end_id = checkpoint.start_token_id, checkpoint.end_token_id
    if end_id is not None:
        writer.add_eos_token_id(int(end_id))
    bos = start_id if start_id is not None else end_id
    if bos is not None:
        writer.add_bos_token_id(int(bos))
    writer.add_add_bos_token(start_id is not None)
    chat_template = _chat_template(checkpoint, scratch)
    if chat_template:
        writer.add_chat_template(chat_template)
    counts = {}
    for name, value in gguf_tensors(arch, config, weights):
        qtype = _tensor_type(name, value, gguf_type)
        data = value if qtype == gguf.GGMLQuantizationType.F32 else gguf.quants.quantize(value, qtype)
        if qtype == gguf.GGMLQuantizationType.F16:
            data = value.astype("float16")
        writer.add_tensor(name, data, raw_dtype=qtype if qtype == gguf.GGMLQuantizationType.Q8_0 else None)
        counts[qtype.name] = counts.get(qtype.name, 0) + 1
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return {"architecture": arch, "pre_tokenizer": pre, "tensor_types": counts, "chat_template": chat_template}


def _tensor_type(name, value, gguf_type):
    """llama.cpp's rule: 1-D tensors (norms, biases) stay f32; q8_0 needs rows of a multiple of 32 values."""
    import gguf

    if value.ndim < 2 or gguf_type == "f32":
        return gguf.GGMLQuantizationType.F32
    if gguf_type == "q8_0" and value.shape[-1] % 32 == 0:
        return gguf.GGMLQuantizationType.Q8_0
    return gguf.GGMLQuantizationType.F16


def _chat_template(checkpoint, scratch):
    """The checkpoint's Jinja chat template (its `tokenizer_config.json`, or the source folder's), or `None`."""
    folders = [scratch]
    name = checkpoint.source.get("name")
    if name and os.path.isdir(str(name)):
        folders.append(str(name))
    for folder in folders:
        try:
            with open(os.path.join(folder, "tokenizer_config.json"), encoding="utf-8") as f:
                template = json.load(f).get("chat_template")
        except (OSError, ValueError):
            continue
        if template:
            return template
    return None


def export_gguf(checkpoint, out_dir, gguf_type=None, verify=True, max_new_tokens=8):
    """Writes `checkpoint` as `out_dir/model.gguf`, checked in llama-cpp-python before `out_dir` appears.

    Args:
        checkpoint: a `klm.pretrained.Checkpoint` of a causal LM (GPT-2,
            Llama, Qwen 3: a pretrained checkpoint or a klm run started
            from one).
        out_dir: the folder to create (must not exist, or be empty).
        gguf_type: `"f32"`, `"f16"`, `"q8_0"`, or `None` for the model's
            own precision.
        verify: run the llama-cpp-python check (recommended).
        max_new_tokens: greedy tokens compared per verify prompt.

    Returns:
        A dict: `path`, `format`, `gguf_type`, `architecture`, `files`
        (name -> bytes), `verified`, `max_abs_diff`, `tolerance`,
        `greedy_match`, `greedy` (klm's and llama.cpp's texts),
        `tokenizer_ids_match`, `chat_template` (bool).

    Example:

    ```python
    from klm.pretrained import load_checkpoint
    export_gguf(load_checkpoint("runs/gpt2-domain"), "out/gguf", gguf_type="q8_0")
    ```
    """
    if gguf_type is not None and gguf_type not in GGUF_TYPES:
        raise ConfigError(f"Expected --gguf-type in {', '.join(GGUF_TYPES)}. Received: --gguf-type={gguf_type!r}")
    gguf_architecture(checkpoint)
    require_runtime("gguf", "gguf", "Writing GGUF")
    if verify:
        require_runtime("llama_cpp", "gguf", "Checking the GGUF export (llama-cpp-python)")
    gguf_type = gguf_type or default_gguf_type(checkpoint.model)
    with staged_output(out_dir) as temp, tempfile.TemporaryDirectory(prefix="klm-gguf-") as scratch:
        path = os.path.join(temp, "model.gguf")
        written = write_gguf(checkpoint, path, gguf_type, scratch)
        result = {
            "path": os.path.abspath(out_dir),
            "format": "gguf",
            "gguf_type": gguf_type,
            "architecture": written["architecture"],
            "tensor_types": written["tensor_types"],
            "chat_template": bool(written["chat_template"]),
            "verified": False,
        }
        if verify:
            result.update(verify_gguf(checkpoint, path, gguf_type, max_new_tokens))
        result["files"] = file_sizes(temp)
    return result


def verify_gguf(checkpoint, path, gguf_type, max_new_tokens):
    """Runs `path` in llama-cpp-python alone and compares logits, greedy text and token ids with klm's."""
    import keras

    model, tokenizer = checkpoint.model, checkpoint.tokenizer
    start_id = checkpoint.start_token_id
    vocabulary_size = int(model.backbone.vocabulary_size)
    probe = np.random.default_rng(0).integers(0, vocabulary_size, size=(16,)).astype("int32")
    if start_id is not None:
        probe[0] = start_id
    prompts = [
        ([start_id] if start_id is not None else []) + ids
        for ids in tokens_to_list(tokenizer.tokenize(list(VERIFY_PROMPTS)))
    ]
    with tempfile.TemporaryDirectory(prefix="klm-gguf-check-") as arrays:
        check = run_isolated_check(
            CHECK_SCRIPT,
            {
                "format": "gguf",
                "model": path,
                "arrays": arrays,
                "probe": probe.tolist(),
                "prompts": prompts,
                "max_new_tokens": max_new_tokens,
                "texts": list(SAMPLE_TEXTS),
            },
            allowed=(),
            what="The llama-cpp-python check",
        )
        theirs = np.load(os.path.join(arrays, "gguf_logits.npy"))
    ours = model({"token_ids": probe[None, :], "padding_mask": np.ones((1, probe.size), "int32")}, training=False)
    ours = keras.ops.convert_to_numpy(keras.ops.cast(ours, "float32"))[0]
    diff = float(np.abs(ours - theirs).max())
    tolerance = TOLERANCES[gguf_type] * (1.0 if gguf_type == "f32" else max(1.0, float(np.abs(ours).max())))
    if gguf_type == "f32" and gguf_architecture(checkpoint)[0] in GELU_TABLE_ARCHITECTURES:
        tolerance = GELU_TABLE_F32_TOLERANCE
    problems = []
    if not diff <= tolerance:
        problems.append(f"logits differ from klm's by {diff:.3g} > {tolerance:.3g}")
    expected = generate_text(checkpoint, list(VERIFY_PROMPTS), max_new_tokens=max_new_tokens, sampler="greedy")
    got = [row["text"] for row in check["greedy"]]
    greedy_match = got == expected
    if not greedy_match and gguf_type != "q8_0":
        problems.append(f"greedy text {got!r} != klm generate's {expected!r}")
    ours_ids = [np.asarray(tokenizer.tokenize(text)).reshape(-1).tolist() for text in SAMPLE_TEXTS]
    if ours_ids != check["text_ids"]:
        problems.append(f"the GGUF tokenizer gives {check['text_ids']} on {list(SAMPLE_TEXTS)}, klm's {ours_ids}")
    if problems:
        raise ConfigError("The GGUF file does not match klm's model; nothing was written: " + "; ".join(problems))
    return {
        "verified": True,
        "max_abs_diff": diff,
        "tolerance": tolerance,
        "greedy_match": greedy_match,
        "greedy": {"klm": expected, "llama_cpp": got},
        "tokenizer_ids_match": True,
    }
