"""`CleaningConfig`: which cleaning steps `TextCleaner` applies."""

import dataclasses

from klm.config import check_fields, option
from klm.errors import ConfigError

NORMALIZATION_FORMS = ("NFKC", "NFC", "NFKD", "NFD")


@dataclasses.dataclass
class CleaningConfig:
    """Settings of the text cleaning steps, in the order they run.

    Each field names the `klm prepare` flag that sets it. The defaults suit
    raw user text; `CleaningConfig.for_source_kind("wikitext")` turns off the
    steps that would change the already-tokenized WikiText files, so that klm
    reproduces the reference's token stream exactly (see that method).

    Args:
        strict_utf8: `--strict`. If `True`, invalid UTF-8 is an error naming
            the file and line; if `False`, invalid bytes become U+FFFD and the
            lines are counted in the report.
        strip_html: `--strip-html`. Remove HTML tags and decode entities in
            every document. HTML files (`.html`, `.htm`) are always reduced to
            their visible text, whatever this says. Off by default because
            tag-like tokens such as WikiText's `<unk>` are real text.
        unicode_normalization: `--unicode-normalization`. `"NFKC"` (default),
            `"NFC"`, `"NFKD"`, `"NFD"`, or `None` to keep the text as is.
        remove_control_characters: `--remove-control-characters/--keep-control-characters`.
            Removes C0/C1 control characters other than whitespace, and the
            invisible format characters U+00AD, U+200B, U+2060 and U+FEFF.
        scrub_privacy: `--scrub-privacy`. Replace e-mail addresses, URLs, IP
            addresses, phone numbers, payment card numbers and secrets (API
            keys, tokens, passwords) with `<email>`, `<url>`, `<ip>`,
            `<phone>`, `<card>` and `<secret>`, counted per kind. The
            patterns are heuristics (see `klm.data.text.privacy`), not a
            guarantee. Off by default.
        lowercase: `--lowercase`. Lower-case every document.
        remove_stop_words: `--remove-stop-words`. Drop the words of
            `klm.data.text.stop_words.ENGLISH_STOP_WORDS` (whitespace-separated
            words, compared lower-cased). Off by default.
        collapse_whitespace: `--collapse-whitespace/--keep-whitespace`. Replace each
            run of whitespace with one space and strip both ends.
        min_length: `--min-length`. Drop documents with fewer characters than
            this (not counting surrounding whitespace). The default `1` drops
            blank lines only.
        deduplicate: `--dedup`. Drop exact repeats of an earlier document
            (after the steps above), across all splits. Streaming: it keeps a
            16-byte hash per distinct document.

    Example:

    >>> config = CleaningConfig(lowercase=True, deduplicate=True)
    >>> config.min_length
    1
    """

    strict_utf8: bool = option(
        False, "Fail on invalid UTF-8 (default: replace and count). Binary files always fail.", flag="--strict"
    )
    strip_html: bool = option(False, "Strip HTML tags in all text (.html files are always stripped).")
    unicode_normalization: str | None = option(
        "NFKC",
        f"Unicode normalization: {', '.join(NORMALIZATION_FORMS)} or none.",
        default_help="NFKC (WikiText: none)",
    )
    remove_control_characters: bool = option(
        True,
        "Remove control characters and invisible format characters (--keep-control-characters: keep them).",
        flag="--remove-control-characters/--keep-control-characters",
        default_help="remove (WikiText: keep)",
    )
    scrub_privacy: bool = option(
        False,
        "Replace e-mails, URLs, IPs, phone and card numbers, API keys/tokens/passwords with "
        "<email> <url> <ip> <phone> <card> <secret> (counted per kind; heuristics, see klm.data.text.privacy).",
    )
    lowercase: bool = option(False, "Lower-case all text.")
    remove_stop_words: bool = option(False, "Remove English stop words (klm.data.text.stop_words).")
    collapse_whitespace: bool = option(
        True,
        "Collapse whitespace runs into one space (--keep-whitespace: keep them).",
        flag="--collapse-whitespace/--keep-whitespace",
        default_help="collapse (WikiText: keep)",
    )
    min_length: int = option(1, "Drop documents shorter than this (characters).", check="non_negative")
    deduplicate: bool = option(False, "Drop exact duplicate documents.", flag="--dedup")

    def __post_init__(self):
        if isinstance(self.unicode_normalization, str):
            form = self.unicode_normalization.upper()
            self.unicode_normalization = None if form == "NONE" else form
        if self.unicode_normalization is not None and self.unicode_normalization not in NORMALIZATION_FORMS:
            raise ConfigError(
                f"Expected --unicode-normalization to be one of {', '.join(NORMALIZATION_FORMS)} or none. "
                f"Received: --unicode-normalization={self.unicode_normalization!r}"
            )
        # Types (a --config file's "no" is false) and the range of --min-length: from the `option(...)` fields.
        check_fields(self)

    @classmethod
    def for_source_kind(cls, kind, **overrides):
        """The default cleaning for a kind of source, with `overrides` applied.

        For `"wikitext"` the defaults are: no Unicode normalization, control
        characters and whitespace kept, so that the token stream of the
        `word` tokenizer equals the reference's (the reference does no cleaning; NFKC
        would for instance turn the non-breaking hyphens of WikiText-2 into
        `-`). Blank lines are still dropped, which changes nothing for the
        reference since they have no tokens. Any other kind gets the class
        defaults.

        Args:
            kind: `"wikitext"` or any other source kind (`"text"`, `"jsonl"`,
                ...).
            **overrides: field values that replace the defaults.
        """
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise ConfigError(f"Expected cleaning options among {sorted(fields)}. Received: {unknown}")
        values = {}
        if kind == "wikitext":
            values = {"unicode_normalization": None, "remove_control_characters": False, "collapse_whitespace": False}
        values.update(overrides)
        return cls(**values)

    def to_dict(self):
        return dataclasses.asdict(self)
