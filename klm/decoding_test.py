import keras
import numpy as np
import pytest
from keras import ops

from klm import decoding
from klm.models.klm_backbone import KlmBackbone
from klm.models.klm_causal_lm import KlmCausalLM
from klm.testing import TINY_VOCAB, tiny_backbone_config, tiny_gpt2_causal_lm

PROMPT = [5, 9, 3, 17]
TOTAL = 11


def _klm(**overrides):
    keras.utils.set_random_seed(0)
    return KlmCausalLM(KlmBackbone(**tiny_backbone_config(**overrides)))


def _gpt2():
    return tiny_gpt2_causal_lm(max_sequence_length=32)


def _sequence():
    rng = np.random.default_rng(1)
    return np.array([PROMPT + list(rng.integers(1, TINY_VOCAB, TOTAL - len(PROMPT)))], "int32")


def _full_logits(lm, ids):
    logits = lm({"token_ids": ids, "padding_mask": np.ones_like(ids)})
    return ops.convert_to_numpy(ops.cast(logits, "float32"))[0]


def _decoded_logits(lm, ids):
    """Logits at positions n-1 .. TOTAL-2: prefill on the prompt, then one decode_step per token."""
    n = len(PROMPT)
    logits, cache = decoding.prefill(lm, ops.convert_to_tensor(ids[:, :n]), TOTAL)
    rows = [ops.convert_to_numpy(logits)[0]]
    for index in range(n, TOTAL - 1):
        logits, cache = decoding.decode_step(lm, ops.convert_to_tensor(ids[:, index : index + 1]), cache, index)
        assert keras.backend.standardize_dtype(logits.dtype) == "float32"
        assert tuple(logits.shape) == (1, TINY_VOCAB)
        rows.append(ops.convert_to_numpy(logits)[0])
    return np.stack(rows)


@pytest.mark.parametrize(
    "overrides",
    [
        dict(position_encoding="learned"),
        dict(position_encoding="sinusoidal", normalize_first=False, tie_embeddings=False, output_bias=True),
        dict(position_encoding="rotary"),
    ],
)
def test_decode_step_equals_full_forward_pass_klm(overrides):
    lm = _klm(**overrides)
    ids = _sequence()
    full = _full_logits(lm, ids)[len(PROMPT) - 1 : TOTAL - 1]
    np.testing.assert_allclose(_decoded_logits(lm, ids), full, atol=1e-5, rtol=1e-5)


