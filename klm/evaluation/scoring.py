"""Batched scoring and generation behind `KlmLM` (backend-neutral: `keras.ops` and NumPy).

`score_batch` is lm-eval's `HFLM._loglikelihood_tokens` for one batch:
the last `max_length + 1` tokens of context + continuation, the final one
dropped as input, right-padded; one forward pass; float32 log-softmax read
at the continuation's positions only (the `(batch, length, vocabulary)`
log-probabilities are never materialized).

`generate_batch` decodes a batch of prompts of different lengths with the
key/value cache in lock step over absolute positions, as keras-hub's
`generate()` does: the cache is built from the shortest prompt; at each
position a row whose prompt is longer is fed its own next prompt token,
the others the token just chosen. Every row thus sees exactly its own
prompt at positions `0 .. n - 1` (no padding inside the sequence), which is
what Transformers' left-padded `generate` computes too.

Shapes are bucketed (lengths rounded up to a multiple of `BUCKET`, batches
filled with empty rows to the batch size) so that JAX and TensorFlow, which
compile per input shape, compile a handful of shapes instead of one per batch.
Right padding and empty rows change nothing for the real positions (causal
attention, rows independent).
"""

import numpy as np

from klm.generate import position_limit

BUCKET = 16


def _round_up(value, multiple, limit=None):
    rounded = -(-value // multiple) * multiple
    return max(value, min(rounded, limit)) if limit else rounded


def score_batch(model, requests, max_length, rows=None):
    """`[(log-probability of the continuation, is_greedy)]` for `[(key, context_ids, continuation_ids)]`.

    `rows`: the batch size to pad to (default: the number of requests).
    """
    from keras import ops

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
    logits = model({"token_ids": token_ids, "padding_mask": mask}, training=False)
    logits = ops.cast(logits, "float32")
    log_z = ops.logsumexp(logits, axis=-1)
    picked = ops.squeeze(ops.take_along_axis(logits, ops.expand_dims(ops.convert_to_tensor(targets), -1), axis=-1), -1)
    greedy = ops.convert_to_numpy(ops.argmax(logits, axis=-1))
    logprobs = ops.convert_to_numpy(picked - log_z)
    results = []
    for row, (_, _, continuation) in enumerate(requests):
        count = len(continuation)
        end = lengths[row]
        start = end - count
        cont_logprobs = logprobs[row, start:end]
        is_greedy = bool(np.array_equal(greedy[row, start:end], targets[row, start:end]))
        results.append((float(cont_logprobs.sum()), is_greedy))
    return results


def generate_batch(model, prompts, max_new_tokens, sampler, end_token_id, stop, decode, rows=None):
    """Continuations of `prompts` (lists of ids), each cut at its first stop string.

    Args:
        model: a `KlmCausalLM` or keras-hub `CausalLM`.
        prompts: token-id lists, non-empty.
        max_new_tokens: tokens to generate at most per row.
        sampler: a keras-hub sampler (batched `(batch, vocabulary)` logits).
        end_token_id: a row stops before this id (`None`: never).
        stop: strings; a row stops once its text holds one, and is cut there.
        decode: `ids -> text` (special tokens dropped).
        rows: the batch size to pad to with empty rows (default: `len(prompts)`).

    Returns:
        A list of strings, one per prompt.
    """
    from keras import ops

    from klm import backend, decoding

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
    # The cache is built from a bucketed prefix; the prompts' next tokens are decoded one by one.
    prefix = shortest // BUCKET * BUCKET or 1
    with backend.decoding_scope():
        cache = decoding.build_cache(model, ops.convert_to_tensor(ids[:, :prefix]), total)
        index = prefix - 1
        logits, cache = decoding.decode_step(model, ops.convert_to_tensor(ids[:, index : index + 1]), cache, index)
        while True:
            chosen = np.asarray(ops.convert_to_numpy(sampler.get_next_token(sampler.compute_probabilities(logits))))
            position = index + 1
            for row in range(len(prompts)):
                if position < lengths[row]:
                    continue  # still inside this row's prompt
                token = int(chosen.reshape(-1)[row])
                if done[row]:
                    ids[row, position] = 0
                    continue
                ids[row, position] = token
                if token == end_token_id:
                    done[row] = True
                    continue
                generated[row].append(token)
                if len(generated[row]) >= max_new_tokens or (stop and _has_stop(decode(generated[row]), stop)):
                    done[row] = True
            if all(done[:count]) or position + 1 >= total:
                break
            index = position
            logits, cache = decoding.decode_step(model, ops.convert_to_tensor(ids[:, index : index + 1]), cache, index)
    return [_cut(decode(tokens), stop) for tokens in generated[:count]]


def _has_stop(text, stop):
    return any(s in text for s in stop)


def _cut(text, stop):
    for s in stop:
        text = text.split(s)[0]
    return text
