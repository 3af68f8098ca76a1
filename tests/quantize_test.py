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


@pytest.mark.parametrize("mode", ["float8", "gptq", "awq"])
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


def test_gptq_on_a_transformers_checkpoint_reloads(tmp_path):
    # keras-hub's own Dense/EinsumDense layers: their GPTQ zero points are saved too (the run folder reloads).
    pytest.importorskip("transformers")
    from klm.pretrained import testing

    text = tmp_path / "text.txt"
    text.write_text(TEXT + "\n", encoding="utf-8")
    out = tmp_path / "gptq"
    args = ["quantize", testing.cached_hf_checkpoint("gpt2"), str(out), "--mode", "gptq", "--eval-data", str(text)]
    args += ["--calibration", str(text), "--calibration-samples", "2", "--calibration-seq-len", "16"]
    result = CliRunner().invoke(main, args + ["--group-size", "-1", "--seq-len", "32", "--speed-tokens", "0", "--json"])
    assert result.exit_code == 0, result.output
    summary = _last_json(result.output)
    assert summary["quantization"]["layer_modes"]["gptq"] >= 8
    assert summary["weight_bytes_ratio"] < 0.3
    result = CliRunner().invoke(main, ["evaluate", str(out), "--data", str(text), "--seq-len", "32", "--json"])
    assert result.exit_code == 0, result.output
    assert _last_json(result.output)["perplexity"] == pytest.approx(summary["after"]["perplexity"], rel=1e-4)


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_qlora_pretrain_from_a_quantized_run(tiny_run, tmp_path, mode):
    # LoRA adapters trained on top of a quantized run's frozen kernels; the run saves, reloads and evaluates.
    run, text = tiny_run
    quantized, adapted = tmp_path / mode, tmp_path / f"{mode}-lora"
    result = CliRunner().invoke(main, ["quantize", str(run), str(quantized), "--mode", mode, "--speed-tokens", "0"])
    assert result.exit_code == 0, result.output
    args = ["pretrain", "--init-from", str(quantized), "--lora-rank", "2", "--data", str(text), "--max-steps", "2"]
    result = CliRunner().invoke(main, args + ["--seq-len", "16", "--batch-size", "4", "--run-dir", str(adapted)])
    assert result.exit_code == 0, result.output
    config = json.loads((adapted / "config.json").read_text())
    assert config["quantization"]["mode"] == mode and config["quantization"]["from_quantized_run"]
    result = CliRunner().invoke(main, ["evaluate", str(adapted), "--data", str(text), "--json"])
    assert result.exit_code == 0, result.output
    assert _last_json(result.output)["perplexity"] > 0
    # Quantizing it again is refused: its kernels are quantized already.
    result = CliRunner().invoke(main, ["quantize", str(adapted), str(tmp_path / "again"), "--mode", "int8"])
    assert result.exit_code == 2 and "already quantized" in result.output


@pytest.mark.parametrize("export_format", ["onnx", "litert", "gguf", "savedmodel", "hf"])
def test_export_of_a_quantized_run_is_refused(tiny_run, tmp_path_factory, tmp_path, export_format):
    # Every exporter writes float weights: an f32 export of a quantized run is refused by name, nothing written.
    run, _ = tiny_run
    quantized = tmp_path_factory.getbasetemp() / "refused-export-int8"
    if not quantized.exists():  # one quantized run for every format
        args = ["quantize", str(run), str(quantized), "--mode", "int8", "--speed-tokens", "0"]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
    out = tmp_path / "exported"
    args = ["export", str(quantized), str(out), "--format", export_format]
    if export_format == "gguf":
        args += ["--gguf-type", "q8_0"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "quantized run (int8)" in result.output and f"--format={export_format}" in result.output
    assert str(run) in result.output  # the float run to export instead
    assert not out.exists()
    # The float run it came from is not refused for being quantized (the export itself is tested elsewhere).
    from klm.export.formats import refuse_quantized

    refuse_quantized(str(run), export_format)
