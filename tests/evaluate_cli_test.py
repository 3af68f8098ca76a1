"""`klm evaluate`'s command line: options from `EvaluateConfig` and `HarnessConfig`, bad flags exit 2, lazy imports."""

import dataclasses
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from klm.cli.eval_cmd import evaluate
from klm.cli.main import main
from klm.cli.options import cli_fields
from klm.config import field_spec
from klm.evaluation.config import EvaluateConfig
from klm.evaluation.tasks import HarnessConfig


def invoke(args):
    return CliRunner().invoke(main, ["evaluate", *args], catch_exceptions=False)


def test_every_option_comes_from_the_config_and_has_help():
    params = {param.name: param for param in evaluate.params if isinstance(param, click.Option)}
    own = set()
    for cls in (EvaluateConfig, HarnessConfig):
        for name in cli_fields(cls):
            default = {f.name: f.default for f in dataclasses.fields(cls)}[name]
            assert params[name].default is None and params[name].help, name
            if default not in (None, False) and "default_help" not in field_spec(cls, name):
                assert str(default) in params[name].help, name
            own.add(name)
    # Besides the configs' options, only the ones shared with other commands.
    assert set(params) - own == {"precision", "backend"}
    assert all(param.help for param in params.values())


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data", "d.txt", "--batch-size", "0"], "--batch-size=0"),
        (["--data", "d.txt", "--seq-len", "1"], "Expected --seq-len >= 2"),
        (["--data", "d.txt", "--max-new-tokens", "0"], "--max-new-tokens=0"),
        (["--data", "d.txt", "--output", "o.json", "--apply-chat-template"], "--apply-chat-template, --output go"),
        (["--data", "d.txt", "--tasks", "a"], "one of them"),
        (["--tasks", "a", "--limit", "0"], "Expected --limit > 0"),
        (["--tasks", "a", "--num-fewshot", "-2"], "--num-fewshot=-2"),
    ],
)
def test_bad_flags_exit_2_naming_the_flag(tmp_path, args, message):
    result = invoke([str(tmp_path), *args])
    assert result.exit_code == 2 and message in result.output and "Received" in result.output, result.output


def test_klm_evaluate_help_imports_no_framework_and_no_lm_eval():
    code = (
        "import sys; from click.testing import CliRunner; from klm.cli.main import main; "
        "r = CliRunner().invoke(main, ['evaluate', '--help']); assert r.exit_code == 0, r.output; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('keras', 'tensorflow', 'jax', 'torch', 'lm_eval')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
