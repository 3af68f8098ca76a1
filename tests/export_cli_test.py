"""`klm export`'s command line: options from `ExportOptions`, bad flags exit 2 before anything is loaded."""

import dataclasses
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from klm.cli.export_cmd import export
from klm.cli.main import main
from klm.cli.options import cli_fields
from klm.config import field_spec
from klm.export.options import ExportOptions


def test_every_option_comes_from_the_config_and_has_help():
    params = {param.name: param for param in export.params if isinstance(param, click.Option)}
    for name in cli_fields(ExportOptions):
        default = {f.name: f.default for f in dataclasses.fields(ExportOptions)}[name]
        assert params[name].default is None and params[name].help, name
        if default not in (None, False) and "default_help" not in field_spec(ExportOptions, name):
            assert str(default) in params[name].help, name
    assert set(params) - set(cli_fields(ExportOptions)) == {"backend"}
    assert all(param.help for param in params.values())


@pytest.mark.parametrize(
    "args, message",
    [
        (["--version", "0"], "Expected a version >= 1"),
        (["--max-new-tokens", "0"], "--max-new-tokens=0"),
        (["--format", "onnx", "--portable"], "savedmodel only"),
        (["--format", "gguf", "--litert-sequence-length", "8"], "--litert-sequence-length applies"),
        (["--format", "litert", "--litert-sequence-length", "0"], "--litert-sequence-length=0"),
    ],
)
def test_bad_flags_exit_2_and_write_nothing(tmp_path, args, message):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["export", str(tmp_path / "run"), str(out), *args], catch_exceptions=False)
    assert result.exit_code == 2 and message in result.output and "Received" in result.output, result.output
    assert not out.exists()


def test_klm_export_help_imports_no_framework():
    code = (
        "import sys; from click.testing import CliRunner; from klm.cli.main import main; "
        "r = CliRunner().invoke(main, ['export', '--help']); assert r.exit_code == 0, r.output; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('keras', 'tensorflow', 'jax', 'torch')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
