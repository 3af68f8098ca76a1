"""`klm prepare`: clean text, train a tokenizer, write token shards."""

import click

from klm.cli.common import backend_option, load_config_file, user_errors
from klm.cli.options import given

# Kept here rather than imported from klm.data, so that `klm prepare --help`
# does not import TensorFlow; tests/cli_test.py checks these lists and the
# option defaults below against `PrepareConfig` and `CleaningConfig`.
TOKENIZERS = ["word", "wordpiece", "sentencepiece", "byte"]
FORMATS = ["auto", "text", "html", "jsonl", "csv", "tsv", "wikitext"]

# Cleaning flag -> (CleaningConfig field, whether the flag inverts it).
CLEANING_FLAGS = {
    "strict": ("strict_utf8", False),
    "strip_html": ("strip_html", False),
    "unicode_normalization": ("unicode_normalization", False),
    "keep_control_characters": ("remove_control_characters", True),
    "scrub_privacy": ("scrub_privacy", False),
    "lowercase": ("lowercase", False),
    "remove_stop_words": ("remove_stop_words", False),
    "keep_whitespace": ("collapse_whitespace", True),
    "min_length": ("min_length", False),
    "dedup": ("deduplicate", False),
}
# Flag -> PrepareConfig field, for the other flags.
CONFIG_FLAGS = {
    "sources": "sources",
    "out": "out",
    "tokenizer": "tokenizer",
    "vocab_size": "vocab_size",
    "min_freq": "min_freq",
    "sentencepiece_type": "sentencepiece_type",
    "tokenizer_from": "tokenizer_from",
    "valid": "valid",
    "test": "test",
    "valid_fraction": "valid_fraction",
    "text_field": "text_field",
    "format": "format",
    "eos": "eos_between_documents",
    "seed": "seed",
    "shard_tokens": "shard_tokens",
    "overwrite": "overwrite",
    "datasets_url": "datasets_url",
    "workers": "workers",
}


def _build_config(ctx, values):
    """Merges `--config FILE` with the flags given on the command line."""
    from klm.data import PrepareConfig
    from klm.errors import ConfigError

    file_values = load_config_file(values["config"]) if values.get("config") else {}
    unknown = sorted(set(file_values) - set(CONFIG_FLAGS) - set(CLEANING_FLAGS))
    if unknown:
        raise click.BadParameter(
            f"Expected option names of `klm prepare` in {values['config']}. Received: unknown keys {unknown}",
            param_hint="--config",
        )
    settings = {}
    for name in list(CONFIG_FLAGS) + list(CLEANING_FLAGS):
        if given(ctx, name) or name not in file_values:
            settings[name] = values[name]
        else:
            settings[name] = file_values[name]
    # Only cleaning flags the user set override the source kind's defaults.
    cleaning = {}
    for flag, (field, inverted) in CLEANING_FLAGS.items():
        if given(ctx, flag) or flag in file_values:
            cleaning[field] = (not settings[flag]) if inverted else settings[flag]
    fields = {field: settings[name] for name, field in CONFIG_FLAGS.items()}
    for name in ("sources", "valid", "test"):
        if isinstance(fields[name], (tuple, list)):
            fields[name] = list(fields[name]) or None
        elif isinstance(fields[name], str):
            fields[name] = [fields[name]]
    if not fields["sources"]:
        raise click.UsageError("Expected at least one SOURCE (a file, glob, folder or dataset name).", ctx=ctx)
    if not fields["out"]:
        raise click.UsageError("Expected --out DIR, the output folder.", ctx=ctx)
    try:
        return PrepareConfig(**fields, cleaning=cleaning or None, verbose=not values.get("quiet"))
    except ConfigError as e:
        raise click.BadParameter(str(e)) from None


