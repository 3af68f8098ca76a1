"""`klm evaluate RUN --tasks ...` on every kind of run: LoRA, quantized, SFT with its chat template, keras-hub preset.

Each run is made tiny by the CLI itself (a few training steps), then scored
on the local tasks of `examples/lm_eval_tasks` through lm-eval (no network).
"""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("lm_eval", reason="lm-eval is klm's optional `eval` extra (pip install klm[eval])")

from klm.cli.main import main  # noqa: E402

TASKS_DIR = str(Path(__file__).resolve().parents[1] / "examples" / "lm_eval_tasks")
SMALL = ["--batch-size", "4", "--seq-len", "16", "--verbose", "lines"]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def invoke(args):
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output[-3000:]
    return result.output


def evaluate(run, tasks, *extra, limit=3):
    """lm-eval's results dict of `klm evaluate RUN --tasks TASKS --json`."""
    args = ["evaluate", str(run), "--tasks", tasks, "--include-path", TASKS_DIR, "--limit", str(limit), "--json"]
    output = invoke([*args, "--batch-size", "4", *extra])
    return json.loads(output[output.index("{\n") :])


def corpus(path):
    lines = [json.loads(line) for line in open(Path(TASKS_DIR) / "text.jsonl")]
    path.write_text("\n".join(line["text"].lower() for line in lines * 20) + "\n")
    return str(path)


@pytest.mark.slow
def test_lora_run(tmp_path):
    pytest.importorskip("transformers")
    from klm.pretrained import testing

    run = tmp_path / "lora"
    pretrain = ["pretrain", "--init-from", testing.cached_hf_checkpoint("gpt2"), "--data", corpus(tmp_path / "t.txt")]
    invoke([*pretrain, "--run-dir", str(run), "--max-steps", "2", "--lora-rank", "2", "--lr", "1e-2", *SMALL])
    assert json.loads((run / "summary.json").read_text())["lora"]["rank"] == 2
    results = evaluate(run, "klm_choice,klm_answer")
    assert results["klm"]["checkpoint"]["kind"] == "klm_run"
    assert 0.0 <= results["results"]["klm_choice"]["acc,none"] <= 1.0
    assert results["results"]["klm_answer"]["exact_match,none"] >= 0.0
    # The adapters are applied: the run scores a request differently from the checkpoint it started from.
    from lm_eval.api.instance import Instance

    from klm.evaluation.harness import KlmLM

    request = [Instance("loglikelihood", {}, ("Question: What did early models count?\nAnswer:", " n-grams"), 0)]
    tuned = KlmLM(str(run)).loglikelihood(request, disable_tqdm=True)[0][0]
    base = KlmLM(testing.cached_hf_checkpoint("gpt2")).loglikelihood(request, disable_tqdm=True)[0][0]
    assert abs(tuned - base) > 1e-4


@pytest.mark.slow
def test_quantized_run(tmp_path):
    run, out = tmp_path / "lm", tmp_path / "int8"
    text = corpus(tmp_path / "t.txt")
    invoke(["pretrain", "--preset", "tiny", "--data", text, "--run-dir", str(run), "--max-steps", "4", *SMALL])
    invoke(["quantize", str(run), str(out), "--mode", "int8", "--eval-data", text, "--speed-tokens", "2"])
    results = evaluate(out, "klm_choice,klm_text,klm_answer")
    assert set(results["results"]) == {"klm_choice", "klm_text", "klm_answer"}
    # int8 weights score about as the float ones do.
    full = evaluate(run, "klm_text")
    quantized = results["results"]["klm_text"]["byte_perplexity,none"]
    assert quantized == pytest.approx(full["results"]["klm_text"]["byte_perplexity,none"], rel=0.05)
    assert quantized != full["results"]["klm_text"]["byte_perplexity,none"]


@pytest.mark.slow
def test_sft_run_with_its_chat_template(tmp_path):
    from klm.sft.testing import reversal_examples, write_jsonl

    train, _ = reversal_examples(held_out=4)
    data = write_jsonl(tmp_path / "train.jsonl", train)
    run = tmp_path / "sft"
    args = ["finetune", "--task", "sft", "--preset", "tiny", "--tokenizer", "word", "--train", data]
    invoke([*args, "--run-dir", str(run), "--max-steps", "2", "--batch-size", "8", "--seq-len", "32"])
    results = evaluate(run, "klm_answer,klm_choice", "--apply-chat-template")
    assert "exact_match,none" in results["results"]["klm_answer"]
    # The results name the template the prompts were rendered with: the run's own.
    from klm.evaluation.chat import checkpoint_template
    from klm.pretrained import load_checkpoint

    assert results["klm"]["chat_template"] == checkpoint_template(load_checkpoint(str(run))).text
    assert results["klm"]["chat_template"]
    assert evaluate(run, "klm_choice")["klm"]["chat_template"] is None


@pytest.mark.slow
def test_keras_hub_preset_folder_scores_as_its_transformers_source(tmp_path):
    pytest.importorskip("transformers")
    from klm.pretrained import load_checkpoint, testing

    source = testing.cached_hf_checkpoint("gpt2")
    checkpoint = load_checkpoint(source)
    preset = tmp_path / "preset"
    checkpoint.model.save_to_preset(str(preset))  # config, weights and the preprocessor's tokenizer
    ours = evaluate(preset, "klm_choice,klm_text", limit=4)
    assert ours["klm"]["checkpoint"]["kind"] == "keras_hub_dir"
    reference = evaluate(source, "klm_choice,klm_text", limit=4)
    assert ours["results"]["klm_choice"] == reference["results"]["klm_choice"]
    ppl = "byte_perplexity,none"
    assert ours["results"]["klm_text"][ppl] == pytest.approx(reference["results"]["klm_text"][ppl], rel=1e-6)
