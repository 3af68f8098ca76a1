"""The in-graph generation loop behind the `generate` and `generate_top_k` signatures.

`generate_function(run, sampling)` returns a Python callable of TensorFlow
ops (TensorFlow backend only): raw prompt strings in, the run's tokenizer
and model inside the graph, generated text out. The prompts fill a key/value
cache once (`klm.decoding.build_cache`), then a `tf.while_loop` adds one
token per step (`klm.decoding.decode_step`, the step `klm generate` takes)
and stops when every row has produced the end-of-text token or
`max_new_tokens` tokens.

The cache is the model's own: klm's `KlmCausalLM` layout, or whatever a
keras-hub `CausalLM` (GPT-2, Llama, ...) builds, so runs started from a
pretrained checkpoint export like klm's own. The loop carries it with the
static shape it was built with (batch and length dynamic).

Prompts follow `klm generate`: a pretrained run's start token first (when
its checkpoint adds one), an SFT run's template around the raw prompt, and
the end-of-text token for an empty prompt.
"""

from klm.export.core_ops import core_ops_only
from klm.export.signatures import end_token_id, pad_token_id, ragged_ids, sft_prompt_parts, start_token_id


def position_limit(model):
    """The most positions the model encodes, or `None` (klm's rotary/sinusoidal models; keras-hub's without one)."""
    from klm.models import KlmCausalLM

    backbone = model.backbone
    if isinstance(model, KlmCausalLM):
        return int(backbone.max_sequence_length) if backbone.position_encoding == "learned" else None
    limit = getattr(backbone, "max_sequence_length", None)
    return None if limit is None else int(limit)


def _prompt_ids(tokenizer, prompts, template, first_id, end_id):
    """Ragged int32 ids of `[batch]` prompt strings, as `klm generate` builds them."""
    import tensorflow as tf

    if template is not None:  # an SFT run: the template around the raw prompt, as `klm generate`
        before, after = template
        prompts = tf.strings.join([tf.fill(tf.shape(prompts), before), prompts, tf.fill(tf.shape(prompts), after)])
    ids = ragged_ids(tokenizer, prompts)
    if first_id is not None:
        starts = tf.RaggedTensor.from_tensor(tf.fill([ids.nrows(), 1], tf.constant(first_id, tf.int32)))
        ids = tf.concat([starts, ids], axis=1)
    # An empty prompt starts from the end-of-text token (as `klm generate`).
    empty = tf.equal(ids.row_lengths(), 0)
    filler = tf.RaggedTensor.from_row_lengths(
        tf.fill([tf.reduce_sum(tf.cast(empty, tf.int32))], tf.constant(end_id, tf.int32)),
        tf.cast(empty, tf.int64),
    )
    return tf.concat([ids, filler], axis=1)