@pytest.mark.heavy
def test_decode_step_equals_full_forward_pass_keras_hub_gpt2():
    lm = _gpt2()
    ids = _sequence()
    full = _full_logits(lm, ids)[len(PROMPT) - 1 : TOTAL - 1]
    np.testing.assert_allclose(_decoded_logits(lm, ids), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("make", [_klm, _gpt2], ids=["klm", "gpt2"])
def test_build_cache_sizes_the_cache_for_the_whole_generation(make):
    lm = make()
    ids = _sequence()
    cache = decoding.build_cache(lm, ops.convert_to_tensor(ids[:, :3]), TOTAL)
    assert ops.shape(cache)[3] == TOTAL  # (batch, layers, 2, length, heads, head_dim) for both
    # Several tokens in one step: the last one's logits.
    logits, _ = decoding.decode_step(lm, ops.convert_to_tensor(ids[:, 3:6]), cache, 3)
    np.testing.assert_allclose(ops.convert_to_numpy(logits)[0], _full_logits(lm, ids)[5], atol=1e-5, rtol=1e-5)


def test_return_hidden_states():
    lm = _klm()
    ids = _sequence()
    cache = decoding.build_cache(lm, ops.convert_to_tensor(ids[:, :4]), TOTAL)
    logits, hidden_states, _ = decoding.decode_step(
        lm, ops.convert_to_tensor(ids[:, 3:4]), cache, 3, return_hidden_states=True
    )
    assert tuple(hidden_states.shape) == (1, 16)
    assert tuple(logits.shape) == (1, TINY_VOCAB)


@pytest.mark.parametrize("make", [_klm, _gpt2], ids=["klm", "gpt2"])
@pytest.mark.heavy
def test_generate_and_generate_ids_agree(make):
    from klm.generate import generate_ids, make_sampler

    lm = make()
    lm.compile(sampler="greedy")
    n = len(PROMPT)
    ids = np.zeros((1, TOTAL), "int32")
    ids[0, :n] = PROMPT
    out = lm.generate({"token_ids": ids, "padding_mask": (ids != 0).astype("int32")}, stop_token_ids=None)
    ours = generate_ids(lm, PROMPT, TOTAL - n, make_sampler("greedy"))
    assert list(np.asarray(out["token_ids"])[0, n:]) == ours


def test_mixed_precision_logits_are_float32():
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        lm = _klm()
    finally:
        keras.config.set_dtype_policy("float32")
    logits, cache = decoding.prefill(lm, ops.convert_to_tensor(np.array([PROMPT], "int32")), TOTAL)
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"
    assert keras.backend.standardize_dtype(cache.dtype) == "bfloat16"


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf.function with dynamic shapes")
@pytest.mark.heavy
def test_symbolic_in_tf_function_with_dynamic_lengths():
    import tensorflow as tf

    lm = _klm(position_encoding="rotary")
    head_dim = 16 // 2

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([], tf.int32)], autograph=False)
    def greedy(prompt_ids, max_new_tokens):
        n = tf.shape(prompt_ids)[1]
        total = n + max_new_tokens
        logits, cache = decoding.prefill(lm, prompt_ids, total)
        token_ids = tf.pad(prompt_ids, [[0, 0], [0, max_new_tokens]])

        def body(index, token_ids, logits, cache):
            next_ids = tf.argmax(logits, axis=-1, output_type=tf.int32)
            token_ids = tf.tensor_scatter_nd_update(
                token_ids,
                tf.stack([tf.range(tf.shape(token_ids)[0]), tf.fill(tf.shape(next_ids), index)], 1),
                next_ids,
            )
            logits, cache = decoding.decode_step(lm, next_ids[:, None], cache, index)
            return index + 1, token_ids, logits, cache

        _, token_ids, _, _ = tf.while_loop(
            lambda index, *_: index < total,
            body,
            (n, token_ids, logits, cache),
            shape_invariants=(
                tf.TensorShape([]),
                tf.TensorShape([None, None]),
                tf.TensorShape([None, TINY_VOCAB]),
                tf.TensorShape([None, 2, 2, None, 2, head_dim]),
            ),
        )
        return token_ids

    out = greedy(tf.constant([PROMPT], tf.int32), tf.constant(TOTAL - len(PROMPT))).numpy()
    from klm.generate import generate_ids, make_sampler

    assert list(out[0, len(PROMPT) :]) == generate_ids(lm, PROMPT, TOTAL - len(PROMPT), make_sampler("greedy"))


@pytest.mark.parametrize("make", [_klm, _gpt2], ids=["klm", "gpt2"])
@pytest.mark.heavy
def test_a_right_padded_batch_with_rows_dropped_decodes_each_row_as_alone(make):
    """What `klm serve` batches: prompts of different lengths, one shared position, finished rows dropped."""
    from klm.generate import generate_ids, make_sampler

    lm = make()
    prompts, new_tokens = [PROMPT[:2], PROMPT, [7, 1, 30]], [3, 6, 5]
    alone = [generate_ids(lm, p, n, make_sampler("greedy")) for p, n in zip(prompts, new_tokens)]
    padded = np.zeros((3, 4), "int32")
    for row, prompt in enumerate(prompts):
        padded[row, : len(prompt)] = prompt
    cache = decoding.build_cache(
        lm, ops.convert_to_tensor(padded), max(len(p) + n for p, n in zip(prompts, new_tokens))
    )
    rows, outputs, index = [0, 1, 2], [[], [], []], 1
    tokens = padded[:, index]
    while rows:
        logits, cache = decoding.decode_step(lm, ops.convert_to_tensor(tokens[:, None]), cache, index)
        chosen = np.argmax(ops.convert_to_numpy(logits), axis=-1)
        keep, next_tokens = [], []
        for position, row in enumerate(rows):
            if index + 1 < len(prompts[row]):
                token = prompts[row][index + 1]
            else:
                token = int(chosen[position])
                outputs[row].append(token)
                if len(outputs[row]) == new_tokens[row]:
                    continue
            keep.append(position)
            next_tokens.append(token)
        if keep and len(keep) < len(rows):
            cache = decoding.select_rows(cache, keep)
        rows, tokens, index = [rows[p] for p in keep], np.asarray(next_tokens, "int32"), index + 1
    assert outputs == alone
