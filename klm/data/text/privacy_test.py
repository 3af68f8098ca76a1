import collections

import pytest

from klm.data.text.cleaner import REPORT_KEYS, TextCleaner
from klm.data.text.cleaning_config import CleaningConfig
from klm.data.text.privacy import KINDS, luhn_valid, scrub
from klm.data.text.privacy_cases import NEGATIVES, POSITIVES


def test_corpus_is_large_enough():
    assert len(POSITIVES) >= 50 and len(NEGATIVES) >= 50
    assert {kind for _, kind, _ in POSITIVES} == set(KINDS)


@pytest.mark.parametrize("sentence,kind,fragments", POSITIVES, ids=[p[0][:40] for p in POSITIVES])
def test_positive_is_replaced_by_its_kind(sentence, kind, fragments):
    scrubbed, counts = scrub(sentence)
    assert f"<{kind}>" in scrubbed, scrubbed
    assert counts[kind] == 1 and sum(counts.values()) == 1, counts
    for fragment in fragments:
        assert fragment not in scrubbed.lower(), (fragment, scrubbed)


@pytest.mark.parametrize("sentence", NEGATIVES)
def test_negative_is_left_unchanged(sentence):
    scrubbed, counts = scrub(sentence)
    assert scrubbed == sentence
    assert sum(counts.values()) == 0


def test_issue_examples():
    for text in ["2001:db8::1", "fe80::1ff:fe23:4567:890a", "::1", "::ffff:192.0.2.1", "[2001:db8::1]:8080"]:
        assert scrub(f"host {text} up")[0] == "host <ip> up", text
    for text in [
        "555 666 7777",
        "5556667777",
        "020 7946 0958",
        "+44 20 7946 0958",
        "+1 (555) 666-7777",
        "0049 30 1234567",
    ]:
        assert scrub(f"call {text} now")[0] == "call <phone> now", text
    assert scrub("see secretsite.org/login?token=abc123 now")[0] == "see <url> now"
    assert scrub("write mailto:jane@example.com now")[0] == "write <email> now"
    assert scrub("card 4111-1111-1111-1111 now")[0] == "card <card> now"
    assert scrub("api_key: abc123def and ghp_0123456789abcdefghijABCDEFGHIJ")[0] == "api_key: <secret> and <secret>"


def test_quoted_secrets_and_url_credentials_are_scrubbed_whole():
    # Issue 22, item 7: "<secret> horse" and "postgres://admin:<email>:5432/prod" before.
    assert scrub('PASSWORD = "correct horse"')[0] == 'PASSWORD = "<secret>"'
    assert scrub("password='correct horse'")[0] == "password='<secret>'"
    assert scrub('{"token": "a b c", "user": "bob"}')[0] == '{"token": "<secret>", "user": "bob"}'
    assert scrub("postgres://admin:SuperSecret99@db.example.com:5432/prod")[0] == "<url>"
    assert scrub("mysql://user:pw@host and https://user:pw@host/path")[0] == "<url> and <url>"
    # An unclosed quote still scrubs the value up to the first space, as before.
    assert scrub('password = "hunter2 and more')[0] == 'password = "<secret> and more'


def test_cards_need_the_luhn_check():
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert scrub("ref 4111 1111 1111 1112 ok")[0] == "ref 4111 1111 1111 1112 ok"


def test_sentence_punctuation_stays_outside_placeholders():
    assert scrub("See https://example.com/a. Or (www.example.org), then jane@example.com.")[0] == (
        "See <url>. Or (<url>), then <email>."
    )
    assert scrub("(555-666-7777)")[0] == "(<phone>)"


def test_cleaner_reports_counts_per_kind():
    cleaner = TextCleaner(CleaningConfig(scrub_privacy=True))
    for sentence, _, _ in POSITIVES:
        cleaner.clean(sentence)
    report = cleaner.report()
    expected = collections.Counter(kind for _, kind, _ in POSITIVES)
    assert {kind: report[f"privacy_{kind}"] for kind in KINDS} == dict(expected)
    assert all(f"privacy_{kind}" in REPORT_KEYS for kind in KINDS)
