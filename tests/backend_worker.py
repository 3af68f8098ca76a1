"""Runs one backend's half of the cross-backend tests (in its own process).

    KERAS_BACKEND=jax python tests/backend_worker.py OUT_DIR [MODEL.keras INPUTS.npz]

Writes `OUT_DIR/parity_<backend>.npz` (loss, logits and the weights after one
clipped SGD step, from fixed weights and a fixed batch) and, given a saved
model, `OUT_DIR/logits_<backend>.npz` with the loaded model's logits.
"""

import os
import sys

import numpy as np


def parity_model():
    """The reference's architecture at a tiny size, dropout off, weights fixed by NumPy."""
    from klm.models import KlmBackbone, KlmCausalLM
    from klm.models.presets import preset_config

    config = preset_config("seed", vocabulary_size=50, hidden_dim=16, intermediate_dim=24, dropout=0.0)
    lm = KlmCausalLM(KlmBackbone(**config))
    rng = np.random.default_rng(1234)
    lm.set_weights([rng.normal(scale=0.3, size=w.shape).astype("float32") for w in lm.get_weights()])
    return lm


def parity_batch():
    rng = np.random.default_rng(99)
    ids = rng.integers(0, 50, size=(4, 9)).astype("int32")
    x = {"token_ids": ids[:, :-1], "padding_mask": np.ones((4, 8), "int32")}
    return x, ids[:, 1:]


def run_parity(out_dir):
    import keras

    lm = parity_model()
    x, y = parity_batch()
    logits = keras.ops.convert_to_numpy(lm(x, training=False))
    lm.compile(
        optimizer=keras.optimizers.SGD(learning_rate=5.0, global_clipnorm=0.5),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        weighted_metrics=[],
    )
    loss = float(lm.train_on_batch(x, y, return_dict=True)["loss"])
    weights = {f"w{i}": w for i, w in enumerate(lm.get_weights())}
    np.savez(os.path.join(out_dir, f"parity_{keras.backend.backend()}.npz"), loss=loss, logits=logits, **weights)


def run_load(out_dir, model_path, inputs_path):
    import keras

    model = keras.saving.load_model(model_path, safe_mode=True)
    inputs = dict(np.load(inputs_path))
    logits = keras.ops.convert_to_numpy(model(inputs, training=False))
    np.savez(os.path.join(out_dir, f"logits_{keras.backend.backend()}.npz"), logits=logits)


if __name__ == "__main__":
    out = sys.argv[1]
    run_parity(out)
    if len(sys.argv) > 3:
        run_load(out, sys.argv[2], sys.argv[3])
