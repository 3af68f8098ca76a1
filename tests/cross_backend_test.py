"""Parity and cross-backend loading: the same math on TensorFlow, JAX and PyTorch.

Each backend's test suite runs this module in its own process: it computes its
own results in-process and runs the other two backends in subprocesses
(`backend_worker.py`), then compares.
"""

import importlib.util

import backend_worker
import keras
import numpy as np
import pytest
from conftest import REPO, run_in_backend

from klm.models import KlmBackbone, KlmCausalLM

BACKEND = keras.backend.backend()
OTHERS = [b for b in ("tensorflow", "jax", "torch") if b != BACKEND]
PACKAGES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    missing = [b for b in OTHERS if importlib.util.find_spec(PACKAGES[b]) is None]
    if missing:
        pytest.skip(f"backends not installed: {missing} (pip install 'klm[all]')")
    out = tmp_path_factory.mktemp("cross_backend")
    # A model saved under this backend, loaded by the others.
    keras.utils.set_random_seed(7)
    config = dict(vocabulary_size=40, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32, dropout=0.0)
    lm = KlmCausalLM(KlmBackbone(position_encoding="rotary", **config))
    inputs = {
        "token_ids": np.random.default_rng(0).integers(0, 40, (2, 7)).astype("int32"),
        "padding_mask": np.ones((2, 7), "int32"),
    }
    lm.save(out / "lm.keras")
    np.savez(out / "inputs.npz", **inputs)
    expected_logits = keras.ops.convert_to_numpy(lm(inputs, training=False))
    backend_worker.run_parity(str(out))
    for backend in OTHERS:
        proc = run_in_backend(
            backend,
            [str(REPO / "tests" / "backend_worker.py"), str(out), str(out / "lm.keras"), str(out / "inputs.npz")],
        )
        assert proc.returncode == 0, f"{backend} worker failed:\n{proc.stderr[-3000:]}"
    return out, expected_logits


def test_saved_model_loads_on_other_backends_with_same_logits(results):
    out, expected = results
    for backend in OTHERS:
        logits = np.load(out / f"logits_{backend}.npz")["logits"]
        np.testing.assert_allclose(logits, expected, atol=1e-5, err_msg=f"loaded under {backend}")


def test_same_loss_and_same_sgd_step_on_every_backend(results):
    out, _ = results
    mine = np.load(out / f"parity_{BACKEND}.npz")
    for backend in OTHERS:
        theirs = np.load(out / f"parity_{backend}.npz")
        np.testing.assert_allclose(theirs["logits"], mine["logits"], atol=1e-5, err_msg=f"logits vs {backend}")
        np.testing.assert_allclose(theirs["loss"], mine["loss"], rtol=1e-5, err_msg=f"loss vs {backend}")
        weight_keys = [k for k in mine.files if k.startswith("w")]
        assert len(weight_keys) > 10
        for key in weight_keys:
            np.testing.assert_allclose(
                theirs[key], mine[key], atol=2e-5, err_msg=f"weight {key} after one SGD step vs {backend}"
            )


def test_sgd_step_changed_the_weights(results):
    # Guards the parity test against comparing untouched weights.
    out, _ = results
    mine = np.load(out / f"parity_{BACKEND}.npz")
    lm = backend_worker.parity_model()
    before = lm.get_weights()
    moved = [not np.allclose(before[i], mine[f"w{i}"]) for i in range(len(before))]
    assert sum(moved) >= len(before) - 1
