"""`klm estimate`: parameters, FLOPs, tokens, memory and expected time of a pretraining run,
or of fine-tuning a pretrained checkpoint (`--from` / `--init-from`)."""

import json

import click

from klm.cli.common import user_errors
from klm.cli.train_cmd import build_config, user_flags
from klm.cli.train_cmd import finetune as _finetune_command
from klm.cli.train_cmd import pretrain as _pretrain_command


@click.command(
    help="Estimate a pretraining run before starting it: parameters, FLOPs per token, tokens per "
    "epoch, memory (parameters + gradients + optimizer state + activations) and the expected wall "
    "time on this machine, timed from a few real training steps. Takes the same flags as "
    "`klm pretrain`; writes nothing to --run-dir. With --from CKPT (as `klm finetune --from`) or --init-from "
    "CKPT (as `klm pretrain --init-from`): the checkpoint's total and trainable parameters (full, "
    "--freeze-backbone, --lora-rank), memory per precision and, with --measure-steps, the step time; "
    "the model is built from the checkpoint's config without reading its weights."
)
@click.option(
    "--measure-steps",
    type=int,
    default=None,
    help="Training steps to time after the warm-up (0: no measured run, no time estimate). Default 5; "
    "0 with --from/--init-from (timing builds the checkpoint's model with random weights).",
)
@click.option(
    "--num-classes",
    type=int,
    default=None,
    help="With --from: classes of the classifier head (its size only). Default 2.",
)
@click.option(
    "--measure-warmup",
    type=int,
    default=2,
    show_default=True,
    help="Training steps run before timing (compilation happens here).",
)
@click.option("--json", "as_json", is_flag=True, default=False, help="Print the estimate as JSON.")
@click.pass_context
@user_errors
def estimate(ctx, config_file, measure_steps, measure_warmup, num_classes, as_json, **flags):
    from klm.config import PretrainConfig
    from klm.estimate import estimate as run
    from klm.estimate import format_report

    given = user_flags(ctx, flags)
    if given.get("from_run") is not None or given.get("init_from") is not None:
        report = _estimate_checkpoint(config_file, given, measure_steps, measure_warmup, num_classes)
    else:
        needs_from = [name for name in _FINETUNE_ONLY if name in given] + (["num_classes"] if num_classes else [])
        if needs_from:
            flag = "--" + needs_from[0].replace("_", "-")
            raise click.UsageError(f"{flag} needs --from CHECKPOINT. Received: {flag} without --from")
        config = build_config(PretrainConfig, config_file, given)
        report = run(config, measure_steps=5 if measure_steps is None else measure_steps, warmup_steps=measure_warmup)
    click.echo(json.dumps(report, indent=2) if as_json else format_report(report))
    return report


# The same data, model and training flags as `klm pretrain`, so a pretrain
# command line becomes an estimate by changing the command name.
estimate.params[:0] = list(_pretrain_command.params)

# `klm finetune`'s own names for the checkpoint and the head: `--from CKPT`
# estimates what `klm finetune --from CKPT` trains (klm's classifier head on
# the checkpoint's backbone), `--init-from CKPT` what `klm pretrain
# --init-from CKPT` trains (the causal LM); both with --lora-rank.
_FINETUNE_ONLY = ("from_run", "freeze_backbone", "pooling", "head_dropout")
estimate.params[len(_pretrain_command.params) : len(_pretrain_command.params)] = [
    param for param in _finetune_command.params if param.name in _FINETUNE_ONLY
]
# Flags of `klm pretrain` that describe its data or a model trained from
# scratch: a checkpoint estimate reads no data and has its own model.
_NOT_WITH_CHECKPOINT = (
    "preset",
    "batching",
    "eval_batch_size",
    "valid_fraction",
    "tokenizer",
    "vocab_size",
    "min_freq",
    "lowercase",
)


def _estimate_checkpoint(config_file, given, measure_steps, measure_warmup, num_classes):
    from klm.config import FinetuneConfig, PretrainConfig
    from klm.pretrained.estimate import estimate_checkpoint

    if given.get("from_run") is not None and given.get("init_from") is not None:
        raise click.UsageError(
            "--from (estimate `klm finetune --from`) and --init-from (estimate `klm pretrain "
            "--init-from`) exclude each other. Received: both"
        )
    for name in _NOT_WITH_CHECKPOINT + (("data",) if "from_run" in given else ()):
        if name in given:
            flag = "--from" if "from_run" in given else "--init-from"
            raise click.UsageError(
                f"--{name.replace('_', '-')} does not apply to a checkpoint estimate ({flag}): the model and "
                f"tokenizer are the checkpoint's and no data is read. Received: --{name.replace('_', '-')}"
            )
    if "from_run" in given:
        if given["from_run"] == "none":
            raise click.UsageError(
                "Expected --from CHECKPOINT (for --from none, estimate a pretraining run with "
                "--data and --preset). Received: --from none"
            )
        values = {k: v for k, v in given.items() if k in FinetuneConfig.__dataclass_fields__}
        config = build_config(FinetuneConfig, config_file, dict(values, train="(not read by klm estimate)"))
    else:
        if num_classes is not None:
            raise click.UsageError(
                "--num-classes needs --from CHECKPOINT (--init-from estimates a causal LM). "
                "Received: --num-classes with --init-from"
            )
        for name in _FINETUNE_ONLY[1:]:
            if name in given:
                raise click.UsageError(
                    f"--{name.replace('_', '-')} applies to --from (fine-tuning a classifier). "
                    f"Received: --{name.replace('_', '-')} with --init-from"
                )
        config = build_config(
            PretrainConfig, config_file, dict(given, data=given.get("data") or "(not read by klm estimate)")
        )
    return estimate_checkpoint(
        config,
        num_classes=2 if num_classes is None else num_classes,
        measure_steps=0 if measure_steps is None else measure_steps,
        warmup_steps=measure_warmup,
    )
