"""`klm estimate`: parameters, FLOPs, tokens, memory and expected time of a pretraining run."""

import json

import click

from klm.cli.common import user_errors
from klm.cli.train_cmd import build_config
from klm.cli.train_cmd import pretrain as _pretrain_command


@click.command(help="Estimate a pretraining run before starting it: parameters, FLOPs per token, tokens per "
               "epoch, memory (parameters + gradients + optimizer state + activations) and the expected wall "
               "time on this machine, timed from a few real training steps. Takes the same flags as "
               "`klm pretrain`; writes nothing to --run-dir.")
@click.option("--measure-steps", type=int, default=5, show_default=True,
              help="Training steps to time after the warm-up (0: no measured run, no time estimate).")
@click.option("--measure-warmup", type=int, default=2, show_default=True,
              help="Training steps run before timing (compilation happens here).")
@click.option("--json", "as_json", is_flag=True, default=False, help="Print the estimate as JSON.")
@user_errors
def estimate(config_file, measure_steps, measure_warmup, as_json, **flags):
    from klm.config import PretrainConfig
    from klm.estimate import estimate as run
    from klm.estimate import format_report

    config = build_config(PretrainConfig, config_file, flags)
    report = run(config, measure_steps=measure_steps, warmup_steps=measure_warmup)
    click.echo(json.dumps(report, indent=2) if as_json else format_report(report))
    return report


# The same data, model and training flags as `klm pretrain`, so a pretrain
# command line becomes an estimate by changing the command name.
estimate.params[:0] = list(_pretrain_command.params)
