import numpy as np

from klm.serve.sampling import sample_token


def test_temperature_zero_is_the_arg_max():
    assert sample_token(np.array([0.1, 2.0, -1.0, 1.9]), temperature=0) == 1


def test_a_small_top_p_keeps_only_the_most_likely_token():
    rng = np.random.default_rng(0)
    logits = np.array([1.0, 3.0, 2.5, 0.0])
    assert {sample_token(logits, 1.0, top_p=0.05, rng=rng) for _ in range(50)} == {1}


def test_top_p_draws_only_within_the_nucleus_and_the_seed_repeats_draws():
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05]))
    rng = np.random.default_rng(0)
    draws = [sample_token(logits, 1.0, top_p=0.75, rng=rng) for _ in range(400)]
    assert set(draws) == {0, 1}  # 0.5 + 0.3 reaches 0.75
    assert 0.5 < draws.count(0) / len(draws) < 0.75  # 0.5 / 0.8 = 0.625
    again = [sample_token(logits, 1.0, rng=np.random.default_rng(3)) for _ in range(5)]
    assert len(set(again)) == 1
