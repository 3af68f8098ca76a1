"""Tiny random Hugging Face checkpoints for klm's tests (no network).

`make_hf_checkpoint(kind, path)` writes a folder exactly as
`transformers`' `save_pretrained` does (`config.json`, `model.safetensors`)
plus the tokenizer files the real checkpoints ship, with a byte-level BPE
trained here with the `tokenizers` library on a few KB of text:

- `"gpt2"`: `GPT2LMHeadModel`, `vocab.json` + `merges.txt` (what keras-hub's
  GPT-2 converter reads) + `tokenizer.json` + `tokenizer_config.json`.
- `"llama"`: `LlamaForCausalLM` (grouped-query attention, untied output),
  `tokenizer.json` with Llama 3's split regex and special tokens +
  `tokenizer_config.json` (what keras-hub's Llama 3 converter reads).
- `"qwen3"`: `Qwen3ForCausalLM` (tied embeddings), `tokenizer.json`.

Weights are drawn with a larger `initializer_range` than real models so that
logits are far from uniform and greedy decoding has no near-ties.
"""

import json
import os

CORPUS = """\
The history of the language model begins with counting words. A model of
language assigns a probability to every sequence of words; the chain rule
writes it as a product of next-word probabilities. Early models counted
n-grams in large corpora, smoothed the counts and backed off to shorter
contexts when a long context had never been seen.
Neural models replaced the counts with learned vectors. A recurrent network
reads one word at a time and carries a hidden state; a Transformer attends to
every earlier position at once, and its keys and values can be cached so that
generation costs one position per new token.
Pretrained checkpoints made the models reusable: one trains a large model on
a large corpus once, and many people fine-tune it on their own small data,
often with low-rank adapters that train only a few parameters.
Perplexity is the exponential of the mean negative log-likelihood of the next
token. Lower is better; a uniform model over V tokens has perplexity V.
Numbers 0 1 2 3 4 5 6 7 8 9 10 11 12 100 2024 and punctuation: , . ; : ! ? ( ) " '
"""

GPT2_SPECIALS = ["<|endoftext|>"]
LLAMA_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"]
QWEN3_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
KINDS = ("gpt2", "llama", "qwen3")


def _train_bpe(specials, llama_split, vocab_size):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    if llama_split:
        import keras  # noqa: F401 - before keras_hub (see klm/__init__.py's registration hook)
        from keras_hub.src.tokenizers.byte_pair_tokenizer import SPLIT_PATTERN_TOKENIZERS

        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(SPLIT_PATTERN_TOKENIZERS), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    else:
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(specials),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS.splitlines() * 4, trainer=trainer)
    return tokenizer


def _write_json(path, data):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, ensure_ascii=False)


