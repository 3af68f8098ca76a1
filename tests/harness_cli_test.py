"""`klm evaluate RUN --tasks ...` end to end: klm's own runs, JSON output, and the errors (exit 2)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from klm.cli.main import main

TASKS_DIR = str(Path(__file__).resolve().parents[1] / "examples" / "lm_eval_tasks")
TINY = ["--preset", "tiny", "--batch-size", "4", "--seq-len", "16", "--verbose", "lines"]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def invoke(args):
    return CliRunner().invoke(main, args, catch_exceptions=False)


def corpus(path):
    lines = [json.loads(line) for line in open(Path(TASKS_DIR) / "text.jsonl")]
    path.write_text("\n".join(line["text"].lower() for line in lines * 20) + "\n")
    return str(path)


def test_lm_eval_is_imported_only_for_tasks():
    code = (
        "import sys; import klm.cli.eval_cmd, klm.evaluation, klm.evaluate; "
        "from click.testing import CliRunner; from klm.cli.main import main; "
        "r = CliRunner().invoke(main, ['evaluate', '--help']); assert r.exit_code == 0, r.output; "
        "assert '--tasks' in r.output; assert 'lm_eval' not in sys.modules, 'lm_eval was imported'"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_missing_lm_eval_names_the_extra(tmp_path):
    # A fresh interpreter in which `import lm_eval` fails as when the package is not installed
    # (`sys.modules[name] = None` makes the import system raise ImportError); klm's code runs unchanged.
    code = (
        "import sys; sys.modules['lm_eval'] = None; "
        "from click.testing import CliRunner; from klm.cli.main import main; "
        f"r = CliRunner().invoke(main, ['evaluate', {str(tmp_path)!r}, '--tasks', 'hellaswag']); "
        "print(r.output); sys.exit(r.exit_code)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert 'pip install "klm[eval]"' in proc.stdout, proc.stdout[-2000:]


def test_task_flags_need_tasks(tmp_path):
    result = invoke(["evaluate", str(tmp_path), "--data", "x.txt", "--limit", "3"])
    assert result.exit_code == 2 and "--limit go with --tasks" in result.output
    result = invoke(["evaluate", str(tmp_path)])
    assert result.exit_code == 2 and "--tasks" in result.output
    result = invoke(["evaluate", str(tmp_path), "--tasks", "klm_choice", "--include-path", str(tmp_path / "none")])
    assert result.exit_code == 2 and "--include-path" in result.output


@pytest.mark.slow
def test_klm_runs_unknown_tasks_and_classifiers(tmp_path):
    pytest.importorskip("lm_eval", reason="lm-eval is klm's optional `eval` extra (pip install klm[eval])")
    run = str(tmp_path / "lm")
    train = corpus(tmp_path / "train.txt")
    assert invoke(["pretrain", "--data", train, "--run-dir", run, "--max-steps", "2", *TINY]).exit_code == 0

    # A klm run: lm-eval's table, --json and --output.
    output = tmp_path / "out" / "results.json"
    tasks = ["--tasks", "klm_choice,klm_text,klm_answer", "--include-path", TASKS_DIR, "--limit", "3"]
    result = invoke(["evaluate", run, *tasks, "--json", "--output", str(output)])
    assert result.exit_code == 0, result.output
    results = json.loads(result.output[result.output.index("{\n") :])
    assert set(results["results"]) == {"klm_choice", "klm_text", "klm_answer"}
    assert 0.0 <= results["results"]["klm_choice"]["acc,none"] <= 1.0
    assert results["results"]["klm_text"]["word_perplexity,none"] > 1.0
    assert results["klm"]["requests"] > 0 and results["klm"]["checkpoint"]["kind"] == "klm_run"
    assert json.loads(output.read_text())["results"] == results["results"]
    result = invoke(["evaluate", run, "--tasks", "klm_choice", "--include-path", TASKS_DIR, "--limit", "2"])
    assert result.exit_code == 0 and "|klm_choice|" in result.output and "requests/s" in result.output

    # Unknown task names: lm-eval's message, exit 2, no output file.
    missing = tmp_path / "missing.json"
    unknown = ["--tasks", "klm_choice,no_such_task", "--include-path", TASKS_DIR, "--output", str(missing)]
    result = invoke(["evaluate", run, *unknown])
    assert result.exit_code == 2 and "Tasks not found: no_such_task" in result.output
    assert not missing.exists()

    # A classifier has no language-model head.
    labelled = tmp_path / "labels.txt"
    labelled.write_text("".join(f"{i % 2} {'good fine' if i % 2 else 'bad poor'} text {i}\n" for i in range(40)))
    clf = str(tmp_path / "clf")
    finetune = ["finetune", "--from", "none", "--train", str(labelled), "--run-dir", clf, "--max-steps", "1"]
    result = invoke([*finetune, "--preset", "tiny", "--tokenizer", "byte", "--batch-size", "4", "--seq-len", "16"])
    assert result.exit_code == 0, result.output
    result = invoke(["evaluate", clf, "--tasks", "klm_choice", "--include-path", TASKS_DIR])
    assert result.exit_code == 2 and "no language-model head" in result.output