def generate_function(run, sampling=False):
    """The in-graph generation loop (greedy, or top-k sampling with a seed).

    Returns `fn(prompts, max_new_tokens[, top_k, temperature, seed])` ->
    `{generated_text, num_generated_tokens}`.
    """
    import tensorflow as tf

    from klm import decoding

    model, tokenizer = run.model, run.tokenizer
    pad_id, end_id = pad_token_id(tokenizer), end_token_id(tokenizer)
    vocabulary_size = int(model.backbone.vocabulary_size)
    max_positions = position_limit(model)
    template, first_id = sft_prompt_parts(run), start_token_id(run)
    if template is not None:  # an SFT run: its own start token (if any), as `klm generate`
        template, first_id = template[:2], template[2]

    def generate(prompts, max_new_tokens, top_k=None, temperature=None, seed=None):
        checks = [
            tf.debugging.assert_non_negative(max_new_tokens, message="Expected max_new_tokens >= 0"),
        ]
        if sampling:
            checks += [
                tf.debugging.assert_positive(top_k, message="Expected top_k >= 1"),
                tf.debugging.assert_positive(temperature, message="Expected temperature > 0"),
            ]
        ids = _prompt_ids(tokenizer, prompts, template, first_id, end_id)
        lengths = tf.cast(ids.row_lengths(), tf.int32)
        batch_size = tf.shape(lengths)[0]
        prompt_width = tf.reduce_max(tf.concat([lengths, [1]], axis=0))
        total = prompt_width + max_new_tokens
        if max_positions is not None:
            checks.append(
                tf.debugging.assert_less_equal(
                    total,
                    max_positions,
                    message=(
                        f"Expected the longest prompt + max_new_tokens <= {max_positions} (the positions of the model)"
                    ),
                )
            )
        with tf.control_dependencies(checks):
            prompt_ids = ids.to_tensor(default_value=pad_id, shape=[None, None])
            prompt_ids = tf.pad(
                prompt_ids, [[0, 0], [0, prompt_width - tf.shape(prompt_ids)[1]]], constant_values=pad_id
            )
        # Fill the cache with the prompts once, sized for the new tokens too.
        cache = decoding.build_cache(model, prompt_ids, total)
        token_ids = tf.pad(prompt_ids, [[0, 0], [0, max_new_tokens]], constant_values=pad_id)
        in_prompt = tf.sequence_mask(lengths, total)
        stop_at = lengths + max_new_tokens  # exclusive, per row
        positions = tf.range(total)
        if sampling:
            k = tf.minimum(top_k, vocabulary_size)

        def body(index, token_ids, cache, done):
            previous = tf.slice(token_ids, [0, index - 1], [batch_size, 1])
            logits, cache = decoding.decode_step(model, previous, cache, index - 1)
            logits = tf.cast(logits, tf.float32)
            if sampling:
                probabilities = tf.nn.softmax(logits / temperature, axis=-1)
                top_probabilities, top_indices = tf.math.top_k(probabilities, k=k, sorted=False)
                choice = tf.random.stateless_categorical(
                    tf.math.log(top_probabilities), 1, seed=tf.stack([seed, index]), dtype=tf.int32
                )
                next_ids = tf.gather(top_indices, choice, batch_dims=1)[:, 0]
            else:
                # As keras-hub's GreedySampler: argmax of the softmax.
                next_ids = tf.argmax(tf.nn.softmax(logits, axis=-1), axis=-1, output_type=tf.int32)
            keep_prompt = in_prompt[:, index]
            next_ids = tf.where(keep_prompt, token_ids[:, index], next_ids)
            token_ids = tf.where(tf.equal(positions, index)[None, :], next_ids[:, None], token_ids)
            finished = tf.logical_and(tf.logical_not(keep_prompt), tf.equal(next_ids, end_id))
            done = done | finished | (index + 1 >= stop_at)
            return index + 1, token_ids, cache, done

        def cond(index, token_ids, cache, done):
            return tf.logical_and(index < total, tf.logical_not(tf.reduce_all(done)))

        start = tf.reduce_min(tf.concat([lengths, [prompt_width]], axis=0))
        done = tf.fill([batch_size], max_new_tokens <= 0)
        # Any cache layout: the shapes it was built with (batch and length are dynamic).
        cache_shape = tf.nest.map_structure(lambda tensor: tensor.shape, cache)
        _, token_ids, _, _ = tf.while_loop(
            cond,
            body,
            (start, token_ids, cache, done),
            shape_invariants=(
                tf.TensorShape([]),
                tf.TensorShape([None, None]),
                cache_shape,
                tf.TensorShape([None]),
            ),
        )
        # Keep each row's new tokens, up to (without) its first end-of-text.
        generated_zone = (positions[None, :] >= lengths[:, None]) & (positions[None, :] < stop_at[:, None])
        ends = generated_zone & tf.equal(token_ids, end_id)
        after_end = tf.cumsum(tf.cast(ends, tf.int32), axis=1) > 0
        generated = tf.ragged.boolean_mask(token_ids, generated_zone & tf.logical_not(after_end))
        text = tokenizer.detokenize(generated)
        return {
            "generated_text": tf.reshape(text, [-1]),
            "num_generated_tokens": tf.cast(generated.row_lengths(), tf.int32),
        }

    if sampling:
        return core_ops_only(generate)

    def generate_greedy(prompts, max_new_tokens):
        return generate(prompts, max_new_tokens)

    return core_ops_only(generate_greedy)
