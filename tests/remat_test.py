"""`--remat`: the same training with less activation memory (PyTorch), a clear error elsewhere."""

import keras
import numpy as np
import pytest

from klm import backend
from klm.config import PretrainConfig
from klm.errors import ConfigError

BACKEND = keras.backend.backend()


def _train(remat):
    from klm.training.builders import build_causal_lm

    backend.set_seed(0)
    config = PretrainConfig(
        data="x", preset="tiny", batch_size=2, seq_len=8, optimizer="adamw", lr=1e-2, schedule="constant",
        dropout=0.1, attention_dropout=0.1, remat=remat,
    )  # fmt: skip
    model = build_causal_lm(config, 50, 10, 10)
    rows = np.random.default_rng(0).integers(0, 50, size=(4, 9)).astype("int32")
    inputs = {"token_ids": rows[:, :-1], "padding_mask": np.ones((4, 8), "int32")}
    history = keras.Model.fit(model, inputs, rows[:, 1:], batch_size=2, verbose=0, shuffle=False)
    return history.history["loss"], [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]


@pytest.mark.skipif(BACKEND != "torch", reason="--remat is PyTorch's")
def test_remat_trains_exactly_as_without_it():
    # torch.utils.checkpoint restores the generator before recomputing: the same dropout masks, the same weights.
    loss, weights = _train(remat=False)
    remat_loss, remat_weights = _train(remat=True)
    assert loss == remat_loss
    for a, b in zip(weights, remat_weights):
        np.testing.assert_array_equal(a, b)


@pytest.mark.skipif(BACKEND == "torch", reason="--remat works on PyTorch")
def test_remat_elsewhere_is_a_clear_error():
    with pytest.raises(ConfigError, match=f"--remat with --backend={BACKEND}"):
        _train(remat=True)
