"""End-to-end: the `klm` commands on tiny data, on the backend of this process."""

import csv
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import run_in_backend

from klm.cli.main import main

BACKEND = keras.backend.backend()
WORDS = "the a cat dog sat ran on under mat log big small red blue and then".split()
GOOD, BAD = ["good", "great", "fine", "nice"], ["bad", "awful", "poor", "sad"]


def make_corpus(path, lines=400, seed=0):
    rng = np.random.default_rng(seed)
    with open(path, "w") as f:
        for _ in range(lines):
            n = rng.integers(4, 12)
            # The sentiment words appear too, so the fine-tuning tests' words are in the vocabulary.
            f.write(" ".join(rng.choice(WORDS + GOOD + BAD, size=n)) + " .\n")
    return str(path)


def make_labelled(path, lines=120, seed=0):
    rng = np.random.default_rng(seed)
    good, bad = GOOD, BAD
    with open(path, "w") as f:
        for i in range(lines):
            label = i % 2
            words = list(rng.choice(WORDS, size=3)) + list(rng.choice(good if label else bad, size=3))
            rng.shuffle(words)
            f.write(f"{label} {' '.join(words)}\n")
    return str(path)


def invoke(args):
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    return result


TINY = ["--preset", "tiny", "--batch-size", "4", "--seq-len", "8", "--log-every", "5", "--verbose", "lines"]


@pytest.mark.smoke
def test_help_lists_commands_without_importing_keras():
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from klm.cli.main import main; sys.argv=['klm','--help'];\n"
            "try:\n main()\nexcept SystemExit: pass\nprint('KERAS_IMPORTED', 'keras' in sys.modules)",
        ],
        capture_output=True,
        text=True,
    )
    assert "pretrain" in proc.stdout and "finetune" in proc.stdout
    assert "KERAS_IMPORTED False" in proc.stdout


