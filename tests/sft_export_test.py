"""`klm export` of an SFT run: the generate signatures take RAW prompts and apply the template in the graph."""

import json

import keras
import pytest
from click.testing import CliRunner

from klm.cli.main import main
from klm.export import call_in_tensorflow_only_process
from klm.sft.testing import reversal_examples, write_jsonl

BACKEND = keras.backend.backend()


def invoke(args):
    return CliRunner().invoke(main, args, catch_exceptions=False)


@pytest.mark.slow
def test_sft_export_generates_like_klm_generate_from_raw_prompts(tmp_path):
    train, held_out = reversal_examples()
    run = str(tmp_path / "sft")
    result = invoke(
        [
            "finetune",
            "--task",
            "sft",
            "--train",
            write_jsonl(tmp_path / "train.jsonl", train),
            "--run-dir",
            run,
            "--preset",
            "tiny",
            "--tokenizer",
            "word",
            "--batch-size",
            "32",
            "--seq-len",
            "32",
            "--lr",
            "3e-3",
            "--max-steps",
            "120",
            "--verbose",
            "quiet",
            "--eval-generations",
            "0",
        ]
    )
    assert result.exit_code == 0, result.output
    out = tmp_path / "serving"
    result = invoke(["export", run, str(out), "--portable", "--backend", BACKEND])
    assert result.exit_code == 0, result.output
    assert "Verified" in result.output

    prompts = [record["prompt"] for record in held_out[:4]]
    check = call_in_tensorflow_only_process(
        out / "1",
        calls=[{"signature": "generate", "inputs": {"prompts": prompts, "max_new_tokens": 8}}],
        load_text_ops=False,
    )
    served = check["outputs"][0]["generated_text"]
    expected = [
        invoke(["generate", run, "--prompt", prompt, "--sampler", "greedy", "--max-new-tokens", "8"]).output.rstrip(
            "\n"
        )
        for prompt in prompts
    ]
    print(f"[{BACKEND}] served {served} klm generate {expected} references {[r['response'] for r in held_out[:4]]}")
    assert served == expected
    # The template is applied inside the graph: the raw prompt is answered, not continued.
    assert sum(text == record["response"] for text, record in zip(served, held_out)) >= 2
    config = json.load(open(f"{run}/config.json"))
    assert config["sft"]["template"]["source"] == "klm default"
