"""`klm quantize` end to end: a tiny klm run -> int8 / int4 run folders that evaluate and generate read."""

import json

import pytest
from click.testing import CliRunner

from klm.cli.main import main

TEXT = " ".join(f"the {w} sat on the {v} ." for w in ("cat", "dog", "bird", "fox") for v in ("mat", "log", "hill")) * 40


def _last_json(output):
    """The last top-level JSON object printed (progress lines come before it)."""
    start = 0 if output.startswith("{") else output.rfind("\n{\n") + 1
    return json.JSONDecoder().raw_decode(output[start:])[0]  # warnings (stderr) may follow it


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("quantize")
    text = root / "text.txt"
    text.write_text(TEXT + "\n", encoding="utf-8")
    run = root / "run"
    args = ["pretrain", "--preset", "tiny", "--data", str(text), "--max-steps", "4", "--seq-len", "16"]
    result = CliRunner().invoke(main, args + ["--batch-size", "4", "--run-dir", str(run)])
    assert result.exit_code == 0, result.output
    return run, text


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_quantize_then_evaluate_and_generate(tiny_run, tmp_path, mode):
    run, text = tiny_run
    out = tmp_path / mode
    args = ["quantize", str(run), str(out), "--mode", mode, "--eval-data", str(text), "--speed-tokens", "4", "--json"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    summary = _last_json(result.output)
    assert summary["quantization"]["mode"] == mode
    # A 15-word vocabulary: float32 LayerNorms and positions weigh much here; see the unit tests for 0.3x.
    assert summary["after"]["weight_bytes"] < 0.6 * summary["before"]["weight_bytes"]
    assert summary["after"]["generation"]["tokens"] == 4
    config = json.loads((out / "config.json").read_text())
    assert config["quantization"]["mode"] == mode
    result = CliRunner().invoke(main, ["evaluate", str(out), "--data", str(text), "--json"])
    assert result.exit_code == 0, result.output
    evaluated = _last_json(result.output)
    assert evaluated["perplexity"] == pytest.approx(summary["after"]["perplexity"], rel=1e-5)
    result = CliRunner().invoke(main, ["generate", str(out), "--prompt", "the cat", "--max-new-tokens", "3"])
    assert result.exit_code == 0, result.output
    # A quantized run is not quantized again.
    result = CliRunner().invoke(main, ["quantize", str(out), str(tmp_path / "again"), "--mode", "int4"])
    assert result.exit_code == 2 and "already quantized" in result.output
    assert not (tmp_path / "again").exists()


def test_refusals(tiny_run, tmp_path):
    run, _ = tiny_run
    result = CliRunner().invoke(main, ["quantize", str(run), str(tmp_path / "a"), "--mode", "int2"])
    assert result.exit_code == 2 and "int2" in result.output
    result = CliRunner().invoke(main, ["quantize", str(run), str(tmp_path / "b"), "--mode", "gptq"])
    assert result.exit_code == 2 and "--calibration" in result.output
    (tmp_path / "c").mkdir()
    result = CliRunner().invoke(main, ["quantize", str(run), str(tmp_path / "c")])
    assert result.exit_code == 2 and "already exists" in result.output
    assert (tmp_path / "c").is_dir()


_RELOAD_BUG = pytest.mark.xfail(
    strict=True, reason="the written best.keras of a gptq/awq klm run does not reload (FusedDense objects not loaded)"
)


@pytest.mark.parametrize(
    "mode", ["float8", pytest.param("gptq", marks=_RELOAD_BUG), pytest.param("awq", marks=_RELOAD_BUG)]
)
def test_float8_gptq_awq_through_the_command(tiny_run, tmp_path, mode):
    # Each mode writes a run folder that `klm evaluate` reads (checked on tensorflow, jax and torch).
    run, text = tiny_run
    out = tmp_path / mode
    args = ["quantize", str(run), str(out), "--mode", mode, "--eval-data", str(text), "--speed-tokens", "0", "--json"]
    if mode in ("gptq", "awq"):
        args += ["--calibration", str(text), "--calibration-samples", "2", "--calibration-seq-len", "16"]
        args += ["--group-size", "-1"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    summary = _last_json(result.output)
    assert summary["quantization"]["mode"] == mode
    assert summary["after"]["perplexity"] > 0
    result = CliRunner().invoke(main, ["evaluate", str(out), "--data", str(text), "--json"])
    assert result.exit_code == 0, result.output
    assert _last_json(result.output)["perplexity"] == pytest.approx(summary["after"]["perplexity"], rel=1e-4)
