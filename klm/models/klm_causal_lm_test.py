import keras
import numpy as np
import pytest

from klm.models.klm_backbone import KlmBackbone
from klm.models.klm_causal_lm import KlmCausalLM
from klm.testing import tiny_backbone_config, token_batch


def _lm(**overrides):
    return KlmCausalLM(KlmBackbone(**tiny_backbone_config(**overrides)))


def _greedy_by_recomputation(lm, prompt, total_length):
    # Reference decoder: re-run the whole sequence for every new token.
    tokens = list(prompt)
    while len(tokens) < total_length:
        ids = np.array([tokens], "int32")
        logits = keras.ops.convert_to_numpy(lm({"token_ids": ids, "padding_mask": np.ones_like(ids)}))
        tokens.append(int(np.argmax(logits[0, -1])))
    return tokens


@pytest.mark.parametrize("position_encoding", ["learned", "sinusoidal", "rotary"])
@pytest.mark.parametrize("normalize_first", [True, False])
@pytest.mark.heavy
def test_kv_cache_generation_equals_recomputation(position_encoding, normalize_first):
    lm = _lm(position_encoding=position_encoding, normalize_first=normalize_first)
    lm.compile(sampler="greedy")
    prompt = [5, 9, 3]
    total = 10
    ids = np.zeros((1, total), "int32")
    ids[0, : len(prompt)] = prompt
    mask = (ids != 0).astype("int32")
    out = lm.generate({"token_ids": ids, "padding_mask": mask}, stop_token_ids=None)
    assert list(np.asarray(out["token_ids"])[0]) == _greedy_by_recomputation(lm, prompt, total)


@pytest.mark.parametrize("sampler", ["top_k", "top_p", "greedy"])
def test_generate_with_samplers_keeps_prompt(sampler):
    lm = _lm()
    lm.compile(sampler=sampler)
    ids = np.array([[7, 8, 0, 0, 0, 0], [4, 4, 4, 0, 0, 0]], "int32")
    out = lm.generate({"token_ids": ids, "padding_mask": (ids != 0).astype("int32")}, stop_token_ids=None)
    tokens = np.asarray(out["token_ids"])
    assert tokens.shape == (2, 6)
    np.testing.assert_array_equal(tokens[0, :2], [7, 8])
    np.testing.assert_array_equal(tokens[1, :3], [4, 4, 4])


@pytest.mark.heavy
def test_fit_reduces_loss():
    keras.utils.set_random_seed(0)
    lm = _lm()
    lm.compile(optimizer=keras.optimizers.Adam(1e-2), weighted_metrics=[])
    x = token_batch(batch_size=4, seq_len=8)
    y = np.roll(x["token_ids"], -1, axis=1)
    history = lm.fit(x, y, epochs=20, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]


def test_saving_round_trip(tmp_path):
    lm = _lm(position_encoding="sinusoidal", normalize_first=False, tie_embeddings=False, output_bias=True)
    path = str(tmp_path / "lm.keras")
    lm.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(loaded, KlmCausalLM)
    x = token_batch()
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(lm(x)), atol=1e-6)
