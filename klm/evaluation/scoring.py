"""Batched scoring and generation behind `KlmLM` (backend-neutral: `keras.ops` and NumPy).

`score_batch` is lm-eval's `HFLM._loglikelihood_tokens` for one batch:
the last `max_length + 1` tokens of context + continuation, the final one
dropped as input, right-padded; one forward pass; float32 log-softmax read
at the continuation's positions only (the `(batch, length, vocabulary)`
log-probabilities are never materialized).

`generate_batch` decodes a batch of prompts of different lengths with the
key/value cache in lock step over absolute positions, as keras-hub's
`generate()` does: decoding starts after the shortest prompt; at each
position a row whose prompt is longer is fed its own next prompt token,
the others the token just chosen. Every row thus sees exactly its own
prompt at positions `0 .. n - 1` (no padding inside the sequence), which is
what Transformers' left-padded `generate` computes too.

Every model call (the scoring forward pass, building the cache, each
decoding step) runs compiled on JAX and TensorFlow (`ModelFunctions`, through
`klm.backend.compile_model_function`, keras-hub's way of compiling
`generate()`); PyTorch runs eagerly. Shapes are bucketed (lengths rounded up
to a multiple of `BUCKET`, batches filled with empty rows to the batch size)
so that JAX and TensorFlow, which compile per input shape, compile a handful
of shapes instead of one per batch; the decoding position is a traced
argument, so one program serves every step. Right padding and empty rows
change nothing for the real positions (causal attention, rows independent).

Stop strings are looked for every `STOP_CHECK_EVERY` decoding steps, with
one tokenizer call for all the rows still running, not after every token.
A row may thus run a few tokens past its stop string; its text is cut at the
first stop string all the same, so the outputs are those of a check after
every token (and, like lm-eval's `hf` model, which cuts each row after the
whole batch stopped, the cut is made on the row's full text).
"""

import numpy as np

from klm.generate import position_limit

BUCKET = 16
STOP_CHECK_EVERY = 4


