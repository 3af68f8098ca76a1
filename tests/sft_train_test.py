"""End-to-end: `klm finetune --task sft`, `klm evaluate` and `klm generate` on a task a tiny model learns.

The task: reverse three letters (`"reverse: c a d"` -> `"d a c"`, 8 letters, 488 training prompts,
24 held-out ones). A model that never sees the prompt can at best answer the most frequent held-out
response (exact match 1/24 = 0.042); the untrained model answers none (0.000, measured on every backend).
After 120 steps on CPU the tiny preset reaches 1.0 on the held-out prompts on every backend, so asserting
>= 0.8 leaves a margin no chance can cross.
"""

import json
import os

import keras
import pytest
from click.testing import CliRunner

from klm.cli.main import main
from klm.sft.testing import PII_FRAGMENTS, pii_records, prompt_blind_exact_match, reversal_examples, write_jsonl

BACKEND = keras.backend.backend()
SFT = [
    "--task",
    "sft",
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
    "--log-every",
    "50",
    "--verbose",
    "lines",
    "--max-new-tokens",
    "8",
]


def invoke(args, input=None):
    return CliRunner().invoke(main, args, catch_exceptions=False, input=input)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sft-data")
    train, held_out = reversal_examples(held_out=24)
    return write_jsonl(folder / "train.jsonl", train), write_jsonl(folder / "held_out.jsonl", held_out), held_out


