"""`klm estimate`'s command line: options from `PretrainConfig`, `FinetuneConfig` and `EstimateConfig`."""

import dataclasses
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from klm.cli.estimate_cmd import estimate
from klm.cli.main import main
from klm.cli.options import cli_fields
from klm.cli.train_cmd import pretrain
from klm.config import FinetuneConfig, PretrainConfig, field_spec
from klm.estimate_config import FINETUNE_OPTIONS, EstimateConfig


def test_every_option_comes_from_the_config_and_has_help():
    params = {param.name: param for param in estimate.params if isinstance(param, click.Option)}
    own = set()
    for cls, names in (
        (PretrainConfig, cli_fields(PretrainConfig)),
        (FinetuneConfig, FINETUNE_OPTIONS),
        (EstimateConfig, cli_fields(EstimateConfig)),
    ):
        for name in names:
            default = {f.name: f.default for f in dataclasses.fields(cls)}[name]
            assert params[name].default is None and params[name].help, name
            if default not in (None, False, "") and "default_help" not in field_spec(cls, name):
                assert str(default) in params[name].help, name
            own.add(name)
    assert set(params) - own == {"backend", "config_file"}
    assert all(param.help for param in params.values())
    # Every `klm pretrain` flag is a `klm estimate` flag, spelled the same.
    pretrain_flags = {opt for param in pretrain.params for opt in param.opts}
    assert pretrain_flags <= {opt for param in estimate.params for opt in param.opts}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--measure-steps", "-1"], "--measure-steps=-1"),
        (["--measure-warmup", "0"], "--measure-warmup=0"),
        (["--freeze-backbone", "--data", "x.txt"], "--freeze-backbone needs --from"),
        (["--from", "none"], "Received: --from none"),
        (["--init-from", "c", "--pooling", "mean"], "--pooling with --init-from"),
    ],
)
def test_bad_flags_exit_2_naming_the_flag(args, message):
    result = CliRunner().invoke(main, ["estimate", *args], catch_exceptions=False)
    assert result.exit_code == 2 and message in result.output and "Received" in result.output, result.output


def test_klm_estimate_help_imports_no_framework():
    code = (
        "import sys; from click.testing import CliRunner; from klm.cli.main import main; "
        "r = CliRunner().invoke(main, ['estimate', '--help']); assert r.exit_code == 0, r.output; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('keras', 'tensorflow', 'jax', 'torch')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
