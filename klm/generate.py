"""Text generation from a language-model run, with the KV cache and streaming."""

import numpy as np

from klm.errors import ConfigError, RunDirError


def make_sampler(name, temperature=1.0, top_k=10, top_p=0.9, seed=None):
    """A keras-hub sampler for `name` in greedy, top_k, top_p, random."""
    import keras_hub

    samplers = keras_hub.samplers
    if name == "greedy":
        return samplers.GreedySampler(temperature=temperature)
    if name == "top_k":
        return samplers.TopKSampler(k=top_k, temperature=temperature, seed=seed)
    if name == "top_p":
        return samplers.TopPSampler(p=top_p, temperature=temperature, seed=seed)
    if name == "random":
        return samplers.RandomSampler(temperature=temperature, seed=seed)
    raise ConfigError(f"Expected --sampler in greedy, top_k, top_p, random. Received: --sampler={name!r}")


def _tokens_to_list(tokenized):
    """Token ids per prompt as Python lists (ragged: prompts differ in length)."""
    if hasattr(tokenized, "to_list"):  # tf.RaggedTensor
        return tokenized.to_list()
    if isinstance(tokenized, (list, tuple)):  # ragged output on JAX/PyTorch
        return [[int(i) for i in np.asarray(row).reshape(-1)] for row in tokenized]
    return [[int(i) for i in row] for row in np.asarray(tokenized)]


def generate_text(run, prompts, max_new_tokens=50, sampler="greedy", temperature=1.0, top_k=10,
                  top_p=0.9, seed=None, on_token=None):
    """Continues each prompt with up to `max_new_tokens` tokens.

    Decoding runs one token at a time through `KlmCausalLM.call_with_cache`
    (the prompt fills the key/value cache once, each new token costs one
    position), and the keras-hub sampler picks each token. Generation of a
    row stops at the tokenizer's end-of-text token.

    Args:
        run: a `klm.runs.Run` of a language model.
        prompts: list of strings.
        on_token: optional callback `(row, new_text)` called as soon as each
            token is chosen (streaming), with the text it added.

    Returns:
        List of generated continuations (without the prompt).
    """
    from keras import ops

    if run.task != "causal_lm":
        raise RunDirError(f"Expected a language-model run for generation. Received: task={run.task!r}")
    model, tokenizer = run.model, run.tokenizer
    sampler_obj = make_sampler(sampler, temperature, top_k, top_p, seed)
    encoded = _tokens_to_list(tokenizer.tokenize(list(prompts)))
    end_id = getattr(tokenizer, "end_token_id", None)
    pad_id = getattr(tokenizer, "pad_token_id", 0) or 0
    outputs = []
    for row, prompt_ids in enumerate(encoded):
        if not prompt_ids:
            prompt_ids = [end_id if end_id is not None else pad_id]
        total = len(prompt_ids) + max_new_tokens
        limit = getattr(model.backbone, "max_sequence_length", total)
        if model.backbone.position_encoding == "learned" and total > limit:
            raise ConfigError(
                f"Prompt ({len(prompt_ids)} tokens) + --max-new-tokens {max_new_tokens} exceeds the model's "
                f"{limit} positions. Received: --max-new-tokens={max_new_tokens}"
            )
        ids = np.full((1, total), pad_id, dtype="int32")
        ids[0, : len(prompt_ids)] = prompt_ids
        _, cache = model._build_cache(ops.convert_to_tensor(ids[:, : len(prompt_ids)]))
        # _build_cache sized the cache for the prompt; grow it to the full length.
        cache = ops.pad(cache, [[0, 0], [0, 0], [0, 0], [0, max_new_tokens], [0, 0], [0, 0]])
        logits, _, cache = model.call_with_cache(
            ops.convert_to_tensor(ids[:, len(prompt_ids) - 1 : len(prompt_ids)]), cache, len(prompt_ids) - 1
        )
        generated, text = [], ""
        for index in range(len(prompt_ids), total):
            probabilities = sampler_obj.compute_probabilities(ops.squeeze(logits, axis=1))
            next_id = int(ops.convert_to_numpy(sampler_obj.get_next_token(probabilities))[0])
            if end_id is not None and next_id == end_id:
                break
            generated.append(next_id)
            if on_token is not None:
                # Decode the whole continuation and emit the new suffix, so
                # multi-byte characters and subword joins come out right.
                new_text = _detokenize(tokenizer, generated)
                on_token(row, new_text[len(text):])
                text = new_text
            if index + 1 < total:
                logits, _, cache = model.call_with_cache(
                    ops.convert_to_tensor(np.array([[next_id]], "int32")), cache, index
                )
        outputs.append(_detokenize(tokenizer, generated))
    return outputs


def _detokenize(tokenizer, ids):
    if not ids:
        return ""
    text = tokenizer.detokenize([ids])
    text = np.asarray(text).reshape(-1)[0]
    return text.decode("utf-8", errors="replace") if isinstance(text, bytes) else str(text)
