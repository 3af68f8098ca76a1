"""bf16 training keeps the loss in float32 and close to float32's; `--precision auto` is a pure function."""

import keras
import numpy as np
import pytest

from klm import backend as backend_lib
from klm.config import PretrainConfig
from klm.layers.fused_dense import FusedDense
from klm.losses import SparseCrossEntropyFromLogits, sparse_cross_entropy_from_logits

CPU_BF16 = {"kind": "cpu", "name": "AMD EPYC", "cpu_flags": ["avx512_bf16"]}
CPU_AMX = {"kind": "cpu", "name": "Xeon", "cpu_flags": ["amx_bf16", "avx512_bf16"]}
CPU_PLAIN = {"kind": "cpu", "name": "old CPU", "cpu_flags": []}
A100 = {"kind": "gpu", "name": "NVIDIA A100", "compute_capability": "8.0"}
T4 = {"kind": "gpu", "name": "Tesla T4", "compute_capability": "7.5"}


@pytest.mark.parametrize(
    "device,backend,expected",
    [
        (CPU_BF16, "torch", "mixed_bfloat16"),
        (CPU_BF16, "tensorflow", "mixed_bfloat16"),
        (CPU_BF16, "jax", "float32"),
        (CPU_AMX, "torch", "mixed_bfloat16"),
        (CPU_PLAIN, "torch", "float32"),
        (CPU_PLAIN, "tensorflow", "float32"),
        (A100, "jax", "mixed_bfloat16"),
        (A100, "torch", "mixed_bfloat16"),
        (T4, "tensorflow", "float32"),
    ],
)
def test_precision_auto_resolves_deterministically(device, backend, expected):
    first = backend_lib.resolve_precision("auto", backend, device)
    assert first[0] == expected
    assert backend_lib.resolve_precision("auto", backend, dict(device)) == first  # same description, same answer
    assert first[1]  # a reason is given
    assert backend_lib.resolve_precision("float32", backend, device) == ("float32", "requested")


def test_precision_auto_in_the_config():
    config = PretrainConfig(data="x", backend="torch")
    config.precision = "auto"
    assert config.resolve_precision(CPU_BF16) == "mixed_bfloat16"
    assert config.precision == "mixed_bfloat16" and "avx512_bf16" in config.precision_reason
    assert "precision_reason" not in config.to_dict()
    config = PretrainConfig(data="x", backend="jax")
    config.precision = "auto"
    assert config.resolve_precision(CPU_BF16) == "float32"
    # Resolved at construction from this machine's description: never "auto" afterwards.
    assert PretrainConfig(data="x", precision="auto").precision in ("float32", "mixed_bfloat16")


def test_describe_device_is_a_plain_description():
    device = backend_lib.describe_device()
    assert device["kind"] in ("cpu", "gpu")
    assert backend_lib.resolve_precision("auto", backend_lib.current(), device)[0] in ("float32", "mixed_bfloat16")


def test_fused_dense_matches_dense():
    x = np.random.default_rng(0).normal(size=(2, 3, 4)).astype("float32")
    fused = FusedDense(5, activation="relu", bias_initializer="glorot_uniform")
    plain = keras.layers.Dense(5, activation="relu")
    fused.build(x.shape)
    plain.build(x.shape)
    plain.set_weights(fused.get_weights())
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(fused(x)), keras.ops.convert_to_numpy(plain(x)), rtol=1e-5, atol=1e-5
    )
    assert [w.path for w in fused.weights] == [w.path.replace(plain.name, fused.name) for w in plain.weights]


def test_fused_loss_matches_the_formula():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 3, 7)).astype("float32")
    labels = rng.integers(0, 7, size=(2, 3))
    shifted = logits - logits.max(-1, keepdims=True)
    expected = np.log(np.exp(shifted).sum(-1)) - np.take_along_axis(shifted, labels[..., None], -1)[..., 0]
    got = keras.ops.convert_to_numpy(sparse_cross_entropy_from_logits(labels, logits))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    bf16 = sparse_cross_entropy_from_logits(labels, keras.ops.cast(logits, "bfloat16"))
    assert keras.backend.standardize_dtype(bf16.dtype) == "float32"


def _tiny_lm(dtype):
    from klm.models import KlmBackbone, KlmCausalLM, preset_config

    backend_lib.set_seed(0)
    config = dict(preset_config("tiny", 64), dropout=0.0)
    lm = KlmCausalLM(KlmBackbone(**config, dtype=dtype))
    lm.compile(
        optimizer=keras.optimizers.SGD(0.1, global_clipnorm=1.0),
        loss=SparseCrossEntropyFromLogits(),
        weighted_metrics=[],
        jit_compile=False,
    )
    return lm


def test_bf16_keeps_the_loss_in_float32_and_close_to_float32():
    fp32, bf16 = _tiny_lm("float32"), _tiny_lm("mixed_bfloat16")
    bf16.set_weights(fp32.get_weights())
    rng = np.random.default_rng(0)
    x = rng.integers(0, 64, size=(4, 16)).astype("int32")
    y = rng.integers(0, 64, size=(4, 16)).astype("int32")
    inputs = {"token_ids": x, "padding_mask": np.ones_like(x)}
    logits = bf16(inputs)
    assert keras.backend.standardize_dtype(logits.dtype) == "bfloat16"  # the big matmul ran in bf16
    assert all(keras.backend.standardize_dtype(w.dtype) == "float32" for w in bf16.weights)
    per_position = sparse_cross_entropy_from_logits(y, logits)
    assert keras.backend.standardize_dtype(per_position.dtype) == "float32"
    loss32 = float(fp32.evaluate(inputs, y, verbose=0))
    loss16 = float(bf16.evaluate(inputs, y, verbose=0))
    assert abs(loss16 - loss32) < 0.02 * loss32
    # A few training steps move both the same way.
    for _ in range(3):
        a = float(np.asarray(fp32.train_on_batch(inputs, y)).ravel()[0])
        b = float(np.asarray(bf16.train_on_batch(inputs, y)).ravel()[0])
        assert abs(a - b) < 0.03 * a


@pytest.mark.parametrize("scale", [0.01, 100.0, float("nan")])
def test_fused_global_clipnorm_matches_keras(scale):
    from keras.src.optimizers.base_optimizer import clip_by_global_norm

    rng = np.random.default_rng(0)
    grads = [
        keras.ops.convert_to_tensor((scale * rng.normal(size=shape)).astype("float32")) for shape in [(3, 4), (5,)]
    ]
    optimizer = backend_lib.fuse_global_clipnorm(keras.optimizers.SGD(0.1, global_clipnorm=0.5))
    expected = [keras.ops.convert_to_numpy(g) for g in clip_by_global_norm(list(grads), 0.5)]
    got = optimizer._clip_gradients(list(grads) + [None])
    assert got[-1] is None
    for a, b in zip(got, expected):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(a), b, rtol=1e-5, atol=1e-7)
