import keras
import numpy as np
import pytest
from keras import ops

from klm.evaluation.scoring import ModelFunctions, generate_batch, score_batch
from klm.generate import generate_ids, make_sampler
from klm.models.klm_backbone import KlmBackbone
from klm.models.klm_causal_lm import KlmCausalLM
from klm.testing import TINY_VOCAB, tiny_backbone_config, tiny_gpt2_causal_lm


def _klm():
    keras.utils.set_random_seed(0)
    return KlmCausalLM(KlmBackbone(**tiny_backbone_config()))


def _gpt2():
    return tiny_gpt2_causal_lm(max_sequence_length=64)


def _text(ids):
    """A real ids -> text map (one letter per id) to look for stop strings in."""
    return "".join(chr(ord("a") + int(i) % 26) for i in ids)


@pytest.mark.parametrize("make", [_klm, _gpt2], ids=["klm", "gpt2"])
@pytest.mark.heavy
def test_score_batch_equals_eager_log_softmax(make):
    lm = make()
    rng = np.random.default_rng(0)
    requests = [(None, list(rng.integers(1, TINY_VOCAB, n)), list(rng.integers(1, TINY_VOCAB, k))) for n, k in [(7, 3)]]
    requests.append((None, list(rng.integers(1, TINY_VOCAB, 20)), list(rng.integers(1, TINY_VOCAB, 1))))
    functions = ModelFunctions(lm)
    scores = score_batch(lm, requests, max_length=64, rows=4, functions=functions)
    assert score_batch(lm, requests, max_length=64, rows=4, functions=functions) == scores  # the compiled program again
    for (_, context, continuation), (logprob, is_greedy) in zip(requests, scores):
        ids = np.array([context + continuation], "int32")
        logits = ops.convert_to_numpy(ops.cast(lm({"token_ids": ids, "padding_mask": np.ones_like(ids)}), "float32"))[0]
        logits = logits[len(context) - 1 : -1]
        log_softmax = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True))
        log_softmax -= logits.max(-1, keepdims=True)
        expected = sum(log_softmax[i, t] for i, t in enumerate(continuation))
        assert logprob == pytest.approx(expected, abs=1e-4)
        assert is_greedy == all(logits[i].argmax() == t for i, t in enumerate(continuation))


@pytest.mark.parametrize("make", [_klm, _gpt2], ids=["klm", "gpt2"])
@pytest.mark.heavy
def test_generate_batch_equals_row_by_row_decoding_checked_every_token(make):
    """Batched, compiled, stop strings looked for every few steps == one row at a time, looked for after every token."""
    lm = make()
    rng = np.random.default_rng(1)
    prompts = [list(rng.integers(1, TINY_VOCAB, n)) for n in (3, 18, 9)]
    greedy = make_sampler("greedy")
    free = [_text(generate_ids(lm, prompt, 12, greedy)) for prompt in prompts]
    stop = [free[0][5:7], free[2][2:4]]  # stop strings the greedy texts do contain

    def cut(text):
        for s in stop:
            text = text.split(s)[0]
        return text

    expected = [
        cut(_text(generate_ids(lm, prompt, 12, greedy, stop_when=lambda ids: any(s in _text(ids) for s in stop))))
        for prompt in prompts
    ]
    functions = ModelFunctions(lm)
    decode_many = lambda lists: [_text(ids) for ids in lists]  # noqa: E731
    outputs = generate_batch(lm, prompts, 12, greedy, None, stop, decode_many, rows=4, functions=functions)
    assert outputs == expected
    assert any(len(out) < len(text) for out, text in zip(outputs, free))  # some row did stop at a stop string
    assert generate_batch(lm, prompts, 12, greedy, None, [], decode_many, rows=4, functions=functions) == free
