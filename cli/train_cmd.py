"""`klm pretrain` and `klm finetune`: flags -> config dataclass -> `klm.train`.

The options are the config dataclasses' fields (`klm.cli.options.options_from`):
their defaults, choices and help are defined there, once.
"""

import click

from klm.cli.common import backend_option, load_config_file, user_errors
from klm.cli.options import given_values, options_from
from klm.config import FinetuneConfig, PretrainConfig
from klm.sft.config import SftConfig
from klm.tasks import finetune_task, finetune_tasks

config_option = click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="JSON or YAML file of options; flags given on the command line override it.",
)


def build_config(cls, config_file, flags):
    """`cls(**values)` from a --config file overlaid with `flags` (the flags the user gave); clean errors for both."""
    from klm.errors import ConfigError

    values = load_config_file(config_file) if config_file else {}
    values.pop("task", None)  # `klm finetune --task` picks the config class
    values.update(flags)
    unknown = set(values) - {f for f in cls.__dataclass_fields__}
    if unknown:
        raise click.BadParameter(f"Unknown option(s) in {config_file}: {sorted(unknown)}", param_hint="--config")
    try:
        return cls(**values)
    except ConfigError as e:
        raise click.UsageError(str(e)) from None


def user_flags(ctx, flags):
    """The flags the user gave (`given_values`), and `--backend` always: its callback resolves and applies it."""
    return dict(given_values(ctx, flags), backend=flags["backend"])


def _done(config, summary):
    click.echo(f"run folder: {config.run_dir}  (summary.json, best.keras, curves.png)")
    return summary


@click.command(
    help="Pretrain a causal language model. Defaults reproduce the reference (preset seed, word tokenizer, "
    "SGD lr 5, clip 0.5, x0.95/epoch, batch 20 x 35)."
)
@options_from(PretrainConfig)
@backend_option
@config_option
@click.pass_context
@user_errors
def pretrain(ctx, config_file, **flags):
    from klm.train import pretrain as run

    config = build_config(PretrainConfig, config_file, user_flags(ctx, flags))
    return _done(config, run(config))


@click.command(
    help="Fine-tune a classifier head on a pretrained run (or train one from scratch with --from none); "
    "with --task sft, fine-tune a language model on prompt -> response data."
)
@click.option(
    "--task",
    type=click.Choice([task.cli_name for task in finetune_tasks()]),
    default=None,
    help="classify (default): a classifier head on labelled text. sft: supervised fine-tuning for generation "
    "on prompt -> response data (JSONL prompt/response, Alpaca or chat messages; TSV/CSV).",
)
@options_from(FinetuneConfig, variant=("SFT", SftConfig))
@backend_option
@config_option
@click.pass_context
@user_errors
def finetune(ctx, config_file, task, **flags):
    from klm.config import flag_of

    flags = user_flags(ctx, flags)
    if task is None and config_file:
        # A config file names its mode as --task does ("sft"), or as a run's config.json records it.
        given = load_config_file(config_file)
        task = given.get("finetune_task") or given.get("task")
    names = [t.cli_name for t in finetune_tasks()]
    mode = finetune_task(task if task in names else "classify")
    cls = mode.config_class()
    wrong = [name for name in flags if name not in cls.__dataclass_fields__]
    if wrong:
        owner = next(t for t in finetune_tasks() if wrong[0] in t.config_class().__dataclass_fields__)
        flag = flag_of(owner.config_class(), wrong[0])
        raise click.UsageError(
            f"{flag} applies to --task {owner.cli_name} only. Received: --task={mode.cli_name} with {flag}"
        )
    config = build_config(cls, config_file, flags)
    return _done(config, mode.recipe()(config))
