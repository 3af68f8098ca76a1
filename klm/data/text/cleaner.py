"""`TextCleaner`: streaming text cleaning with a count for every step."""

import hashlib
import re
import sys
import unicodedata

from klm.data.text import privacy
from klm.data.text.cleaning_config import CleaningConfig
from klm.data.text.sources import strip_markup
from klm.data.text.stop_words import ENGLISH_STOP_WORDS
from klm.errors import DataError

# C0/C1 control characters that are not whitespace (tab, newlines, form feed
# and the separators U+001C-U+001F, U+0085 count as whitespace and are left to
# the whitespace step), plus invisible format characters that only split
# words for no visible reason: soft hyphen, zero-width space, word joiner and
# byte-order mark.
_CONTROL = re.compile("[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f\u00ad\u200b\u2060\ufeff]+")
_WHITESPACE = re.compile(r"\s+")

# Privacy scrubbing lives in klm.data.text.privacy (patterns, checks and kinds).
PLACEHOLDERS = privacy.PLACEHOLDERS

REPORT_KEYS = (
    "documents_in",
    "invalid_utf8_lines",
    "invalid_utf8_replaced",
    "html_stripped",
    "unicode_normalized",
    "control_characters_removed",
    "privacy_email",
    "privacy_url",
    "privacy_ip",
    "privacy_phone",
    "privacy_card",
    "privacy_secret",
    "lowercased",
    "stop_words_removed",
    "whitespace_collapsed",
    "dropped_too_short",
    "dropped_duplicate",
    "documents_out",
    "characters_out",
)


class TextCleaner:
    """Cleans documents one at a time and counts what each step did.

    The steps run in this order, each only if enabled in the
    `CleaningConfig`: UTF-8 decoding (`decode`), HTML stripping, Unicode
    normalization, control-character removal, privacy scrubbing,
    lower-casing, stop-word removal, whitespace collapsing, the minimum
    length filter and exact de-duplication. Nothing is buffered, so memory
    stays flat however long the stream (de-duplication keeps a 16-byte hash
    per distinct document).

    `report()` returns the counts: documents in and out, lines with invalid
    UTF-8, documents changed by each step, characters and stop words removed,
    replacements per privacy kind, and documents dropped as too short or
    duplicate.

    Args:
        config: a `CleaningConfig`. Defaults to `CleaningConfig()`.

    Example:

    >>> cleaner = TextCleaner(CleaningConfig(lowercase=True, deduplicate=True))
    >>> list(cleaner.clean_documents(["Hello  World", "hello world", ""]))
    ['hello world']
    >>> cleaner.report()["dropped_duplicate"]
    1
    """

    def __init__(self, config=None):
        self.config = config or CleaningConfig()
        self._counts = dict.fromkeys(REPORT_KEYS, 0)
        self._seen = set()

    def decode(self, raw, path, line_number):
        """Decodes one line of UTF-8 bytes.

        Invalid bytes become U+FFFD; the line is counted in
        `invalid_utf8_lines` and the replacement characters in
        `invalid_utf8_replaced`. With `strict_utf8` they raise a `DataError`
        naming the file and line instead.
        """
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            if self.config.strict_utf8:
                snippet = raw[max(0, e.start - 12) : e.end + 12]
                raise DataError(
                    f"Expected UTF-8 text in {path}, line {line_number} (invalid byte at column {e.start + 1}). "
                    f"Re-encode the file as UTF-8, or drop --strict to replace invalid bytes. "
                    f"Received: {snippet!r}"
                ) from None
            text = raw.decode("utf-8", errors="replace")
            self._counts["invalid_utf8_lines"] += 1
            # U+FFFD characters that were in the text already are not replacements.
            self._counts["invalid_utf8_replaced"] += text.count("\ufffd") - raw.decode("utf-8", errors="ignore").count(
                "\ufffd"
            )
            return text

    def clean(self, text):
        """Cleans one document.

        Args:
            text: a `str`.

        Returns:
            The cleaned text, or `None` when a filter drops the document.
        """
        text = self.transform(text)
        if text is None or not self.keep(text):
            return None
        return text

    def transform(self, text):
        """The steps of `clean` before de-duplication, for one document.

        `clean(text)` is `transform(text)` then `keep()` of the result; the
        two halves let worker processes transform documents while one
        process de-duplicates them in order (see
        `klm.data.text.clean_and_tokenize`).

        Returns:
            The transformed text, or `None` when it is too short.
        """
        config = self.config
        counts = self._counts
        counts["documents_in"] += 1
        if config.strip_html and ("<" in text or "&" in text):
            stripped = strip_markup(text)
            if stripped != text:
                counts["html_stripped"] += 1
                text = stripped
        form = config.unicode_normalization
        if form and not unicodedata.is_normalized(form, text):
            counts["unicode_normalized"] += 1
            text = unicodedata.normalize(form, text)
        if config.remove_control_characters:
            stripped = _CONTROL.sub("", text)
            if len(stripped) != len(text):
                counts["control_characters_removed"] += len(text) - len(stripped)
                text = stripped
        if config.scrub_privacy:
            text, found = privacy.scrub(text)
            for kind, replaced in found.items():
                counts[f"privacy_{kind}"] += replaced
        if config.lowercase:
            lowered = text.lower()
            if lowered != text:
                counts["lowercased"] += 1
                text = lowered
        if config.remove_stop_words:
            words = text.split()
            kept = [w for w in words if w.lower() not in ENGLISH_STOP_WORDS]
            if len(kept) != len(words):
                counts["stop_words_removed"] += len(words) - len(kept)
                text = " ".join(kept)
        if config.collapse_whitespace:
            collapsed = _WHITESPACE.sub(" ", text).strip()
            if collapsed != text:
                counts["whitespace_collapsed"] += 1
                text = collapsed
        if len(text.strip()) < config.min_length:
            counts["dropped_too_short"] += 1
            return None
        return text

    def keep(self, text):
        """Whether a document from `transform` is kept: de-duplication (when on) and the output counts."""
        counts = self._counts
        if self.config.deduplicate:
            digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
            if digest in self._seen:
                counts["dropped_duplicate"] += 1
                return False
            self._seen.add(digest)
        counts["documents_out"] += 1
        counts["characters_out"] += len(text)
        return True

    def add_counts(self, counts):
        """Adds `counts` (another cleaner's `report()`, e.g. a worker process's) to this cleaner's."""
        for key, value in counts.items():
            self._counts[key] += value

    def clean_documents(self, documents):
        """Cleans a stream of documents, yielding the ones that are kept."""
        for text in documents:
            cleaned = self.clean(text)
            if cleaned is not None:
                yield cleaned

    def report(self):
        """The counts per step so far, as a new dict (keys in step order)."""
        return dict(self._counts)


def note_invalid_utf8(report, what):
    """Prints a one-line note on stderr when `report` counts invalid UTF-8."""
    replaced = (report or {}).get("invalid_utf8_replaced", 0)
    if replaced:
        print(
            f"note: replaced {replaced:,} invalid UTF-8 byte sequence(s) with U+FFFD on "
            f"{report['invalid_utf8_lines']:,} line(s) of {what} (--strict makes this an error)",
            file=sys.stderr,
        )