@pytest.mark.smoke
def test_no_command_module_imports_a_framework_before_backend_is_applied():
    # click imports a command's module before it parses the command's flags: were Keras imported then,
    # `--backend` could no longer choose the backend (and TensorFlow's GPU-probe lines would escape the filter).
    from klm.cli.main import COMMANDS

    modules = sorted({module for module, _, _ in COMMANDS.values()})
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print('IMPORTED', sorted(m for m in ('keras', 'tensorflow', 'jax', 'torch') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "IMPORTED []" in proc.stdout, (proc.stdout, proc.stderr[-2000:])


@pytest.mark.smoke
def test_pretrain_evaluate_generate_finetune_evaluate(tmp_path):
    train = make_corpus(tmp_path / "train.txt")
    valid = make_corpus(tmp_path / "valid.txt", lines=60, seed=1)
    run = str(tmp_path / "lm")
    result = invoke(
        [
            "pretrain",
            "--data",
            train,
            "--valid",
            valid,
            "--test",
            valid,
            "--run-dir",
            run,
            "--max-steps",
            "30",
            "--optimizer",
            "adamw",
            "--lr",
            "3e-3",
            *TINY,
        ]
    )
    assert result.exit_code == 0, result.output
    assert "| epoch   1 |" in result.output and "test ppl" in result.output
    summary = json.load(open(os.path.join(run, "summary.json")))
    assert summary["backend"] == BACKEND and summary["steps"] == 30
    assert summary["test_ppl"] < len(WORDS + GOOD + BAD) + 5  # not worse than uniform over the words
    for name in ("config.json", "last.keras", "best.keras", "metrics.csv", "curves.png", "tokenizer"):
        assert os.path.exists(os.path.join(run, name)), name
    assert json.load(open(os.path.join(run, "config.json")))["lr"] == 3e-3

    result = invoke(["evaluate", run, "--data", valid, "--json"])
    assert result.exit_code == 0, result.output
    evaluation = json.loads(result.output)
    assert evaluation["perplexity"] == pytest.approx(summary["test_ppl"], rel=1e-3)
    assert evaluation["unknown_token_share"] == 0.0 and "warnings" not in evaluation
    # Issue 22, item 28: text the tokenizer cannot read (all <unk>) got a perplexity and no warning.
    unreadable = tmp_path / "greek.txt"
    unreadable.write_text("καλημέρα κόσμε τι κάνεις σήμερα\n" * 20, encoding="utf-8")
    result = invoke(["evaluate", run, "--data", str(unreadable), "--json"])
    assert result.exit_code == 0, result.output
    evaluation = json.loads(result.stdout)
    assert evaluation["unknown_token_share"] > 0.8 and "are <unk>" in evaluation["warnings"][0]
    assert "warning: " in result.stderr and "are <unk>" in result.stderr

    result = invoke(["generate", run, "--prompt", "the cat", "--max-new-tokens", "5", "--sampler", "greedy"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("the cat ") and len(result.output.split()) >= 3

    labelled = make_labelled(tmp_path / "labels.txt")
    clf = str(tmp_path / "clf")
    result = invoke(
        [
            "finetune",
            "--from",
            run,
            "--train",
            labelled,
            "--valid",
            labelled,
            "--test",
            labelled,
            "--run-dir",
            clf,
            "--epochs",
            "6",
            "--lr",
            "1e-2",
            "--pooling",
            "mean",
            "--batch-size",
            "8",
            "--seq-len",
            "16",
            "--log-every",
            "5",
            "--verbose",
            "lines",
        ]
    )
    assert result.exit_code == 0, result.output
    clf_summary = json.load(open(os.path.join(clf, "summary.json")))
    assert clf_summary["labels"] == ["0", "1"]
    result = invoke(["evaluate", clf, "--data", labelled, "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output)
    assert metrics["accuracy"] == pytest.approx(clf_summary["test_accuracy"], abs=1e-6)
    assert metrics["accuracy"] > 0.7
    assert np.sum(metrics["confusion_matrix"]) == 120


def test_run_folder_of_another_preset_is_refused(tmp_path):
    train = make_corpus(tmp_path / "train.txt", lines=100)
    run = str(tmp_path / "lm")
    assert invoke(["pretrain", "--data", train, "--run-dir", run, "--max-steps", "2", *TINY]).exit_code == 0
    result = invoke(["pretrain", "--data", train, "--run-dir", run, "--max-steps", "2", *TINY[2:], "--preset", "seed"])
    assert result.exit_code != 0
    assert "preset" in result.output and "--restart" in result.output
    assert json.load(open(os.path.join(run, "config.json")))["preset"] == "tiny"


@pytest.mark.smoke
@pytest.mark.parametrize(
    "args, message",
    [
        (["--seq-len", "1"], "--seq-len"),
        (["--lr", "-1"], "--lr"),
        (["--data", "/nonexistent/file.txt"], "/nonexistent/file.txt"),
    ],
)
def test_bad_flags_are_clear_errors(tmp_path, args, message):
    train = make_corpus(tmp_path / "train.txt", lines=20)
    result = invoke(["pretrain", "--data", train, "--run-dir", str(tmp_path / "r"), *args])
    assert result.exit_code != 0
    assert message in result.output
    assert not (tmp_path / "r" / "summary.json").exists()


@pytest.mark.skipif(BACKEND != "torch", reason="only the PyTorch trainer runs one step per call")
def test_steps_per_execution_is_refused_on_torch_before_any_work(tmp_path):
    train = make_corpus(tmp_path / "train.txt", lines=20)
    result = invoke(
        [
            "pretrain",
            "--data",
            train,
            "--run-dir",
            str(tmp_path / "r"),
            "--backend",
            "torch",
            "--steps-per-execution",
            "4",
            *TINY,
        ]
    )
    assert result.exit_code != 0
    assert "Expected --steps-per-execution 1 with the torch backend" in result.output
    assert "--steps-per-execution=4" in result.output
    assert not (tmp_path / "r" / "tokenizer").exists()


def test_log_lines_show_the_learning_rate_each_step_used(tmp_path):
    # Staircase decay per epoch (the reference's StepLR): the last step of epoch 1
    # still ran at lr 1.00; the first of epoch 2 at 0.50.
    train = make_corpus(tmp_path / "train.txt", lines=60)
    result = invoke(
        [
            "pretrain",
            "--data",
            train,
            "--run-dir",
            str(tmp_path / "r"),
            "--preset",
            "tiny",
            "--batch-size",
            "4",
            "--seq-len",
            "8",
            "--verbose",
            "lines",
            "--optimizer",
            "sgd",
            "--lr",
            "1.0",
            "--lr-decay",
            "0.5",
            "--epochs",
            "2",
            "--log-every",
            "1000",
        ]
    )
    assert result.exit_code == 0, result.output
    ends = [line for line in result.output.splitlines() if line.startswith("| epoch") and "batches" in line]
    assert len(ends) == 2, result.output
    assert "lr 1.00" in ends[0] and "lr 0.50" in ends[1], ends


def test_pretrain_keeps_the_references_short_last_step(tmp_path):
    # Contiguous batching ends each epoch with the reference's shorter step; steps,
    # tokens and the log's step counter count it (also when Keras runs several
    # steps per call, where its batch index overshoots the epoch's end).
    from klm.data import lm_steps_per_epoch, lm_tokens_per_epoch

    train = make_corpus(tmp_path / "train.txt", lines=60)
    spe = [] if BACKEND == "torch" else ["--steps-per-execution", "3"]
    run = tmp_path / "r"
    result = invoke(["pretrain", "--data", train, "--run-dir", str(run), "--epochs", "2", *TINY, *spe])
    assert result.exit_code == 0, result.output
    in_data = json.load(open(run / "config.json"))["train_tokens"]
    steps = lm_steps_per_epoch(in_data, 8, 4, mode="contiguous")
    tokens = lm_tokens_per_epoch(in_data, 8, 4, mode="contiguous")
    assert tokens < steps * 4 * 8  # this corpus does leave a short last step
    summary = json.load(open(run / "summary.json"))
    assert summary["steps"] == 2 * steps and summary["train_tokens"] == 2 * tokens
    assert f"{steps:5d}/{steps:5d} batches" in result.output, result.output
    rows = [r for r in csv.DictReader(open(run / "metrics.csv")) if r["loss"]]
    assert [int(r["step"]) for r in rows if int(r["step"]) % steps == 0] == [steps, 2 * steps]


@pytest.mark.smoke
@pytest.mark.heavy
def test_kill_and_resume(tmp_path):
    train = make_corpus(tmp_path / "train.txt", lines=400)
    run = tmp_path / "lm"
    command = [
        sys.executable,
        "-m",
        "klm.cli.main",
        "pretrain",
        "--data",
        train,
        "--run-dir",
        str(run),
        "--max-steps",
        "150",
        "--backup-every",
        "10",
        "--jit",
        "off",
        *TINY,
    ]
    env = dict(os.environ, KERAS_BACKEND=BACKEND)
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        rows = list(csv.DictReader(open(run / "metrics.csv"))) if (run / "metrics.csv").exists() else []
        if any((run / "backup").glob("state-*.json")) and rows and int(rows[-1]["step"]) >= 30:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "training finished before it could be killed:\n" + proc.stdout.read()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    assert not (run / "summary.json").exists()

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "resuming from the backup backup/state-" in rerun.stderr, rerun.stderr
    # Rows logged after the backup were dropped and logged again: each step once, in order.
    steps = [int(r["step"]) for r in csv.DictReader(open(run / "metrics.csv")) if r["loss"]]
    assert steps == list(range(5, 151, 5)), steps
    summary = json.load(open(run / "summary.json"))
    assert summary["steps"] == 150
    import klm.models  # noqa: F401 - registers klm's classes with Keras

    model = keras.saving.load_model(str(run / "last.keras"), safe_mode=True)
    assert model.count_params() > 0


@pytest.mark.skipif(BACKEND != "jax", reason="spans all three backends in subprocesses; runs once, in the jax suite")
def test_pretrain_jax_finetune_torch_evaluate_tensorflow(tmp_path):
    train = make_corpus(tmp_path / "train.txt", lines=100)
    labelled = make_labelled(tmp_path / "labels.txt", lines=40)
    steps = [
        ("jax", ["pretrain", "--data", train, "--run-dir", str(tmp_path / "lm"), "--max-steps", "5", *TINY]),
        (
            "torch",
            [
                "finetune",
                "--from",
                str(tmp_path / "lm"),
                "--train",
                labelled,
                "--run-dir",
                str(tmp_path / "clf"),
                "--epochs",
                "1",
                "--batch-size",
                "8",
                "--seq-len",
                "12",
                "--verbose",
                "quiet",
            ],
        ),
        ("tensorflow", ["evaluate", str(tmp_path / "clf"), "--data", labelled, "--json"]),
    ]
    for backend, args in steps:
        proc = run_in_backend(backend, ["-m", "klm.cli.main", *args, "--backend", backend])
        assert proc.returncode == 0, f"{backend}: {proc.stdout[-2000:]}{proc.stderr[-3000:]}"
    assert json.load(open(tmp_path / "lm" / "summary.json"))["backend"] == "jax"
    assert json.load(open(tmp_path / "clf" / "summary.json"))["backend"] == "torch"
    assert json.loads(proc.stdout)["backend"] == "tensorflow"


def test_finetune_refuses_a_different_tokenizer(tmp_path):
    train = make_corpus(tmp_path / "train.txt", lines=100)
    run = str(tmp_path / "lm")
    assert invoke(["pretrain", "--data", train, "--run-dir", run, "--max-steps", "2", *TINY]).exit_code == 0
    labelled = make_labelled(tmp_path / "labels.txt", lines=20)
    result = invoke(
        ["finetune", "--from", run, "--train", labelled, "--run-dir", str(tmp_path / "clf"), "--tokenizer", "byte"]
    )
    assert result.exit_code != 0
    assert "--tokenizer" in result.output and "pretrained run" in result.output
    assert not (tmp_path / "clf" / "summary.json").exists()


def test_diverging_loss_stops_with_a_clear_error(tmp_path):
    train = make_corpus(tmp_path / "train.txt", lines=100)
    run = tmp_path / "lm"
    result = invoke(
        [
            "pretrain",
            "--data",
            train,
            "--run-dir",
            str(run),
            "--max-steps",
            "40",
            "--lr",
            "1e30",
            "--optimizer",
            "sgd",
            "--clipnorm",
            "1e30",
            "--schedule",
            "constant",
            *TINY,
        ]
    )
    assert result.exit_code != 0
    assert "NaN" in result.output
    assert not (run / "summary.json").exists()


@pytest.mark.smoke
def test_config_file_with_flag_overrides(tmp_path):
    import click

    from klm.cli.train_cmd import build_config
    from klm.config import PretrainConfig

    (tmp_path / "run.yaml").write_text("data: corpus.txt\npreset: tiny\nlr: 0.1\nseq-len: 64\n")
    config = build_config(PretrainConfig, str(tmp_path / "run.yaml"), {"lr": 0.5})
    assert (config.data, config.preset, config.lr, config.seq_len, config.batch_size) == (
        "corpus.txt",
        "tiny",
        0.5,
        64,
        20,
    )
    (tmp_path / "bad.json").write_text('{"data": "x", "learning_rate": 3}')
    with pytest.raises(click.BadParameter, match="learning_rate"):
        build_config(PretrainConfig, str(tmp_path / "bad.json"), {})
    (tmp_path / "bad2.json").write_text('{"data": "x", "seq_len": 1}')
    with pytest.raises(click.UsageError, match="--seq-len"):
        build_config(PretrainConfig, str(tmp_path / "bad2.json"), {})
    # Issue 22, items 15 and 24: YAML strings are converted (or refused) exactly like flags.
    (tmp_path / "typed.yaml").write_text("data: x\nlr: 3e-4\nlowercase: 'no'\nmax_steps: '12'\n")
    config = build_config(PretrainConfig, str(tmp_path / "typed.yaml"), {})
    assert (config.lr, config.lowercase, config.max_steps) == (3e-4, False, 12)
    (tmp_path / "three.yaml").write_text('data: x\nmax_steps: "three"\n')
    result = invoke(["pretrain", "--config", str(tmp_path / "three.yaml"), "--run-dir", str(tmp_path / "r")])
    assert result.exit_code == 2, result.output
    assert "Expected --max-steps to be an integer. Received: --max-steps='three'" in result.output
    assert not (tmp_path / "r").exists()


def test_resolved_configs_of_the_commands_are_unchanged(tmp_path, monkeypatch):
    # tests/cli_resolved_configs.json: what these command lines resolved to before the options were generated
    # from the config dataclasses (klm.cli.options); the library functions are replaced by a recorder.
    import klm.estimate
    import klm.finetune
    import klm.sft.recipe
    import klm.train

    (tmp_path / "c.yaml").write_text("data: corpus.txt\npreset: tiny\nlr: 0.1\nseq-len: 64\nrestart: true\n")
    (tmp_path / "sft.yaml").write_text("task: sft\ntrain: t.jsonl\npacking: true\nlr: 0.001\n")
    resolved = []

    def record(config, **kwargs):
        resolved.append({"class": type(config).__name__, **config.to_dict(), **kwargs})
        return {}

    for module, name in (
        (klm.train, "pretrain"),
        (klm.finetune, "finetune"),
        (klm.sft.recipe, "finetune_sft"),
        (klm.estimate, "estimate"),
    ):
        monkeypatch.setattr(module, name, record)
    monkeypatch.setattr(klm.estimate, "format_report", lambda report: "")
    cases = json.load(open(os.path.join(os.path.dirname(__file__), "cli_resolved_configs.json")))
    for case in cases:
        resolved.clear()
        result = invoke([arg.replace("{tmp}", str(tmp_path)) for arg in case["args"]])
        assert result.exit_code == 0, (case["args"], result.output)
        config = dict(resolved[0])
        assert config.pop("backend") == BACKEND
        # Fields added since the snapshot was taken must keep their defaults on these command lines.
        for name in set(config) - set(case["config"]):
            assert config.pop(name) == _field_default(config["class"], name), (case["args"], name)
        assert config == case["config"], case["args"]


def _field_default(class_name, name):
    import dataclasses

    from klm import config as klm_config
    from klm.sft.config import SftConfig

    cls = {"SftConfig": SftConfig}.get(class_name) or getattr(klm_config, class_name)
    return {f.name: f.default for f in dataclasses.fields(cls)}[name]


@pytest.mark.smoke
def test_every_option_default_and_choices_come_from_the_configs():
    # Generated options (klm.cli.options): unset by default, choices and default help from the dataclass.
    # Every command's options come from config fields now; the checks below tie constants across modules.
    import click

    from klm import config as klm_config
    from klm.cli.estimate_cmd import estimate
    from klm.cli.eval_cmd import evaluate, generate
    from klm.cli.export_cmd import export
    from klm.cli.options import cli_fields
    from klm.cli.prepare_cmd import prepare
    from klm.cli.train_cmd import finetune, pretrain
    from klm.config import GenerateConfig, PretrainConfig, field_spec
    from klm.data import TOKENIZER_KINDS, CleaningConfig, PrepareConfig
    from klm.estimate_config import EstimateConfig
    from klm.evaluation.config import EvaluateConfig
    from klm.evaluation.tasks import HarnessConfig
    from klm.export import ExportConfig
    from klm.export.options import ExportOptions
    from klm.sft.config import SftConfig

    def options(command):
        return {param.name: param for param in command.params if isinstance(param, click.Option)}

    for command, classes in (
        (pretrain, [PretrainConfig]),
        (finetune, [klm_config.FinetuneConfig, SftConfig]),
        (generate, [GenerateConfig]),
        (prepare, [PrepareConfig, CleaningConfig]),
        (export, [ExportOptions]),
        (evaluate, [EvaluateConfig, HarnessConfig]),
        (estimate, [PretrainConfig, EstimateConfig]),
    ):
        params = options(command)
        for cls in classes:
            for name in cli_fields(cls):
                param, spec = params[name], field_spec(cls, name)
                assert param.default is None, (command.name, name)
                assert list(getattr(param.type, "choices", [])) == list(spec.get("choices", []))
                default = {f.name: f.default for f in dataclasses.fields(cls)}[name]
                if default not in (None, False, "") and "default_help" not in spec:
                    assert str(default) in param.help, (command.name, name, param.help)

    config_module = sys.modules[PrepareConfig.__module__]
    params = options(prepare)
    assert list(params["tokenizer"].type.choices) == list(klm_config.TOKENIZERS)
    assert list(params["format"].type.choices) == list(config_module.FORMATS)
    assert set(TOKENIZER_KINDS) <= set(klm_config.TOKENIZERS)

    # The SavedModel export's library config and `klm export`'s options agree.
    export_defaults = {f.name: f.default for f in dataclasses.fields(ExportConfig)}
    option_defaults = {f.name: f.default for f in dataclasses.fields(ExportOptions)}
    for name in ("version", "portable", "checkpoint", "verify"):
        assert option_defaults[name] == export_defaults[name], name
    assert option_defaults["max_new_tokens"] == export_defaults["verify_max_new_tokens"]

    from klm.models.presets import PRESETS

    assert klm_config.PRESET_NAMES == tuple(PRESETS)
    for command in (pretrain, finetune, generate, prepare, export, evaluate, estimate):
        assert all(param.help for param in options(command).values()), command.name
