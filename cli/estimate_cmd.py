"""`klm estimate`: parameters, FLOPs, tokens, memory and expected time of a pretraining run,
or of fine-tuning a pretrained checkpoint (`--from` / `--init-from`).

Its options come from config dataclasses (`klm.cli.options.options_from`):
`klm pretrain`'s (`PretrainConfig`), `klm finetune`'s `--from`,
`--freeze-backbone`, `--pooling` and `--head-dropout` (`FinetuneConfig`), and
its own (`klm.estimate_config.EstimateConfig`, which also checks which of
them go together).
"""

import json

import click

from klm.cli.common import backend_option, user_errors
from klm.cli.options import cli_fields, options_from
from klm.cli.train_cmd import build_config, config_option, user_flags
from klm.config import FinetuneConfig, PretrainConfig
from klm.estimate_config import FINETUNE_OPTIONS, EstimateConfig


@click.command(
    help="Estimate a pretraining run before starting it: parameters, FLOPs per token, tokens per "
    "epoch, memory (parameters + gradients + optimizer state + activations) and the expected wall "
    "time on this machine, timed from a few real training steps. Takes the same flags as "
    "`klm pretrain`; writes nothing to --run-dir. With --from CKPT (as `klm finetune --from`) or --init-from "
    "CKPT (as `klm pretrain --init-from`): the checkpoint's total and trainable parameters (full, "
    "--freeze-backbone, --lora-rank), memory per precision and, with --measure-steps, the step time; "
    "the model is built from the checkpoint's config without reading its weights."
)
# The same data, model and training flags as `klm pretrain`, so a pretrain
# command line becomes an estimate by changing the command name.
@options_from(PretrainConfig)
@backend_option
@config_option
@options_from(FinetuneConfig, exclude=[name for name in cli_fields(FinetuneConfig) if name not in FINETUNE_OPTIONS])
@options_from(EstimateConfig)
@click.pass_context
@user_errors
def estimate(ctx, config_file, **flags):
    from klm.errors import ConfigError

    training = user_flags(ctx, flags)
    own = {name: training.pop(name) for name in cli_fields(EstimateConfig) if name in training}
    try:
        config = EstimateConfig(training_options=training, **own)
    except ConfigError as e:
        raise click.BadParameter(str(e)) from None
    training_config = build_config(config.training_class, config_file, config.training_values())
    if config.checkpoint:
        from klm.estimate import format_report
        from klm.pretrained.checkpoint_estimate import estimate_checkpoint

        report = estimate_checkpoint(
            training_config,
            num_classes=config.classes,
            measure_steps=config.steps_to_measure,
            warmup_steps=config.measure_warmup,
        )
    else:
        from klm.estimate import estimate as run
        from klm.estimate import format_report

        report = run(training_config, measure_steps=config.steps_to_measure, warmup_steps=config.measure_warmup)
    click.echo(json.dumps(report, indent=2) if config.json else format_report(report))
    return report