def _round_up(value, multiple, limit=None):
    rounded = -(-value // multiple) * multiple
    return max(value, min(rounded, limit)) if limit else rounded


class ModelFunctions:
    """The compiled model calls of `score_batch` and `generate_batch` for one model.

    Made once per model and reused: JAX and TensorFlow keep one compiled
    program per input shape.

    Args:
        model: a `KlmCausalLM` or keras-hub `CausalLM`.
    """

    def __init__(self, model):
        from keras import ops

        from klm import backend, decoding

        self.model = model

        def score(token_ids, padding_mask, targets):
            logits = ops.cast(model({"token_ids": token_ids, "padding_mask": padding_mask}, training=False), "float32")
            log_z = ops.logsumexp(logits, axis=-1)
            picked = ops.squeeze(ops.take_along_axis(logits, ops.expand_dims(targets, -1), axis=-1), -1)
            return picked - log_z, ops.argmax(logits, axis=-1)

        def build(prompt_ids, total):
            return decoding.build_cache(model, prompt_ids, total)

        def step(token_ids, cache, index):
            return decoding.decode_step(model, token_ids, cache, index)

        self.score = backend.compile_model_function(model, score)
        self.build = backend.compile_model_function(model, build, static_argnums=(1,))
        self.step = backend.compile_model_function(model, step)


def score_batch(model, requests, max_length, rows=None, functions=None):
    """`[(log-probability of the continuation, is_greedy)]` for `[(key, context_ids, continuation_ids)]`.

    Args:
        model: a `KlmCausalLM` or keras-hub `CausalLM`.
        requests: `[(key, context_ids, continuation_ids)]`.
        max_length: the model's context in tokens.
        rows: the batch size to pad to (default: the number of requests).
        functions: the model's `ModelFunctions` (default: made for this call).
    """
    from keras import ops

    functions = functions or ModelFunctions(model)
    sequences = [(list(context) + list(continuation))[-(max_length + 1) :] for _, context, continuation in requests]
    lengths = [len(seq) - 1 for seq in sequences]
    width = _round_up(max(lengths), BUCKET, max_length)
    rows = max(rows or 0, len(requests))
    token_ids = np.zeros((rows, width), "int32")
    targets = np.zeros((rows, width), "int32")
    mask = np.zeros((rows, width), "int32")
    for row, seq in enumerate(sequences):
        token_ids[row, : lengths[row]] = seq[:-1]
        targets[row, : lengths[row]] = seq[1:]
        mask[row, : lengths[row]] = 1
    logprobs, greedy = functions.score(token_ids, mask, targets)
    logprobs, greedy = ops.convert_to_numpy(logprobs), ops.convert_to_numpy(greedy)
    results = []
    for row, (_, _, continuation) in enumerate(requests):
        count = len(continuation)
        end = lengths[row]
        start = end - count
        cont_logprobs = logprobs[row, start:end]
        is_greedy = bool(np.array_equal(greedy[row, start:end], targets[row, start:end]))
        results.append((float(cont_logprobs.sum()), is_greedy))
    return results


def generate_batch(model, prompts, max_new_tokens, sampler, end_token_id, stop, decode_many, rows=None, functions=None):
    """Continuations of `prompts` (lists of ids), each cut at its first stop string.

    Args:
        model: a `KlmCausalLM` or keras-hub `CausalLM`.
        prompts: token-id lists, non-empty.
        max_new_tokens: tokens to generate at most per row.
        sampler: a keras-hub sampler (batched `(batch, vocabulary)` logits).
        end_token_id: a row stops before this id (`None`: never).
        stop: strings; a row stops once its text holds one, and is cut there.
        decode_many: `[ids] -> [text]` (special tokens dropped), one call for many rows.
        rows: the batch size to pad to with empty rows (default: `len(prompts)`).
        functions: the model's `ModelFunctions` (default: made for this call).

    Returns:
        A list of strings, one per prompt.
    """
    from keras import ops

    functions = functions or ModelFunctions(model)
    count = len(prompts)
    shortest = min(len(p) for p in prompts)
    prompts = list(prompts) + [prompts[0][:shortest]] * (max(rows or 0, count) - count)  # empty rows
    lengths = [len(p) for p in prompts]
    total = _round_up(max(lengths) + max_new_tokens, BUCKET, position_limit(model))
    ids = np.zeros((len(prompts), total), "int32")
    for row, prompt in enumerate(prompts):
        ids[row, : len(prompt)] = prompt
    generated = [[] for _ in prompts]
    done = [row >= count for row in range(len(prompts))]
    stop = [s for s in stop or () if s]
    # The cache is built over the prompts right-padded to a bucketed width (a few compiled shapes): what lies
    # past a row's prompt is rewritten before any later position can see it (causal attention). Decoding starts
    # at the shortest prompt's last token; longer rows are fed their own prompt tokens until theirs end.
    prefix = min(_round_up(shortest, BUCKET), total)
    cache = functions.build(ids[:, :prefix], total)
    index = shortest - 1
    logits, cache = functions.step(ids[:, index : index + 1], cache, index)
    steps = 0
    while True:
        chosen = np.asarray(ops.convert_to_numpy(sampler.get_next_token(sampler.compute_probabilities(logits))))
        chosen = chosen.reshape(-1)
        position = index + 1
        steps += 1
        for row in range(len(prompts)):
            if position < lengths[row]:
                continue  # still inside this row's prompt
            if done[row]:
                ids[row, position] = 0
                continue
            token = int(chosen[row])
            ids[row, position] = token
            if token == end_token_id:
                done[row] = True
                continue
            generated[row].append(token)
            if len(generated[row]) >= max_new_tokens:
                done[row] = True
        last = position + 1 >= total
        if stop and (steps % STOP_CHECK_EVERY == 0 or last):
            running = [row for row in range(count) if not done[row] and generated[row]]
            for row, text in zip(running, decode_many([generated[row] for row in running])):
                done[row] = _has_stop(text, stop)
        if all(done[:count]) or last:
            break
        index = position
        logits, cache = functions.step(ids[:, index : index + 1], cache, index)
    return [_cut(text, stop) for text in decode_many(generated[:count])]


def _has_stop(text, stop):
    return any(s in text for s in stop)


def _cut(text, stop):
    for s in stop:
        text = text.split(s)[0]
    return text
