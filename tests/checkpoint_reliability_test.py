"""Issue 22's pretrained-checkpoint, generation and export cases: clear errors (exit 2), nothing left behind.

Each case is what a user ran: a truncated `model.safetensors`, a `config.json` that disagrees with the
weights, a shard index naming `../`, a chat template that never ends, a prompt that is not UTF-8,
`--seq-len` past the model's positions, `klm export` of a bare Transformers folder, SIGTERM during
`klm export`, and `export --format hf` of an SFT run (its chat template kept, normal permissions).
"""

import json
import os
import signal
import subprocess
import sys
import time

import keras
import pytest
from click.testing import CliRunner

from klm.cli.main import main
from klm.sft.testing import reversal_examples, write_jsonl

BACKEND = keras.backend.backend()
HANGING_TEMPLATE = (
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    "{% for m in messages %}{{ m['content'] }}{% endfor %}"
)


def invoke(args, input=None):
    return CliRunner().invoke(main, args, catch_exceptions=False, input=input)


@pytest.fixture(scope="module")
def gpt2():
    pytest.importorskip("transformers")
    from klm.pretrained.testing import cached_hf_checkpoint

    return cached_hf_checkpoint("gpt2")


@pytest.fixture(scope="module")
def sft_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sft-data")
    train, held_out = reversal_examples(held_out=8)
    return write_jsonl(folder / "train.jsonl", train[:64]), write_jsonl(folder / "held.jsonl", held_out)


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory, sft_data):
    run = str(tmp_path_factory.mktemp("runs") / "sft")
    result = invoke(
        ["finetune", "--task", "sft", "--preset", "tiny", "--tokenizer", "word", "--seq-len", "32"]
        + ["--batch-size", "8", "--max-steps", "2", "--verbose", "quiet", "--train", sft_data[0], "--run-dir", run]
    )
    assert result.exit_code == 0, result.output
    return run


def test_non_utf8_prompt_is_a_clear_error(gpt2, sft_run):
    """Items 11-12: bytes that are not UTF-8 in --prompt (argv) or on stdin (--chat)."""
    bad = b"caf\xe9 au lait".decode("utf-8", "surrogateescape")  # what Python makes of such argv bytes
    for run in (gpt2, sft_run):
        result = invoke(["generate", run, "--prompt", bad, "--max-new-tokens", "2"])
        assert result.exit_code == 2, result.output
        assert "Expected --prompt to be UTF-8 text" in result.output and "b'\\xe9'" in result.output
        assert "Traceback" not in result.output
    result = invoke(["generate", sft_run, "--chat", "--max-new-tokens", "2"], input=b"reverse: a b c\ncaf\xe9\n")
    assert result.exit_code == 2, result.output
    assert result.output.count("assistant: ") == 1  # the first line was answered
    assert "Expected stdin to be UTF-8 text; line 2" in result.output and "b'\\xe9'" in result.output


def test_damaged_checkpoint_is_a_clear_error_in_evaluate_and_sft(gpt2, sft_data, tmp_path):
    """Item 14: a truncated model.safetensors; items 13 and 23: config.json's layer count against the weights."""
    from klm.pretrained.testing import copy_checkpoint

    folder = copy_checkpoint(gpt2, tmp_path / "cut")
    weights = os.path.join(folder, "model.safetensors")
    with open(weights, "r+b") as f:
        f.truncate(os.path.getsize(weights) - 1000)
    for args in (
        ["evaluate", folder, "--data", sft_data[1]],
        ["finetune", "--task", "sft", "--from", folder, "--train", sft_data[0], "--run-dir", str(tmp_path / "r")],
    ):
        result = invoke(args)
        assert result.exit_code == 2, result.output
        assert f"{weights} is damaged or truncated" in result.output
        assert not os.path.exists(tmp_path / "r")
    for layers, phrase in ((3, "hold no weights for layer(s) 2"), (1, "weights would be left unused")):
        folder = copy_checkpoint(gpt2, tmp_path / f"layers{layers}")
        config = json.load(open(os.path.join(folder, "config.json")))
        json.dump(dict(config, n_layer=layers), open(os.path.join(folder, "config.json"), "w"))
        result = invoke(["evaluate", folder, "--data", sft_data[1]])
        assert result.exit_code == 2 and phrase in result.output and f"n_layer={layers}" in result.output


