"""`klm serve`'s command line: options from `ServeConfig`, bad flags and runs as exit code 2, lazy imports."""

import dataclasses
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from klm.cli.main import main
from klm.cli.options import cli_fields
from klm.cli.serve_cmd import serve
from klm.config import field_spec
from klm.serve.config import ServeConfig


def invoke(args):
    return CliRunner().invoke(main, ["serve", *args], catch_exceptions=False)


def test_every_option_comes_from_the_config_and_has_help():
    params = {param.name: param for param in serve.params if isinstance(param, click.Option)}
    for name in cli_fields(ServeConfig):
        default = {f.name: f.default for f in dataclasses.fields(ServeConfig)}[name]
        assert params[name].default is None and params[name].help
        if default is not None and "default_help" not in field_spec(ServeConfig, name):
            assert str(default) in params[name].help, name
    assert all(param.help for param in params.values())


@pytest.mark.parametrize(
    "args, message",
    [
        (["--port", "70000"], "--port"),
        (["--max-batch-size", "0"], "--max-batch-size"),
        (["--api-key", " "], "--api-key"),
        (["--default-max-tokens", "-3"], "--default-max-tokens"),
    ],
)
def test_bad_flags_exit_2_naming_the_flag(tmp_path, args, message):
    result = invoke([str(tmp_path), *args])
    assert result.exit_code == 2 and message in result.output and "Received" in result.output


def test_a_run_that_is_not_a_language_model_or_missing_exits_2(tmp_path):
    from klm.export.testing import make_run

    make_run(tmp_path / "classifier", task="classifier")
    result = invoke([str(tmp_path / "classifier"), "--port", "0"])
    assert result.exit_code == 2 and "Expected a language model to serve" in result.output
    missing = invoke([str(tmp_path / "nothing-here"), "--port", "0"])
    assert missing.exit_code == 2 and "nothing-here" in missing.output


def test_klm_serve_help_imports_neither_keras_nor_fastapi():
    code = (
        "import sys; from click.testing import CliRunner; from klm.cli.main import main; "
        "r = CliRunner().invoke(main, ['serve', '--help']); assert r.exit_code == 0, r.output; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('keras', 'fastapi', 'uvicorn', 'tensorflow')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
