"""The llama.cpp side of a GGUF export: architectures, hyperparameters, tensor names, the tokenizer.

Weights are taken from the Transformers-named tensors that keras-hub's
exporter writes (`klm.export.hf_format`: the same mapping `--format hf`
uses and Transformers verifies), then renamed to llama.cpp's names with the
`gguf` package's `TensorNameMap` and reshaped as llama.cpp's own
`convert_hf_to_gguf.py` does:

- GPT-2 (`gpt2`): Transformers' `Conv1D` kernels are stored `(in, out)`,
  llama.cpp wants `(out, in)`: transposed; the output matrix is the tied
  token embedding.
- Llama (`llama`): llama.cpp rotates adjacent pairs, Transformers' Llama
  the two halves of each head: the query and key rows are permuted.
- Qwen 3 (`qwen3`): rotates halves as Transformers does (no permutation),
  query/key RMS norms per head; tied or untied output.

Everything here is NumPy and JSON (no Keras).
"""

import json
import os

import numpy as np

# keras-hub backbone class -> (llama.cpp architecture, tokenizer pre-tokenizer name).
ARCHITECTURES = {
    "GPT2Backbone": ("gpt2", "gpt-2"),
    "Llama3Backbone": ("llama", "llama-bpe"),
    "Qwen3Backbone": ("qwen3", "qwen2"),
}


def _permute(weights, n_head):
    # As llama.cpp's convert_hf_to_gguf.py LlamaModel.permute.
    return (
        weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def hyperparameters(arch, config):
    """`{writer method name: value}` of the GGUF keys for `arch` from a Transformers `config.json`."""
    if arch == "gpt2":
        hidden = config["n_embd"]
        return {
            "add_context_length": config["n_positions"],
            "add_embedding_length": hidden,
            "add_feed_forward_length": config.get("n_inner") or 4 * hidden,
            "add_block_count": config["n_layer"],
            "add_head_count": config["n_head"],
            "add_layer_norm_eps": config.get("layer_norm_epsilon", 1e-5),
        }
    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    values = {
        "add_context_length": config["max_position_embeddings"],
        "add_embedding_length": config["hidden_size"],
        "add_feed_forward_length": config["intermediate_size"],
        "add_block_count": config["num_hidden_layers"],
        "add_head_count": heads,
        "add_head_count_kv": config.get("num_key_value_heads") or heads,
        "add_layer_norm_rms_eps": config.get("rms_norm_eps", 1e-6),
        "add_rope_freq_base": float(config.get("rope_theta", 10000.0)),
        "add_rope_dimension_count": head_dim,
        "add_key_length": head_dim,
        "add_value_length": head_dim,
    }
    return values


def unsupported_config(arch, config):
    """The reason llama.cpp could not hold this config exactly, or `None`."""
    scaling = config.get("rope_scaling")
    if arch != "gpt2" and scaling and scaling.get("rope_type", scaling.get("type")) not in (None, "default"):
        return f"its rope_scaling {scaling} (klm writes unscaled rotary embeddings only)"
    if arch == "gpt2" and config.get("activation_function", "gelu_new") not in ("gelu_new", "gelu_pytorch_tanh"):
        return f"its activation {config.get('activation_function')!r} (llama.cpp's gpt2 uses tanh-approximated GELU)"
    return None


def gguf_tensors(arch, config, weights):
    """`[(llama.cpp name, float32 array)]` from Transformers-named `weights` (a dict of arrays)."""
    import gguf

    arch_enum = {v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}[arch]
    blocks = config.get("n_layer") or config["num_hidden_layers"]
    name_map = gguf.get_tensor_name_map(arch_enum, blocks)
    heads = config.get("n_head") or config.get("num_attention_heads")
    kv_heads = config.get("num_key_value_heads") or heads
    tensors = []
    for name, value in weights.items():
        value = np.asarray(value, dtype="float32")
        if arch == "gpt2" and name.endswith((".attn.bias", ".attn.masked_bias")):
            continue
        if arch == "gpt2" and name.endswith((".c_attn.weight", ".c_proj.weight", ".c_fc.weight")):
            value = value.T
        if arch == "llama" and name.endswith("q_proj.weight"):
            value = _permute(value, heads)
        if arch == "llama" and name.endswith("k_proj.weight"):
            value = _permute(value, kv_heads)
        new_name = name_map.get_name(name, try_suffixes=(".weight", ".bias"))
        if new_name is None:
            raise ValueError(f"No llama.cpp {arch} tensor for the Transformers weight {name!r}")
        tensors.append((new_name, np.ascontiguousarray(value)))
    names = {n for n, _ in tensors}
    if arch == "gpt2" and "output.weight" not in names:
        tensors.append(("output.weight", dict(tensors)["token_embd.weight"]))
    return tensors


def read_vocabulary(folder, vocabulary_size):
    """Tokens, token types, merges and special ids from the Transformers tokenizer files in `folder`."""
    import gguf

    with open(os.path.join(folder, "tokenizer.json"), encoding="utf-8") as f:
        spec = json.load(f)
    model = spec["model"]
    if model.get("type") != "BPE":
        raise ValueError(f"Expected a byte-level BPE tokenizer.json. Received: model type {model.get('type')!r}")
    by_id = {int(i): token for token, i in model["vocab"].items()}
    types = {}
    for added in spec.get("added_tokens", []):
        by_id[int(added["id"])] = added["content"]
        types[int(added["id"])] = gguf.TokenType.CONTROL if added.get("special") else gguf.TokenType.USER_DEFINED
    size = max(vocabulary_size, max(by_id) + 1)
    tokens, token_types = [], []
    for i in range(size):
        if i in by_id:
            tokens.append(by_id[i])
            token_types.append(int(types.get(i, gguf.TokenType.NORMAL)))
        else:  # rows of the embedding past the tokenizer's vocabulary
            tokens.append(f"[PAD{i}]")
            token_types.append(int(gguf.TokenType.UNUSED))
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    return tokens, token_types, merges