@click.command("prepare", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("sources", nargs=-1)
@click.option(
    "--out",
    type=click.Path(),
    default=None,
    help="Output folder: new or empty (or, with --overwrite, one written by klm prepare); never a source folder.",
)
@click.option(
    "--tokenizer", type=click.Choice(TOKENIZERS), default="word", show_default=True, help="Tokenizer kind to train."
)
@click.option(
    "--vocab-size",
    type=click.IntRange(min=1),
    default=None,
    help="Vocabulary size, special tokens included: an upper bound (a smaller corpus gets the largest vocabulary "
    "it supports, with a note). Default: none for word, 8000 for subword tokenizers.",
)
@click.option(
    "--min-freq", type=click.IntRange(min=1), default=1, show_default=True, help="Word tokenizer: minimum word count."
)
@click.option(
    "--sentencepiece-type",
    type=click.Choice(["unigram", "bpe"]),
    default="unigram",
    show_default=True,
    help="SentencePiece model type.",
)
@click.option(
    "--tokenizer-from",
    type=click.Path(),
    default=None,
    help="Reuse the tokenizer in this folder instead of training one.",
)
@click.option(
    "--valid", multiple=True, help="Validation file or glob (repeatable). Default: the WikiText folder's valid file."
)
@click.option("--test", multiple=True, help="Test file or glob (repeatable).")
@click.option(
    "--valid-fraction",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=None,
    help="Without --valid: send this fraction of training documents to the valid split (seeded).",
)
@click.option("--text-field", default="text", show_default=True, help="JSONL field or CSV/TSV column holding the text.")
@click.option(
    "--format",
    type=click.Choice(FORMATS),
    default="auto",
    show_default=True,
    help="Input format of every file (auto: by extension).",
)
@click.option(
    "--eos/--no-eos",
    default=None,
    help="End-of-text token between documents. Default: off for WikiText (as the seed), on otherwise.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the train/valid split.")
@click.option(
    "--shard-tokens", type=click.IntRange(min=1), default=1 << 24, show_default=True, help="Tokens per shard file."
)
@click.option(
    "--overwrite",
    is_flag=True,
    default=False,
    help=(
        "Replace an --out folder written by klm prepare. A folder holding any other file, or a source, "
        "is never replaced."
    ),
)
@click.option(
    "--datasets-url",
    default=None,
    help="Base URL for named datasets (default: $KLM_DATASETS_URL, then the official URLs).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Processes that clean the text, and tokenize it for --tokenizer byte (1: all in this process; the other "
    "tokenizers use threads). The output is the same for any number. Default: the number of usable CPUs.",
)
@click.option(
    "--strict",
    is_flag=True,
    default=False,
    help="Fail on invalid UTF-8 (default: replace and count). Binary files always fail.",
)
@click.option(
    "--strip-html", is_flag=True, default=False, help="Strip HTML tags in all text (.html files are always stripped)."
)
@click.option(
    "--unicode-normalization",
    type=click.Choice(["NFKC", "NFC", "NFKD", "NFD", "none"], case_sensitive=False),
    default="NFKC",
    show_default=True,
    help="Unicode normalization (WikiText default: none).",
)
@click.option("--keep-control-characters", is_flag=True, default=False, help="Do not remove control characters.")
@click.option(
    "--scrub-privacy",
    is_flag=True,
    default=False,
    help="Replace e-mails, URLs, IPs, phone and card numbers, API keys/tokens/passwords with "
    "<email> <url> <ip> <phone> <card> <secret> (counted per kind; heuristics, see klm.data.text.privacy).",
)
@click.option("--lowercase", is_flag=True, default=False, help="Lower-case all text.")
@click.option(
    "--remove-stop-words", is_flag=True, default=False, help="Remove English stop words (klm.data.text.stop_words)."
)
@click.option("--keep-whitespace", is_flag=True, default=False, help="Do not collapse whitespace runs into one space.")
@click.option(
    "--min-length",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="Drop documents shorter than this (characters).",
)
@click.option("--dedup", is_flag=True, default=False, help="Drop exact duplicate documents.")
@click.option(
    "--config", type=click.Path(), default=None, help="JSON or YAML file of option values (flags given here win)."
)
@click.option("--quiet", is_flag=True, default=False, help="No progress lines on stderr.")
@backend_option
@click.pass_context
@user_errors
def prepare(ctx, **values):
    """Clean SOURCES, train a tokenizer and write token shards to --out.

    SOURCES are files (.txt .md .html .jsonl .csv .tsv, optionally .gz),
    globs, folders, a WikiText folder, or a dataset name (wikitext-2,
    wikitext-103; downloaded once).
    """
    from klm.data import prepare as prepare_corpus
    from klm.data.prepared.writer import format_summary

    config = _build_config(ctx, values)
    manifest = prepare_corpus(config)
    click.echo(format_summary(manifest))
