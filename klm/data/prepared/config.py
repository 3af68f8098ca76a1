"""`PrepareConfig`: everything `klm prepare` needs, validated.

Its fields declared with `klm.config.option(...)` are `klm prepare`'s options
(`klm.cli.options.options_from`), with `CleaningConfig`'s. This module
imports no TensorFlow, so that `klm prepare --help` stays light.
"""

import dataclasses
import os

from klm.config import SENTENCEPIECE_MODEL_TYPES, TOKENIZERS, check_fields, option
from klm.data.text.cleaning_config import CleaningConfig
from klm.data.text.sources import FORMATS
from klm.data.text.workers import usable_cpus
from klm.errors import ConfigError

DEFAULT_SHARD_TOKENS = 1 << 24


def _as_paths(value, flag):
    if value is None:
        return None
    if isinstance(value, (str, os.PathLike)):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, (str, os.PathLike)) for v in value):
        raise ConfigError(f"Expected {flag} to be a path or a list of paths. Received: {flag}={value!r}")
    return [os.fspath(v) for v in value] or None


@dataclasses.dataclass
class PrepareConfig:
    """The settings of `klm.data.prepare` (the `klm prepare` command).

    Each field names its flag.

    Args:
        sources: `SOURCES...`: files, globs, folders, a WikiText folder, or
            a dataset name (`wikitext-2`, `wikitext-103`).
        out: `--out`. The output folder: new or empty, or with `overwrite`
            a folder written by `prepare` that holds nothing else. It must
            not be, hold or lie inside a source folder.
        tokenizer: `--tokenizer`: `"word"` (default), `"wordpiece"`,
            `"sentencepiece"` (unigram), `"sentencepiece-bpe"` or `"byte"`:
            the names of `klm pretrain --tokenizer` (`klm.config.TOKENIZERS`).
        vocab_size: `--vocab-size`. See `klm.data.train_tokenizer`.
        min_freq: `--min-freq` (word tokenizer only).
        sentencepiece_type: no flag: derived from `tokenizer` (`"bpe"` for
            `"sentencepiece-bpe"`, else `"unigram"`), and kept in the
            manifest's `config` as before. A caller that still passes
            `tokenizer="sentencepiece", sentencepiece_type="bpe"` gets
            `tokenizer="sentencepiece-bpe"`.
        tokenizer_from: `--tokenizer-from`. A tokenizer folder to reuse
            instead of training one (e.g. a prepared folder's `tokenizer/`).
        valid: `--valid`. Validation files (paths or globs).
        test: `--test`. Test files.
        valid_fraction: `--valid-fraction`. Without `valid`, send this
            fraction of the training documents to the valid split (seeded).
        text_field: `--text-field`. The JSONL field or CSV/TSV column.
        format: `--format`. `"auto"` or a format for every file (see
            `klm.data.text.sources`).
        cleaning: a `CleaningConfig`, or a dict of cleaning flags to apply
            over the default for the source kind
            (`CleaningConfig.for_source_kind`), or `None` for that default.
        eos_between_documents: `--eos/--no-eos`. Put the end-of-text id
            after every document. `None` (default) means: off for WikiText
            sources (the seed concatenates WikiText lines with no extra
            token), on for everything else.
        seed: `--seed`. For the valid split.
        shard_tokens: `--shard-tokens`. Tokens per shard file.
        overwrite: `--overwrite`. Replace an `out` folder written by
            `prepare` (see `klm.data.prepared.manifest.prepared_folder_problem`);
            a folder with any other file is never replaced.
        datasets_url: `--datasets-url`. Base URL for named datasets (see
            `klm.data.downloads`).
        workers: `--workers`. Processes that clean the text (and tokenize
            it, for the byte tokenizer; the others tokenize in `tf.data`
            threads), see `klm.data.text.clean_and_tokenize`; `None`
            (default) means one per usable CPU (`os.sched_getaffinity`), `1`
            works in this process. The output is the same, byte for byte, for
            any number, so it is left out of the manifest's `config`.
        verbose: print progress to stderr.

    Example:

    >>> config = PrepareConfig(sources=["corpus.txt"], out="prepared", vocab_size=8000,
    ...                        tokenizer="sentencepiece-bpe", valid_fraction=0.05)
    >>> config.sentencepiece_type
    'bpe'
    """

    sources: list
    out: str = option(
        None, "Output folder: new or empty (or, with --overwrite, one written by klm prepare); never a source folder."
    )
    tokenizer: str = option("word", "Tokenizer kind to train.", choices=TOKENIZERS)
    vocab_size: int | None = option(
        None,
        "Vocabulary size, special tokens included: an upper bound (a smaller corpus gets the largest vocabulary "
        "it supports, with a note).",
        check="positive",
        default_help="none for word, 8000 for subword tokenizers",
    )
    min_freq: int = option(1, "Word tokenizer: minimum word count.", check="positive")
    sentencepiece_type: str = "unigram"
    tokenizer_from: str | None = option(None, "Reuse the tokenizer in this folder instead of training one.")
    valid: list | None = option(
        None, "Validation file or glob (repeatable).", default_help="the WikiText folder's valid file"
    )
    test: list | None = option(None, "Test file or glob (repeatable).")
    valid_fraction: float | None = option(
        None,
        "Without --valid: send this fraction of training documents to the valid split (seeded).",
        check="(0, 1)",
    )
    text_field: str = option("text", "JSONL field or CSV/TSV column holding the text.")
    format: str = option("auto", "Input format of every file (auto: by extension).", choices=FORMATS)
    cleaning: CleaningConfig | dict | None = None
    eos_between_documents: bool | None = option(
        None,
        "End-of-text token between documents.",
        flag="--eos/--no-eos",
        default_help="off for WikiText (as the seed), on otherwise",
    )
    seed: int = option(0, "Seed of the train/valid split.")
    shard_tokens: int = option(DEFAULT_SHARD_TOKENS, "Tokens per shard file.", check="positive")
    overwrite: bool = option(
        False,
        "Replace an --out folder written by klm prepare. A folder holding any other file, or a source, "
        "is never replaced.",
    )
    datasets_url: str | None = option(
        None,
        "Base URL for named datasets.",
        default_help="$KLM_DATASETS_URL, then the official URLs",
    )
    workers: int | None = option(
        None,
        "Processes that clean the text, and tokenize it for --tokenizer byte (1: all in this process; the other "
        "tokenizers use threads). The output is the same for any number.",
        check="positive",
        default_help="the number of usable CPUs",
    )
    verbose: bool = True

    @property
    def tokenizer_kind(self):
        """The kind `klm.data.train_tokenizer` trains: `"sentencepiece"` for both SentencePiece model types."""
        return "sentencepiece" if self.tokenizer == "sentencepiece-bpe" else self.tokenizer

    def __post_init__(self):
        self.sources = _as_paths(self.sources, "SOURCES")
        if not self.sources:
            raise ConfigError("Expected at least one SOURCE (file, glob, folder or dataset name). Received: none")
        if not isinstance(self.out, (str, os.PathLike)) or not os.fspath(self.out):
            raise ConfigError(f"Expected --out to name an output folder. Received: --out={self.out!r}")
        self.out = os.fspath(self.out)
        if self.tokenizer_from is not None and isinstance(self.tokenizer_from, os.PathLike):
            self.tokenizer_from = os.fspath(self.tokenizer_from)
        self.valid = _as_paths(self.valid, "--valid")
        self.test = _as_paths(self.test, "--test")
        # Types (a --config file's strings converted), choices and ranges: from the `option(...)` declarations.
        check_fields(self)
        if self.sentencepiece_type not in SENTENCEPIECE_MODEL_TYPES:
            raise ConfigError(
                f"Expected sentencepiece_type to be one of {', '.join(SENTENCEPIECE_MODEL_TYPES)}. "
                f"Received: sentencepiece_type={self.sentencepiece_type!r}"
            )
        # One name per tokenizer, as `klm pretrain --tokenizer` spells it; `sentencepiece_type` follows it.
        if self.tokenizer == "sentencepiece" and self.sentencepiece_type == "bpe":
            self.tokenizer = "sentencepiece-bpe"
        if self.tokenizer.startswith("sentencepiece"):
            self.sentencepiece_type = "bpe" if self.tokenizer == "sentencepiece-bpe" else "unigram"
        if self.tokenizer == "byte" and self.vocab_size is not None:
            raise ConfigError(
                "Expected no --vocab-size with --tokenizer byte (its 258 ids are fixed). "
                f"Received: --vocab-size={self.vocab_size}"
            )
        if self.tokenizer != "word" and self.min_freq != 1:
            raise ConfigError(
                "Expected --min-freq only with --tokenizer word. "
                f"Received: --tokenizer={self.tokenizer}, --min-freq={self.min_freq}"
            )
        if self.valid_fraction is not None and self.valid:
            raise ConfigError(
                f"Expected either --valid or --valid-fraction, not both. Received: --valid={self.valid}, "
                f"--valid-fraction={self.valid_fraction}"
            )
        if not self.text_field:
            raise ConfigError(
                f"Expected --text-field to be a field or column name. Received: --text-field={self.text_field!r}"
            )
        if isinstance(self.cleaning, dict):
            fields = {f.name for f in dataclasses.fields(CleaningConfig)}
            unknown = sorted(set(self.cleaning) - fields)
            if unknown:
                raise ConfigError(f"Expected cleaning options among {sorted(fields)}. Received: {unknown}")
            # Validates the values now, so that a bad flag fails before any work.
            CleaningConfig(**self.cleaning)
        elif self.cleaning is not None and not isinstance(self.cleaning, CleaningConfig):
            raise ConfigError(
                f"Expected cleaning to be a CleaningConfig or a dict. Received: {type(self.cleaning).__name__}"
            )

    def resolved_workers(self):
        """`workers`, or the number of usable CPUs when it is `None`."""
        return self.workers if self.workers is not None else usable_cpus()

    def resolve_cleaning(self, source_kind):
        """The `CleaningConfig` to use for sources of `source_kind`."""
        if isinstance(self.cleaning, CleaningConfig):
            return self.cleaning
        return CleaningConfig.for_source_kind(source_kind, **(self.cleaning or {}))

    def to_dict(self):
        """The settings as a dict, for the manifest: all fields but `workers` (which does not change the output)."""
        data = dataclasses.asdict(self)
        data.pop("workers")
        if isinstance(self.cleaning, CleaningConfig):
            data["cleaning"] = self.cleaning.to_dict()
        return data
