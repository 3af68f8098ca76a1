import pytest

from klm.data.text.cleaner import REPORT_KEYS, TextCleaner
from klm.data.text.cleaning_config import CleaningConfig
from klm.errors import ConfigError, DataError


def clean_all(texts, **config):
    cleaner = TextCleaner(CleaningConfig(**config))
    return list(cleaner.clean_documents(texts)), cleaner.report()


def test_defaults_normalize_remove_controls_and_collapse():
    texts, report = clean_all(["ﬁne\u00a0 ca\u200bt\x07 ", "", "   ", "ok"])
    assert texts == ["fine cat", "ok"]
    assert report["unicode_normalized"] == 1
    assert report["control_characters_removed"] == 2
    assert report["whitespace_collapsed"] == 2
    assert report["dropped_too_short"] == 2
    assert report["documents_in"] == 4 and report["documents_out"] == 2
    assert report["characters_out"] == len("fine cat") + 2
    assert list(report) == list(REPORT_KEYS)


def test_optional_steps_are_off_by_default():
    text = "Mail me@example.com <b>The</b> cat"
    texts, report = clean_all([text, text])
    assert texts == [text, text]
    assert report["privacy_email"] == report["stop_words_removed"] == report["dropped_duplicate"] == 0


def test_lowercase_html_and_dedup():
    texts, report = clean_all(
        ["<p>Hello &amp; World</p>", "hello & world", "Other"], strip_html=True, lowercase=True, deduplicate=True
    )
    assert texts == ["hello & world", "other"]
    assert report["html_stripped"] == 1  # "hello & world" has nothing to strip
    assert report["lowercased"] == 2
    assert report["dropped_duplicate"] == 1


def test_min_length():
    texts, report = clean_all(["ab", "abc", "  abcd  "], min_length=3)
    assert texts == ["abc", "abcd"]
    assert report["dropped_too_short"] == 1


def test_stop_words():
    texts, report = clean_all(["The cat is on the mat, not under it"], remove_stop_words=True)
    assert texts == ["cat mat, not"]
    assert report["stop_words_removed"] == 6


def test_privacy_scrubbing_counts_per_kind():
    text = (
        "Write to jane.doe+news@mail.example.org or see https://example.com/a?b=1 and www.example.net, "
        "server 192.168.0.12, call +1 555 123 4567 or (020) 7946 0958 or 555-123-4567. "
        "Years 1990 - 2000 and 3.14159 stay."
    )
    texts, report = clean_all([text], scrub_privacy=True)
    assert texts == [
        "Write to <email> or see <url> and <url>, server <ip>, call <phone> or <phone> or <phone>. "
        "Years 1990 - 2000 and 3.14159 stay."
    ]
    assert (report["privacy_email"], report["privacy_url"], report["privacy_ip"], report["privacy_phone"]) == (
        1,
        2,
        1,
        3,
    )


def test_invalid_utf8_replaced_and_counted():
    cleaner = TextCleaner()
    assert cleaner.decode(b"caf\xc3\xa9", "f.txt", 1) == "café"
    assert cleaner.decode(b"bad \xff byte", "f.txt", 2) == "bad \ufffd byte"
    assert cleaner.report()["invalid_utf8_lines"] == 1
    assert cleaner.report()["invalid_utf8_replaced"] == 1
    # A U+FFFD that was in the text is not a replacement; each bad sequence is.
    assert cleaner.decode(b"\xef\xbf\xbd ok \xff\xfe", "f.txt", 3) == "\ufffd ok \ufffd\ufffd"
    assert cleaner.report()["invalid_utf8_lines"] == 2
    assert cleaner.report()["invalid_utf8_replaced"] == 3


def test_invalid_utf8_strict_names_file_and_line():
    cleaner = TextCleaner(CleaningConfig(strict_utf8=True))
    with pytest.raises(DataError, match=r"corpus.txt, line 7 .*column 5"):
        cleaner.decode(b"bad \xff byte", "corpus.txt", 7)


def test_config_errors_name_flags():
    with pytest.raises(ConfigError, match="--unicode-normalization"):
        CleaningConfig(unicode_normalization="NFX")
    with pytest.raises(ConfigError, match="--min-length"):
        CleaningConfig(min_length=-1)
    with pytest.raises(ConfigError, match="--dedup"):
        CleaningConfig(deduplicate="maybe")
    with pytest.raises(ConfigError, match="--keep-control-characters|--remove-control-characters"):
        CleaningConfig(remove_control_characters="maybe")
    # A --config file's words are read as the other commands read them: "no" is false.
    assert CleaningConfig(deduplicate="no").deduplicate is False
    assert CleaningConfig(unicode_normalization="none").unicode_normalization is None


def test_wikitext_defaults_keep_text_as_is():
    config = CleaningConfig.for_source_kind("wikitext")
    assert config.unicode_normalization is None
    assert not config.remove_control_characters and not config.collapse_whitespace
    assert CleaningConfig.for_source_kind("wikitext", lowercase=True).lowercase
    assert CleaningConfig.for_source_kind("text") == CleaningConfig()
    text = " Non\u2011breaking hyphen ″ "
    cleaner = TextCleaner(config)
    assert cleaner.clean(text) == text
    assert cleaner.clean("   ") is None
    with pytest.raises(ConfigError, match="lowercas"):
        CleaningConfig.for_source_kind("text", lowercasing=True)
