"""Unit tests of `klm.pretrained.checkpoint_estimate`'s formulas (full estimates: tests/pretrained_estimate_test.py)."""

import pytest

from klm.estimate import flops_per_token
from klm.pretrained.checkpoint_estimate import checkpoint_flops_per_token, checkpoint_memory


def test_checkpoint_memory_and_flops():
    dims = dict(
        vocabulary_size=1000,
        hidden_dim=64,
        num_layers=2,
        num_heads=4,
        intermediate_dim=128,
        dropout=0.0,
        gated=False,
        matmul_parameters=2 * (4 * 64 * 64 + 2 * 64 * 128),
    )
    full = checkpoint_memory(100_000, 100_000, dims, 4, 16, "float32", "adamw")
    lora = checkpoint_memory(100_000, 1_000, dims, 4, 16, "float32", "adamw")
    bf16 = checkpoint_memory(100_000, 1_000, dims, 4, 16, "bfloat16", "sgd", grad_accum=2)
    assert full["optimizer_state_mib"] == pytest.approx(8 * 100_000 / 2**20)
    assert lora["gradients_mib"] == pytest.approx(4 * 1_000 / 2**20)
    assert lora["activations_mib"] == full["activations_mib"]  # the backward pass still runs through the backbone
    assert bf16["weights_mib"] == pytest.approx(2 * 100_000 / 2**20)
    assert bf16["optimizer_state_mib"] == pytest.approx(2 * 1_000 / 2**20)  # the accumulator only
    frozen = checkpoint_memory(100_000, 100, dims, 4, 16, "float32", "adamw", backbone_frozen=True)
    assert frozen["activations_mib"] < full["activations_mib"]
    # The klm formula (6N + attention) for full fine-tuning of a causal LM; LoRA skips the weight gradients.
    assert checkpoint_flops_per_token(dims, 16, "full") == flops_per_token(1000, 64, 2, 128, 16)
    assert checkpoint_flops_per_token(dims, 16, "lora") == pytest.approx(4 / 6 * flops_per_token(1000, 64, 2, 128, 16))
