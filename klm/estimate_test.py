"""Tests of `klm.estimate` and `klm estimate` on tiny data the tests write."""

import importlib.util
import json
from pathlib import Path

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from klm.config import PretrainConfig
from klm.errors import ConfigError
from klm.estimate import activation_bytes_per_token, estimate, flops_per_token, format_report, memory_estimate

WORDS = "the a cat dog sat ran on under mat log big small red blue and then".split()
REFERENCE = Path(__file__).resolve().parents[1] / "examples" / "benchmarks" / "reference_torch.py"


def make_text(path, lines=300, seed=0):
    rng = np.random.default_rng(seed)
    with open(path, "w") as f:
        for _ in range(lines):
            f.write(" ".join(rng.choice(WORDS, size=rng.integers(4, 12))) + " .\n")
    return str(path)


def test_flops_per_token_seed_and_reference():
    assert flops_per_token(12000, 200, 2, 200, 35) == pytest.approx(17.364e6)
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed: no reference to compare with")
    spec = importlib.util.spec_from_file_location("reference_torch", REFERENCE)
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    for args in [(12000, 200, 2, 200, 35), (8000, 384, 6, 1536, 256), (50257, 768, 12, 3072, 1024)]:
        assert flops_per_token(*args) == ref.flops_per_token(*args)


def test_memory_estimate_parts():
    dims = dict(vocabulary_size=12000, hidden_dim=200, num_layers=2, num_heads=2, intermediate_dim=200, dropout=0.2)
    sgd = memory_estimate(5_000_000, dims, 20, 35, "float32", "sgd")
    adamw = memory_estimate(5_000_000, dims, 20, 35, "float32", "adamw")
    mixed = memory_estimate(5_000_000, dims, 20, 35, "mixed_bfloat16", "sgd")
    mib = 5_000_000 * 4 / 2**20
    assert sgd["parameters_mib"] == pytest.approx(mib) and sgd["gradients_mib"] == pytest.approx(mib)
    assert sgd["optimizer_state_mib"] == 0 and adamw["optimizer_state_mib"] == pytest.approx(2 * mib)
    assert mixed["compute_weight_copies_mib"] == pytest.approx(mib / 2)
    for m in (sgd, adamw, mixed):
        assert m["total_mib"] == pytest.approx(sum(v for k, v in m.items() if k != "total_mib"))
    # The output layer dominates the seed's activations: logits + float32 gradient, 8 bytes per entry.
    per_token = activation_bytes_per_token(12000, 200, 2, 2, 200, 35, compute_bytes=4, dropout=0.2)
    assert 12000 * 8 < per_token < 12000 * 8 * 1.5
    assert sgd["activations_mib"] == pytest.approx(20 * 35 * per_token / 2**20)


def test_estimate_tiny_run(tmp_path):
    data = make_text(tmp_path / "train.txt")
    valid = make_text(tmp_path / "valid.txt", lines=40, seed=1)
    run_dir = tmp_path / "run"
    config = PretrainConfig(
        data=data, valid=valid, preset="tiny", batch_size=4, seq_len=8, epochs=2, run_dir=str(run_dir)
    )
    report = estimate(config, measure_steps=2, warmup_steps=1, log=lambda message: None)
    assert not run_dir.exists()  # an estimate writes nothing

    from klm.data import lm_steps_per_epoch, lm_tokens_per_epoch
    from klm.models import KlmCausalLM, backbone_from_preset

    vocab = report["vocabulary_size"]
    assert report["parameters"] == KlmCausalLM(backbone_from_preset("tiny", vocab)).count_params()
    assert report["flops_per_token"] == flops_per_token(vocab, 32, 2, 64, 8)
    tokens = report["tokens"]
    assert tokens["steps_per_epoch"] == lm_steps_per_epoch(tokens["in_data"], 8, 4, mode="contiguous") > 0
    assert tokens["per_epoch"] == lm_tokens_per_epoch(tokens["in_data"], 8, 4, mode="contiguous")
    assert (tokens["steps_per_epoch"] - 1) * 32 < tokens["per_epoch"] <= tokens["steps_per_epoch"] * 32
    assert tokens["total"] == 2 * tokens["per_epoch"]
    assert tokens["total_steps"] == 2 * tokens["steps_per_epoch"] and tokens["epochs"] == 2
    assert report["memory_mib"]["total_mib"] > report["memory_mib"]["parameters_mib"] > 0

    measured, expected = report["measured"], report["expected_seconds"]
    assert measured["steps"] == 2 and measured["seconds_per_step"] > 0 and measured["peak_rss_mib"] > 0
    assert expected["training"] == pytest.approx(tokens["total_steps"] * measured["seconds_per_step"])
    assert expected["evaluation"] > 0  # a validation file was given
    assert expected["checkpoints"] > 0
    assert expected["total"] == pytest.approx(
        expected["data"] + expected["startup"] + expected["training"] + expected["evaluation"] + expected["checkpoints"]
    )
    text = format_report(report)
    assert f"{report['parameters']:,}" in text and "expected time" in text


def test_estimate_without_measuring_and_max_steps(tmp_path):
    config = PretrainConfig(
        data=make_text(tmp_path / "train.txt"), preset="tiny", batch_size=4, seq_len=8, max_steps=7, optimizer="adamw"
    )
    report = estimate(config, measure_steps=0)
    assert report["measured"] is None and report["expected_seconds"] is None
    assert report["tokens"]["total_steps"] == 7 and report["tokens"]["total"] == 7 * 32
    assert report["memory_mib"]["optimizer_state_mib"] == pytest.approx(2 * report["memory_mib"]["parameters_mib"])
    assert "not measured" in format_report(report)
    with pytest.raises(ConfigError):
        estimate(config, measure_steps=-1)


def test_estimate_too_little_data(tmp_path):
    config = PretrainConfig(data=make_text(tmp_path / "train.txt", lines=2), preset="tiny", batch_size=64, seq_len=64)
    with pytest.raises(ConfigError, match="too few"):
        estimate(config, measure_steps=0)


def test_cli_estimate_json(tmp_path):
    from klm.cli.main import main

    data = make_text(tmp_path / "train.txt")
    result = CliRunner().invoke(
        main,
        [
            "estimate",
            "--data",
            data,
            "--preset",
            "tiny",
            "--batch-size",
            "4",
            "--seq-len",
            "8",
            "--measure-steps",
            "1",
            "--measure-warmup",
            "1",
            "--run-dir",
            str(tmp_path / "run"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{") :])
    assert report["backend"] == keras.backend.backend()
    assert report["preset"] == "tiny" and report["batch_size"] == 4 and report["measured"]["steps"] == 1
    assert not (tmp_path / "run").exists()


def test_cli_estimate_bad_flag(tmp_path):
    from klm.cli.main import main

    result = CliRunner().invoke(main, ["estimate", "--data", make_text(tmp_path / "t.txt"), "--seq-len", "1"])
    assert result.exit_code != 0
    assert "--seq-len" in result.output


def test_activation_bytes_options():
    lm = activation_bytes_per_token(1000, 64, 2, 4, 128, 16)
    assert activation_bytes_per_token(1000, 64, 2, 4, 128, 16, lm_head=False) == lm - 1000 * 8
    assert activation_bytes_per_token(1000, 64, 2, 4, 128, 16, gated=True) == lm + 2 * 4 * 128
