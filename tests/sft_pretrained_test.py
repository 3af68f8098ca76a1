"""SFT from a pretrained Hugging Face checkpoint: its chat template, LoRA, packing refused."""

import json
import os

import pytest
from click.testing import CliRunner

from klm.cli.main import main
from klm.sft.testing import reversal_examples, write_jsonl

pytest.importorskip("transformers")

TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}{{ eos_token }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)


def invoke(args):
    return CliRunner().invoke(main, args, catch_exceptions=False)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from klm.pretrained.testing import cached_hf_checkpoint, copy_checkpoint

    path = copy_checkpoint(cached_hf_checkpoint("gpt2"), tmp_path_factory.mktemp("hf") / "gpt2")
    config_path = os.path.join(path, "tokenizer_config.json")
    config = json.load(open(config_path))
    config["chat_template"] = TEMPLATE
    json.dump(config, open(config_path, "w"))
    return path


@pytest.mark.slow
def test_sft_from_a_checkpoint_uses_its_chat_template_with_lora(checkpoint, tmp_path):
    train, held_out = reversal_examples(held_out=8)
    train_path = write_jsonl(tmp_path / "train.jsonl", train[:64])
    held_path = write_jsonl(tmp_path / "held.jsonl", held_out)
    run = str(tmp_path / "run")
    common = [
        "finetune",
        "--task",
        "sft",
        "--from",
        checkpoint,
        "--train",
        train_path,
        "--run-dir",
        run,
        "--batch-size",
        "8",
        "--seq-len",
        "48",
        "--verbose",
        "quiet",
    ]
    result = CliRunner().invoke(main, [*common, "--packing"])
    assert result.exit_code == 2 and "--packing needs klm's own models" in result.output
    assert not os.path.exists(run)
    result = invoke(
        [
            *common,
            "--valid",
            held_path,
            "--max-steps",
            "4",
            "--lora-rank",
            "2",
            "--lr",
            "1e-3",
            "--eval-generations",
            "2",
            "--max-new-tokens",
            "4",
        ]
    )
    assert result.exit_code == 0, result.output
    assert "template: chat template of" in result.output
    config = json.load(open(os.path.join(run, "config.json")))
    assert config["sft"]["template"]["kind"] == "jinja" and config["pretrained"]["architecture"] == "GPT2CausalLM"
    summary = json.load(open(os.path.join(run, "summary.json")))
    assert summary["lora"]["rank"] == 2 and summary["lora"]["trainable"] < summary["lora"]["total"] / 10
    assert 0 <= summary["valid_exact_match"] <= 1
    metrics = json.loads(invoke(["evaluate", run, "--data", held_path, "--json", "--max-new-tokens", "4"]).output)
    assert metrics["template"].startswith("chat template of") and metrics["response_tokens"] > 0
    result = invoke(["generate", run, "--prompt", "reverse: a b c", "--sampler", "greedy", "--max-new-tokens", "3"])
    assert result.exit_code == 0, result.output