def test_seq_len_beyond_the_models_positions_is_refused(gpt2, sft_data, tmp_path):
    """Items 16-17: the tiny preset has 256 learned positions, the test GPT-2 checkpoint 64."""
    corpus = tmp_path / "small.txt"
    corpus.write_text("the cat sat on the mat .\n" * 400)
    run = str(tmp_path / "run")
    cases = [
        ["pretrain", "--preset", "tiny", "--data", str(corpus), "--run-dir", run, "--seq-len", "512"],
        ["finetune", "--task", "sft", "--preset", "tiny", "--train", sft_data[0], "--run-dir", run, "--seq-len", "512"],
        ["estimate", "--preset", "tiny", "--data", str(corpus), "--seq-len", "512", "--measure-steps", "0"],
    ]
    for args in cases:
        result = invoke(args)
        assert result.exit_code == 2, result.output
        assert "Expected --seq-len <= 256 (the tiny preset's learned positions)" in result.output
        assert "Received: --seq-len=512" in result.output and not os.path.exists(run)
    for args in (
        ["finetune", "--task", "sft", "--from", gpt2, "--train", sft_data[0], "--run-dir", run, "--seq-len", "128"],
        ["pretrain", "--init-from", gpt2, "--data", str(corpus), "--run-dir", run, "--seq-len", "128"],
        ["estimate", "--init-from", gpt2, "--seq-len", "128", "--measure-steps", "0"],
    ):
        result = invoke(args)
        assert result.exit_code == 2, result.output
        assert f"Expected --seq-len <= 64 (the max positions of {gpt2})" in result.output, result.output
        assert "Received: --seq-len=128" in result.output and not os.path.exists(run)


def test_a_chat_template_that_never_ends_is_refused_fast(gpt2, sft_data, tmp_path):
    """Item 9: two nested range(100000) loops (10^10 iterations) in the checkpoint's chat template."""
    from klm.pretrained.testing import copy_checkpoint

    folder = copy_checkpoint(gpt2, tmp_path / "hang")
    config_path = os.path.join(folder, "tokenizer_config.json")
    config = json.load(open(config_path))
    json.dump(dict(config, chat_template=HANGING_TEMPLATE), open(config_path, "w"))
    run = tmp_path / "run"
    started = time.monotonic()
    result = invoke(
        [
            "finetune",
            "--task",
            "sft",
            "--from",
            folder,
            "--train",
            sft_data[0],
            "--run-dir",
            str(run),
            "--seq-len",
            "48",
        ]
    )
    assert result.exit_code == 2, result.output
    print(f"refused after {time.monotonic() - started:.1f} s")
    assert f"The chat template of {folder} (tokenizer_config.json) exceeded" in result.output
    assert "loop iterations" in result.output and "--template FILE" in result.output
    assert not run.exists()


@pytest.mark.slow
@pytest.mark.skipif(BACKEND != "tensorflow", reason="the SavedModel is built in TensorFlow whatever the backend")
def test_export_of_a_bare_transformers_folder(gpt2, tmp_path):
    """Item 21: a Transformers folder (a pretrained causal LM) exports as a SavedModel, verified."""
    out = tmp_path / "serving"
    result = invoke(["export", gpt2, str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{") :])
    assert report["path"] == str(out / "1") and report["verified"] and report["tokenizer"] == "GPT2Tokenizer"


@pytest.mark.slow
@pytest.mark.skipif(BACKEND != "tensorflow", reason="the SavedModel is built in TensorFlow whatever the backend")
def test_sigterm_of_an_export_stops_its_worker_and_leaves_nothing(gpt2, tmp_path):
    """Item 30: SIGTERM while the TensorFlow worker runs: the worker stops, the temporary folders go."""
    out = tmp_path / "serving"
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = dict(os.environ, TMPDIR=str(scratch))
    process = subprocess.Popen(
        [sys.executable, "-m", "klm.cli.main", "export", gpt2, str(out)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    children = []
    deadline = time.monotonic() + 300
    while not children and time.monotonic() < deadline:
        time.sleep(0.5)
        children = _children(process.pid)  # the TensorFlow worker, once the export has started it
    assert children, "the export did not start its worker"
    time.sleep(3)
    assert any(name.startswith("klm-export-") for name in os.listdir(scratch))
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 128 + signal.SIGTERM
    assert not [pid for pid in children if _alive(pid)]
    assert not out.exists() and os.listdir(scratch) == []  # OUT was made by the export: removed too


def _children(pid):
    path = f"/proc/{pid}/task/{pid}/children"
    if not os.path.exists(path):
        pytest.skip("needs /proc (Linux) to find the export's child process")
    return [int(child) for child in open(path).read().split()]


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] if os.path.exists(f"/proc/{pid}") else "X"
    return state != "Z"


@pytest.mark.slow
def test_export_hf_of_an_sft_run_keeps_its_template_and_normal_permissions(gpt2, sft_data, tmp_path):
    """Item 31: the run's klm template becomes an equivalent Jinja chat template that Transformers renders."""
    run = str(tmp_path / "run")
    result = invoke(
        ["finetune", "--task", "sft", "--from", gpt2, "--train", sft_data[0], "--run-dir", run]
        + ["--seq-len", "48", "--batch-size", "8", "--max-steps", "2", "--verbose", "quiet", "--eval-generations", "0"]
    )
    assert result.exit_code == 0, result.output
    out = tmp_path / "hf"
    old_umask = os.umask(0o022)
    try:
        result = invoke(["export", run, str(out), "--format", "hf", "--json"])
    finally:
        os.umask(old_umask)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{") :])
    assert report["verified"] and "translated to an equivalent Jinja chat template" in report["chat_template"]
    assert os.stat(out).st_mode & 0o777 == 0o755
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(str(out))
    messages = [{"role": "user", "content": "reverse: a b c"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == "user: reverse: a b c\nassistant: "
