"""`PrepareConfig`: everything `klm prepare` needs, validated."""

import dataclasses
import os

from klm.data.text.cleaning_config import CleaningConfig
from klm.data.text.sources import FORMATS
from klm.data.text.workers import usable_cpus
from klm.data.tokenizers.training import SENTENCEPIECE_MODEL_TYPES, TOKENIZER_KINDS
from klm.errors import ConfigError

DEFAULT_SHARD_TOKENS = 1 << 24


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


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
            `"sentencepiece"` or `"byte"`.
        vocab_size: `--vocab-size`. See `klm.data.train_tokenizer`.
        min_freq: `--min-freq` (word tokenizer only).
        sentencepiece_type: `--sentencepiece-type`: `"unigram"` or `"bpe"`.
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
    ...                        tokenizer="sentencepiece", valid_fraction=0.05)
    """

    sources: list
    out: str
    tokenizer: str = "word"
    vocab_size: int | None = None
    min_freq: int = 1
    sentencepiece_type: str = "unigram"
    tokenizer_from: str | None = None
    valid: list | None = None
    test: list | None = None
    valid_fraction: float | None = None
    text_field: str = "text"
    format: str = "auto"
    cleaning: CleaningConfig | dict | None = None
    eos_between_documents: bool | None = None
    seed: int = 0
    shard_tokens: int = DEFAULT_SHARD_TOKENS
    overwrite: bool = False
    datasets_url: str | None = None
    workers: int | None = None
    verbose: bool = True

    def __post_init__(self):
        self.sources = _as_paths(self.sources, "SOURCES")
        if not self.sources:
            raise ConfigError("Expected at least one SOURCE (file, glob, folder or dataset name). Received: none")
        if not isinstance(self.out, (str, os.PathLike)) or not os.fspath(self.out):
            raise ConfigError(f"Expected --out to name an output folder. Received: --out={self.out!r}")
        self.out = os.fspath(self.out)
        if self.tokenizer not in TOKENIZER_KINDS:
            raise ConfigError(
                f"Expected --tokenizer to be one of {', '.join(TOKENIZER_KINDS)}. "
                f"Received: --tokenizer={self.tokenizer!r}"
            )
        if self.vocab_size is not None and (not _is_int(self.vocab_size) or self.vocab_size < 1):
            raise ConfigError(
                f"Expected --vocab-size to be a positive integer. Received: --vocab-size={self.vocab_size!r}"
            )
        if self.tokenizer == "byte" and self.vocab_size is not None:
            raise ConfigError(
                "Expected no --vocab-size with --tokenizer byte (its 258 ids are fixed). "
                f"Received: --vocab-size={self.vocab_size}"
            )
        if not _is_int(self.min_freq) or self.min_freq < 1:
            raise ConfigError(f"Expected --min-freq to be an integer >= 1. Received: --min-freq={self.min_freq!r}")
        if self.tokenizer != "word" and self.min_freq != 1:
            raise ConfigError(
                "Expected --min-freq only with --tokenizer word. "
                f"Received: --tokenizer={self.tokenizer}, --min-freq={self.min_freq}"
            )
        if self.sentencepiece_type not in SENTENCEPIECE_MODEL_TYPES:
            raise ConfigError(
                f"Expected --sentencepiece-type to be one of {', '.join(SENTENCEPIECE_MODEL_TYPES)}. "
                f"Received: --sentencepiece-type={self.sentencepiece_type!r}"
            )
        if self.tokenizer_from is not None:
            self.tokenizer_from = os.fspath(self.tokenizer_from)
        self.valid = _as_paths(self.valid, "--valid")
        self.test = _as_paths(self.test, "--test")
        if self.valid_fraction is not None:
            if (
                isinstance(self.valid_fraction, bool)
                or not isinstance(self.valid_fraction, (int, float))
                or not (0.0 < self.valid_fraction < 1.0)
            ):
                raise ConfigError(
                    "Expected --valid-fraction strictly between 0 and 1. "
                    f"Received: --valid-fraction={self.valid_fraction!r}"
                )
            if self.valid:
                raise ConfigError(
                    f"Expected either --valid or --valid-fraction, not both. Received: --valid={self.valid}, "
                    f"--valid-fraction={self.valid_fraction}"
                )
        if not isinstance(self.text_field, str) or not self.text_field:
            raise ConfigError(
                f"Expected --text-field to be a field or column name. Received: --text-field={self.text_field!r}"
            )
        if self.format not in FORMATS:
            raise ConfigError(
                f"Expected --format to be one of {', '.join(FORMATS)}. Received: --format={self.format!r}"
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
        if self.eos_between_documents is not None and not isinstance(self.eos_between_documents, bool):
            raise ConfigError(f"Expected --eos/--no-eos to be true or false. Received: {self.eos_between_documents!r}")
        if not _is_int(self.seed):
            raise ConfigError(f"Expected --seed to be an integer. Received: --seed={self.seed!r}")
        if not _is_int(self.shard_tokens) or self.shard_tokens < 1:
            raise ConfigError(
                f"Expected --shard-tokens to be a positive integer. Received: --shard-tokens={self.shard_tokens!r}"
            )
        if self.workers is not None and (not _is_int(self.workers) or self.workers < 1):
            raise ConfigError(f"Expected --workers to be a positive integer. Received: --workers={self.workers!r}")

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