def make_hf_checkpoint(kind, path, vocab_size=320, hidden=32, layers=2, seed=0, initializer_range=0.2):
    """Writes a tiny random Transformers checkpoint of `kind` into `path`.

    Args:
        kind: `"gpt2"`, `"llama"` or `"qwen3"`.
        path: the folder to create.

    Returns:
        `path` as a string.
    """
    import torch
    import transformers

    if kind not in KINDS:
        raise ValueError(f"Expected kind in {KINDS}. Received: kind={kind!r}")
    path = str(path)
    os.makedirs(path, exist_ok=True)
    specials = {"gpt2": GPT2_SPECIALS, "llama": LLAMA_SPECIALS, "qwen3": QWEN3_SPECIALS}[kind]
    tokenizer = _train_bpe(specials, llama_split=kind != "gpt2", vocab_size=vocab_size)
    vocab = tokenizer.get_vocab()
    vocab_size = len(vocab)
    tokenizer.save(os.path.join(path, "tokenizer.json"))
    torch.manual_seed(seed)
    if kind == "gpt2":
        tokenizer.model.save(path)  # vocab.json + merges.txt
        eos = vocab["<|endoftext|>"]
        _write_json(
            os.path.join(path, "tokenizer_config.json"),
            {
                "tokenizer_class": "GPT2Tokenizer",
                "bos_token": "<|endoftext|>",
                "eos_token": "<|endoftext|>",
                "unk_token": "<|endoftext|>",
                "add_prefix_space": False,
            },
        )
        config = transformers.GPT2Config(
            vocab_size=vocab_size,
            n_positions=64,
            n_embd=hidden,
            n_layer=layers,
            n_head=2,
            bos_token_id=eos,
            eos_token_id=eos,
            initializer_range=initializer_range,
        )
        model = transformers.GPT2LMHeadModel(config)
    elif kind == "llama":
        bos, eos = vocab["<|begin_of_text|>"], vocab["<|end_of_text|>"]
        _write_json(
            os.path.join(path, "tokenizer_config.json"),
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "bos_token": "<|begin_of_text|>",
                "eos_token": "<|end_of_text|>",
                "add_bos_token": True,
                "clean_up_tokenization_spaces": False,
            },
        )
        config = transformers.LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_hidden_layers=layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=128,
            rms_norm_eps=1e-6,
            tie_word_embeddings=False,
            bos_token_id=bos,
            eos_token_id=eos,
            initializer_range=initializer_range,
        )
        model = transformers.LlamaForCausalLM(config)
    else:
        eos = vocab["<|endoftext|>"]
        _write_json(
            os.path.join(path, "tokenizer_config.json"),
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "eos_token": "<|endoftext|>",
                "pad_token": "<|endoftext|>",
                "clean_up_tokenization_spaces": False,
            },
        )
        config = transformers.Qwen3Config(
            vocab_size=vocab_size,
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_hidden_layers=layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=hidden // 4,
            max_position_embeddings=128,
            rms_norm_eps=1e-6,
            tie_word_embeddings=True,
            bos_token_id=None,
            eos_token_id=eos,
            initializer_range=initializer_range,
        )
        model = transformers.Qwen3ForCausalLM(config)
    model.eval()
    model.save_pretrained(path, safe_serialization=True)
    return path


def hf_logits(path, token_ids):
    """Logits of the Transformers model in `path` on int `token_ids` `(batch, seq)`, as float32 NumPy."""
    import numpy as np
    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.eval()
    with torch.no_grad():
        out = model(torch.as_tensor(np.asarray(token_ids), dtype=torch.long))
    return out.logits.float().numpy()


_CACHE = {}


def cached_hf_checkpoint(kind):
    """`make_hf_checkpoint(kind, ...)` built once per process in a temporary folder (shared by test files)."""
    import atexit
    import shutil
    import tempfile

    if kind not in _CACHE:
        root = tempfile.mkdtemp(prefix=f"klm-hf-{kind}-")
        atexit.register(shutil.rmtree, root, True)
        _CACHE[kind] = make_hf_checkpoint(kind, os.path.join(root, kind))
    return _CACHE[kind]


def copy_checkpoint(source, target, drop=()):
    """Copies a checkpoint folder, leaving out the file names in `drop`."""
    import shutil

    os.makedirs(target, exist_ok=True)
    for name in os.listdir(source):
        if name not in drop:
            shutil.copy(os.path.join(source, name), os.path.join(target, name))
    return str(target)


def hf_loss(path, token_ids):
    """`model(input_ids=ids, labels=ids).loss` of the Transformers model in `path`, one row."""
    import numpy as np
    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.eval()
    ids = torch.as_tensor(np.asarray(token_ids, "int64").reshape(1, -1))
    with torch.no_grad():
        return float(model(input_ids=ids, labels=ids).loss)


def hf_greedy(path, prompt_ids, max_new_tokens):
    """Transformers' `generate(do_sample=False)` continuation of one prompt (no stop token)."""
    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.eval()
    ids = torch.as_tensor([list(prompt_ids)], dtype=torch.long)
    with torch.no_grad():
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            min_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=None,
            pad_token_id=0,
        )
    return out[0, ids.shape[1] :].tolist()
