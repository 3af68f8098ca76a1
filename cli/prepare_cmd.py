"""`klm prepare`: clean text, train a tokenizer, write token shards.

The options are the fields of `PrepareConfig` and `CleaningConfig`
(`klm.cli.options.options_from`): their defaults, choices, help and checks
are defined there, once. Both config modules import no TensorFlow, so
`klm prepare --help` stays light.
"""

import dataclasses

import click

from klm.cli.common import backend_option, load_config_file, user_errors
from klm.cli.options import cli_fields, given, options_from
from klm.config import coerce_value, field_spec, flag_of
from klm.data.prepared.config import PrepareConfig
from klm.data.text.cleaning_config import CleaningConfig


def config_keys():
    """`{key: (config class, field, inverted)}`: the names a `--config` file may use.

    Each option field's name, and each spelling of its flag without the
    dashes: `collapse_whitespace` and `keep_whitespace` (inverted) both set
    `CleaningConfig.collapse_whitespace`; `strict` sets `strict_utf8`.
    """
    keys = {"sources": (PrepareConfig, "sources", False)}
    for cls in (PrepareConfig, CleaningConfig):
        for name in cli_fields(cls):
            keys[name] = (cls, name, False)
            spellings = field_spec(cls, name).get("flag", flag_of(cls, name)).split("/")
            for position, spelling in enumerate(spellings):
                keys.setdefault(spelling.lstrip("-").replace("-", "_"), (cls, name, position == 1))
    return keys


def _file_settings(path):
    """The `--config` file's values by field: `({PrepareConfig field: value}, {CleaningConfig field: value})`."""
    from klm.errors import ConfigError

    keys = config_keys()
    values = load_config_file(path)
    unknown = sorted(set(values) - set(keys))
    if unknown:
        raise click.BadParameter(
            f"Expected option names of `klm prepare` in {path}. Received: unknown keys {unknown}",
            param_hint="--config",
        )
    prepare, cleaning = {}, {}
    for key, value in values.items():
        cls, name, inverted = keys[key]
        if inverted:
            field = {f.name: f for f in dataclasses.fields(cls)}[name]
            try:
                value = not coerce_value(cls, field, value)
            except ConfigError as e:
                raise click.BadParameter(f"{e} (in {path}, key {key})", param_hint="--config") from None
        (cleaning if cls is CleaningConfig else prepare)[name] = value
    return prepare, cleaning


def _build_config(ctx, sources, config_file, quiet, flags):
    """`PrepareConfig` from a `--config` file overlaid with the flags given on the command line.

    Only the cleaning options the user gives (here or in the file) override
    the source kind's cleaning defaults (`CleaningConfig.for_source_kind`).
    """
    from klm.errors import ConfigError

    fields, cleaning = _file_settings(config_file) if config_file else ({}, {})
    cleaning_names = set(cli_fields(CleaningConfig))
    for name, value in flags.items():
        if given(ctx, name):
            (cleaning if name in cleaning_names else fields)[name] = list(value) if isinstance(value, tuple) else value
    if sources:
        fields["sources"] = list(sources)
    if not fields.get("sources"):
        raise click.UsageError("Expected at least one SOURCE (a file, glob, folder or dataset name).", ctx=ctx)
    if not fields.get("out"):
        raise click.UsageError("Expected --out DIR, the output folder.", ctx=ctx)
    try:
        return PrepareConfig(**fields, cleaning=cleaning or None, verbose=not quiet)
    except ConfigError as e:
        raise click.BadParameter(str(e)) from None


@click.command("prepare", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("sources", nargs=-1)
@options_from(PrepareConfig, parts=(CleaningConfig,))
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="JSON or YAML file of option values, by option name (flags given here win).",
)
@click.option("--quiet", is_flag=True, default=False, help="No progress lines on stderr.")
@backend_option
@click.pass_context
@user_errors
def prepare(ctx, sources, config_file, quiet, backend, **flags):
    """Clean SOURCES, train a tokenizer and write token shards to --out.

    SOURCES are files (.txt .md .html .jsonl .csv .tsv, optionally .gz),
    globs, folders, a WikiText folder, or a dataset name (wikitext-2,
    wikitext-103; downloaded once).
    """
    from klm.data import prepare as prepare_corpus
    from klm.data.prepared.writer import format_summary

    config = _build_config(ctx, sources, config_file, quiet, flags)
    manifest = prepare_corpus(config)
    click.echo(format_summary(manifest))