def test_sft_learns_the_task_then_evaluates_and_generates(tmp_path, data):
    train, held_out, records = data
    run = str(tmp_path / "sft")
    result = invoke(
        [
            "finetune",
            *SFT,
            "--train",
            train,
            "--valid",
            held_out,
            "--run-dir",
            run,
            "--max-steps",
            "120",
            "--eval-generations",
            "24",
        ]
    )
    assert result.exit_code == 0, result.output
    assert "template: klm default" in result.output and "exact match" in result.output
    summary = json.load(open(os.path.join(run, "summary.json")))
    config = json.load(open(os.path.join(run, "config.json")))
    assert config["task"] == "causal_lm" and config["finetune_task"] == "sft"
    assert config["sft"]["template"]["source"] == "klm default" and config["sft"]["train_on_prompt"] is False
    blind = prompt_blind_exact_match(records)
    print(
        f"[{BACKEND}] exact match after {summary['valid_exact_match']:.3f}, prompt-blind bound {blind:.3f}, "
        f"response loss "
        f"{summary['valid_response_loss']:.4f}, final train loss {summary['final_train_loss']:.4f}"
    )
    assert summary["valid_exact_match"] >= 0.8 > blind + 0.5
    assert summary["data"]["truncated_examples"] == 0 and 0 < summary["data"]["padding_fraction"] < 1

    result = invoke(["evaluate", run, "--data", held_out, "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output)
    for key in ("response_loss", "response_perplexity", "exact_match", "token_f1"):
        assert key in metrics
    assert 0 <= metrics["exact_match"] <= 1 and 0 <= metrics["token_f1"] <= 1
    assert metrics["exact_match"] == pytest.approx(summary["valid_exact_match"])
    assert metrics["response_loss"] == pytest.approx(summary["valid_response_loss"], rel=1e-4)
    assert metrics["token_f1"] >= metrics["exact_match"] and len(metrics["samples"]) == 3
    text = invoke(["evaluate", run, "--data", held_out]).output
    assert "exact match:" in text and "--- prompt:" in text

    result = invoke(["generate", run, "--prompt", records[0]["prompt"], "--sampler", "greedy", "--max-new-tokens", "8"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == records[0]["response"]
    stop = " " + records[0]["response"].split()[-1]
    stopped = invoke(["generate", run, "--prompt", records[0]["prompt"], "--sampler", "greedy", "--stop", stop]).output
    response = records[0]["response"]
    assert stopped.rstrip("\n") == response[: response.find(stop)]
    chat = invoke(
        ["generate", run, "--chat", "--sampler", "greedy", "--max-new-tokens", "8"], input=f"{records[1]['prompt']}\n"
    )
    assert chat.exit_code == 0, chat.output
    assert chat.output.strip() == f"assistant: {records[1]['response']}"
    # The same command again: the run is finished, nothing to do.
    result = invoke(["finetune", *SFT, "--train", train, "--valid", held_out, "--run-dir", run, "--max-steps", "120"])
    assert result.exit_code == 0 and "already finished" in result.output


def test_sft_packing_with_lora_trains(tmp_path, data):
    train, held_out, _ = data
    run = str(tmp_path / "packed")
    result = invoke(
        [
            "finetune",
            *SFT,
            "--train",
            train,
            "--valid",
            held_out,
            "--run-dir",
            run,
            "--max-steps",
            "20",
            "--packing",
            "--eval-generations",
            "4",
            "--lora-rank",
            "4",
        ]
    )
    assert result.exit_code == 0, result.output
    summary = json.load(open(os.path.join(run, "summary.json")))
    assert summary["lora"]["rank"] == 4 and summary["lora"]["trainable"] < summary["lora"]["total"]
    assert summary["data"]["sequences"] < summary["data"]["examples"]  # several examples per row
    assert summary["data"]["padding_fraction"] < 0.2
    assert summary["final_train_loss"] < 4.0


def test_sft_resumes_and_continues_from_an_sft_run(tmp_path, data):
    train, held_out, _ = data
    run = str(tmp_path / "resumed")
    args = [
        "finetune",
        "--task",
        "sft",
        "--train",
        train,
        "--run-dir",
        run,
        "--batch-size",
        "32",
        "--seq-len",
        "32",
        "--backup-every",
        "5",
        "--verbose",
        "quiet",
        "--eval-generations",
        "0",
    ]  # default tokenizer (word)
    assert invoke([*args, "--max-steps", "5"]).exit_code == 0
    result = invoke([*args, "--max-steps", "10"])
    assert result.exit_code == 0, result.output
    assert "resuming" in result.output
    assert json.load(open(os.path.join(run, "summary.json")))["steps"] == 10
    more = str(tmp_path / "more")
    template = tmp_path / "t.txt"
    template.write_text("Q {prompt} A {response}")
    result = invoke(
        [
            "finetune",
            "--task",
            "sft",
            "--from",
            run,
            "--train",
            train,
            "--run-dir",
            more,
            "--max-steps",
            "2",
            "--verbose",
            "quiet",
            "--eval-generations",
            "0",
            "--batch-size",
            "32",
            "--seq-len",
            "32",
        ]
    )
    assert result.exit_code == 0, result.output
    assert json.load(open(os.path.join(more, "config.json")))["sft"]["template"]["source"] == "klm default"
    result = CliRunner().invoke(
        main,
        [
            "finetune",
            "--task",
            "sft",
            "--from",
            run,
            "--train",
            train,
            "--run-dir",
            str(tmp_path / "x"),
            "--tokenizer",
            "byte",
        ],
    )
    assert result.exit_code == 2 and "does not match --from" in result.output


@pytest.mark.smoke
@pytest.mark.parametrize(
    "line, message",
    [
        ('{"prompt": "x", "response": ""}', "line 2"),
        ('{"messages": [{"role": "bot", "content": "x"}]}', "Unknown role"),
        ("not json", "Malformed JSON on line 2"),
        ("[" * 100_000, "nested too deeply"),  # issue 22, item 10: RecursionError (exit 1) before
    ],
)
def test_sft_bad_data_fails_cleanly_and_writes_nothing(tmp_path, line, message):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "response": "b"}\n' + line + "\n")
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["finetune", *SFT, "--train", str(bad), "--run-dir", str(run)])
    assert result.exit_code == 2, result.output
    assert message in result.output and "bad.jsonl" in result.output
    assert not run.exists()


def test_sft_scrub_privacy_keeps_secrets_out_of_the_run(tmp_path):
    # Issue 22, item 6: an e-mail, a password, an AKIA key, a card and a phone number reached
    # tokenizer/vocabulary.txt while config.json recorded scrub_privacy: true.
    train = write_jsonl(tmp_path / "pii.jsonl", pii_records() * 3)
    run = tmp_path / "run"
    args = ["finetune", *SFT, "--train", train, "--run-dir", str(run), "--max-steps", "1", "--scrub-privacy"]
    result = CliRunner().invoke(main, [*args, "--eval-generations", "0"])
    assert result.exit_code == 0, result.output
    vocabulary = (run / "tokenizer" / "vocabulary.txt").read_text(encoding="utf-8").lower()
    assert "secret" in vocabulary and "email" in vocabulary
    config = json.loads((run / "config.json").read_text())
    assert config["scrub_privacy"] is True
    cleaning = config["sft"]["data"]["cleaning"]
    assert {kind: cleaning[f"privacy_{kind}"] for kind in ("email", "secret", "card", "phone")} == {
        "email": 6,
        "secret": 9,
        "card": 6,
        "phone": 6,
    }
    for fragment in PII_FRAGMENTS:
        assert fragment not in vocabulary, fragment


def test_sft_refused_examples_and_wrong_flags(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "a b c d e f g h", "response": "x"}] * 3)
    run = tmp_path / "run"
    result = CliRunner().invoke(
        main, ["finetune", *SFT, "--train", path, "--run-dir", str(run), "--seq-len", "4", "--truncate", "refuse"]
    )
    assert result.exit_code == 2 and "3 example(s) do not fit --seq-len 4" in result.output
    assert not run.exists()  # the started run folder was removed again
    result = CliRunner().invoke(main, ["finetune", *SFT, "--train", path, "--run-dir", str(run), "--pooling", "mean"])
    assert result.exit_code == 2 and "--pooling applies to --task classify only" in result.output
    result = CliRunner().invoke(main, ["finetune", "--train", path, "--run-dir", str(run), "--packing"])
    assert result.exit_code == 2 and "--packing applies to --task sft only" in result.output
    result = CliRunner().invoke(main, ["finetune", *SFT, "--train", path, "--run-dir", str(run), "--freeze-backbone"])
    assert result.exit_code == 2 and "--lora-rank" in result.output
