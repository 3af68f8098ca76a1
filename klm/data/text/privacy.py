"""Privacy scrubbing: the patterns behind `CleaningConfig(scrub_privacy=True)`.

`scrub(text)` replaces personal data and secrets with placeholders and
counts the replacements per kind:

| kind     | placeholder | what                                                        |
|----------|-------------|-------------------------------------------------------------|
| `url`    | `<url>`     | URLs with a scheme (`https://`, `ftp://`, ...), `www.` hosts,|
|          |             | bare domains followed by a path/query (`site.org/login?x`), |
|          |             | bare domains of common top-level domains (`example.com`)   |
| `email`  | `<email>`   | e-mail addresses, `mailto:` links included                 |
| `secret` | `<secret>`  | well-known token shapes (`sk-...`, `ghp_...`, `AKIA...`,    |
|          |             | `xoxb-...`, JWTs, private-key blocks, `Bearer ...`) and the|
|          |             | value of `key=value` / `key: value` pairs whose key names a |
|          |             | secret (`api_key`, `token`, `password`, `secret`, ...)      |
| `ip`     | `<ip>`      | IPv4 (with port or CIDR suffix) and IPv6 in every notation: |
|          |             | full, compressed (`2001:db8::1`, `::1`), IPv4-mapped        |
|          |             | (`::ffff:192.0.2.1`), with a zone (`fe80::1%eth0`) or in    |
|          |             | brackets with a port (`[2001:db8::1]:8080`)                 |
| `card`   | `<card>`    | payment card numbers: 13-19 digits, optionally grouped with |
|          |             | spaces or dashes, that pass the Luhn check                  |
| `phone`  | `<phone>`   | international numbers (`+44 20 7946 0958`, `0049 30 ...`, |
|          |             | `+1 (555) 666-7777`) and national numbers of 10-11 digits   |
|          |             | (`555 666 7777`, `5556667777`, `(555) 666-7777`,           |
|          |             | `020 7946 0958`, `1-800-555-0199`), `tel:` links too        |

The kinds run in the order of `KINDS`: URLs with a scheme absorb whatever
they contain (an e-mail in `https://user@host/`, a token in a query), then
e-mails, bare URLs, secrets, IPs, cards and phones.

The patterns are tuned against false positives in prose: years and ranges
(`1990 - 2000`), dates (`2024-01-15`, `15/01/2024`), times, version strings
(`3.11.7`, `v2.0.1`), decimals, prices, section numbers and file names
(`model.keras`) are left alone. They remain heuristics, not a guarantee: a
reviewer should still sample the output. Numbers are checked after the
pattern matches (`ipaddress` for IPs, Luhn for cards, digit counts for
phones), so a near-miss is never half replaced.
"""

import ipaddress
import re

KINDS = ("url", "email", "secret", "ip", "card", "phone")
PLACEHOLDERS = {kind: f"<{kind}>" for kind in KINDS}

# A URL ends before whitespace, quotes and angle brackets, and not on
# sentence punctuation.
_URL_TAIL = r"[^\s<>\"']*[^\s<>\"'.,;:!?)\]}]"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# Top-level domains that make a bare `name.tld` a URL even without a path.
# Lower-case only (`ASP.NET` is prose, `asp.net` a host), and without TLDs
# that are common file extensions or words (`.py`, `.md`, `.js`, `.it`).
_COMMON_TLDS = (
    "com|org|net|edu|gov|mil|int|info|biz|io|co|uk|de|fr|ca|au|jp|cn|ru|nl|eu|ch|se|es|br|"
    "app|dev|ai|xyz|online|site|tech"
)

# Any `scheme://` (RFC 3986 scheme names), not only the web's: connection
# strings such as `postgres://user:password@host:5432/db`, `mysql://`,
# `mongodb+srv://`, `redis://` and `amqp://` carry credentials, and the whole
# URL becomes `<url>` like `https://user:password@host/path` always did.
_SCHEME_URL = re.compile(r"(?<![\w.+-])[A-Za-z][A-Za-z0-9+.-]{1,31}://" + _URL_TAIL, re.IGNORECASE)
_EMAIL = re.compile(
    r"(?:(?<![\w.+-])mailto:)?(?<![\w.%+-])[\w.%+-]+@(?:" + _LABEL + r"\.)+[A-Za-z]{2,24}\b"
    r"(?:\?[^\s<>\"']*[^\s<>\"'.,;:!?)\]])?",
    re.IGNORECASE,
)
_BARE_URL = re.compile(
    r"(?<![\w@.+/-])(?:"
    r"(?i:www\.)"
    + _URL_TAIL
    + r"|(?:"
    + _LABEL
    + r"\.)+[A-Za-z]{2,24}(?::\d{2,5})?[/?#]"
    + _URL_TAIL
    + r"|(?:"
    + _LABEL
    + r"\.)+(?:"
    + _COMMON_TLDS
    + r")(?::\d{2,5})?(?![\w@-]|\.[A-Za-z0-9])"
    + r")"
)

# Secrets with a recognizable shape.
_TOKEN_SHAPES = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)"
    r"|(?<![\w-])(?:"
    r"sk-(?:proj-|ant-|live-)?[A-Za-z0-9_-]{16,}"  # OpenAI, Anthropic
    r"|(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{10,}"  # Stripe
    r"|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}"  # GitHub
    r"|glpat-[A-Za-z0-9_-]{20,}"  # GitLab
    r"|(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[0-9A-Z]{16}"  # AWS access key ids
    r"|xox[abposr]-[A-Za-z0-9-]{10,}"  # Slack
    r"|AIza[0-9A-Za-z_-]{35}"  # Google API keys
    r"|hf_[A-Za-z0-9]{30,}"  # Hugging Face
    r"|npm_[A-Za-z0-9]{36}"  # npm
    r"|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"  # JWT
    r")(?![\w-])"
)
_AUTH_SCHEME = re.compile(
    r"\b(?P<key>(?:Bearer|Basic|Token|Digest)\s+)(?P<value>[A-Za-z0-9._~+/=-]{8,})", re.IGNORECASE
)
_SECRET_KEYS = (
    r"api[_-]?key|apikey|api[_-]?secret|api[_-]?token|access[_-]?key(?:[_-]?id)?|secret[_-]?access[_-]?key"
    r"|access[_-]?token|refresh[_-]?token|id[_-]?token|auth[_-]?token|auth[_-]?key|session[_-]?(?:id|token|key)"
    r"|client[_-]?secret|private[_-]?key|secret[_-]?key|signing[_-]?key|encryption[_-]?key|secret|token"
    r"|password|passwd|passphrase|pwd|pass|auth|credentials?|cookie"
)
# The value of a secret key is either quoted -- then it runs to the closing
# quote, spaces included (`PASSWORD = "correct horse"`, `token: 'a b'`), on
# one line and at most 256 characters -- or a run of characters without
# spaces, quotes or separators (`pwd=abc`, `password = "unclosed`).
_KEY_VALUE = re.compile(
    r"(?<![A-Za-z0-9])(?P<key>(?:[A-Za-z0-9]{1,24}[_-]){0,4}(?:" + _SECRET_KEYS + r"))"
    r"(?P<sep>[\"']?\s*(?P<op>[:=]|=>)\s*)"
    r"(?:(?P<quote>[\"'])(?P<quoted>(?:(?!(?P=quote))[^\n]){1,256})(?P=quote)"
    r"|(?P<open>[\"']?)(?P<value>[^\s\"'<>,;]+))",
    re.IGNORECASE,
)

_NOT_SECRETS = ("none", "null", "true", "false", "required", "optional")

_IPV4 = re.compile(r"(?<![\w.:])(?:\d{1,3}\.){3}\d{1,3}(?:/\d{1,2}|:\d{1,5})?(?![\w]|\.\d)")
_IPV6 = re.compile(
    r"(?<![\w:.\[])(?P<bracket>\[)?"
    r"(?P<address>(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{0,4}))"
    r"(?P<zone>%[\w.-]+)?(?(bracket)\](?::\d{1,5})?)(?![\w:])"
)

_CARD = re.compile(r"(?<![\w.,+/-])\d(?:[ -]?\d){12,18}(?![\w]|[.,/-]\d)")
_PHONE = re.compile(
    r"(?:(?<![\w+.,/:-])|(?<=\btel:)|(?<=\bcallto:))(?:\+|\b00)?\(?\d[\d ().-]{6,24}\d(?![\w]|[.,/:-]\d)"
)


def luhn_valid(digits):
    """Whether a string of digits passes the Luhn check (payment cards)."""
    total = 0
    for i, char in enumerate(reversed(digits)):
        d = int(char)
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _is_ipv4(text):
    address = re.split(r"[/:]", text)[0]
    try:
        ipaddress.IPv4Address(address)
    except ValueError:
        return False
    return True


def _is_ipv6(match):
    address = match.group("address")
    if not re.search(r"\d", address):  # "a::b", "std::" and prose are not addresses
        return False
    try:
        ipaddress.IPv6Address(address)
    except ValueError:
        return False
    return True


def _is_card(text):
    digits = re.sub(r"\D", "", text)
    if not 13 <= len(digits) <= 19 or len(set(digits)) == 1:
        return False
    # Grouped numbers use one kind of separator.
    if " " in text and "-" in text:
        return False
    return luhn_valid(digits)


def _phone_span(text):
    """The part of a phone candidate to replace, or `None` when it is not a phone."""
    prefix = ""
    if text.startswith("(") and text.count("(") > text.count(")"):
        prefix, text = "(", text[1:]
    text = text.replace("(0)", "")  # +49 (0)30 ...: the optional trunk zero
    if text.count("(") != text.count(")") or text.count("(") > 1:
        return None
    if re.search(r"[ .-]{2,}|\([ .-]|[ .-]\)|\d\(", text):
        return None
    if "(" in text and not re.search(r"\((?:0|\d{2,5})\)", text):
        return None
    digits = re.sub(r"\D", "", text)
    international = text.startswith("+") or (text.startswith("00") and not text.startswith("000"))
    groups = [g for g in re.split(r"[ .()+-]+", text) if g]
    if international:
        if not 8 <= len(digits) <= 15:
            return None
    else:
        if groups[0] == "1" and len(digits) == 11 and len(groups) > 1:
            groups = groups[1:]  # 1-800-555-0199: the North American country code without "+"
        if not 10 <= len(digits) <= 11 or any(len(g) == 1 for g in groups) or max(len(g) for g in groups) < 3:
            return None
        if "." in text and len(groups) < 3:  # a decimal number, not a phone
            return None
    return prefix


def _replace(pattern, text, kind, counts, check=None):
    placeholder = PLACEHOLDERS[kind]

    def substitute(match):
        if check is not None and not check(match):
            return match.group(0)
        counts[kind] += 1
        return placeholder

    return pattern.sub(substitute, text)


def scrub(text, counts=None):
    """Replaces personal data and secrets in `text` with placeholders.

    Args:
        text: a `str`.
        counts: a dict to add the replacements per kind to (keys: `KINDS`),
            or `None`.

    Returns:
        `(scrubbed_text, counts)`.

    Example:

    >>> scrub("mail jane@example.org or call +44 20 7946 0958")[0]
    'mail <email> or call <phone>'
    """
    if counts is None:
        counts = {}
    for kind in KINDS:
        counts.setdefault(kind, 0)
    text = _replace(_SCHEME_URL, text, "url", counts)
    text = _replace(_EMAIL, text, "email", counts)
    text = _replace(_BARE_URL, text, "url", counts)
    text = _replace(_TOKEN_SHAPES, text, "secret", counts)

    def secret_value(match):
        quote = match.group("quote")
        if quote:
            # A quoted value is a value, not prose: only empty-ish ones stay.
            value = match.group("quoted").strip()
            if not value or value.lower() in _NOT_SECRETS:
                return match.group(0)
            counts["secret"] += 1
            return match.group("key") + match.group("sep") + quote + PLACEHOLDERS["secret"] + quote
        value = match.group("value")
        if match.group("op") != "=" and not re.search(r"[\d\W_]", value) and len(value) < 8:
            # `token: the`, `password: none` in prose; `pwd=abc` still counts.
            return match.group(0)
        if len(value) < 3 or value.lower() in _NOT_SECRETS:
            return match.group(0)
        counts["secret"] += 1
        return match.group("key") + match.group("sep") + match.group("open") + PLACEHOLDERS["secret"]

    text = _AUTH_SCHEME.sub(lambda m: _count_secret(m, counts), text)
    text = _KEY_VALUE.sub(secret_value, text)
    text = _replace(_IPV6, text, "ip", counts, _is_ipv6)
    text = _replace(_IPV4, text, "ip", counts, lambda m: _is_ipv4(m.group(0)))
    text = _replace(_CARD, text, "card", counts, lambda m: _is_card(m.group(0)))

    def phone(match):
        prefix = _phone_span(match.group(0))
        if prefix is None:
            return match.group(0)
        counts["phone"] += 1
        return prefix + PLACEHOLDERS["phone"]

    text = _PHONE.sub(phone, text)
    return text, counts


def _count_secret(match, counts):
    value = match.group("value")
    # `basic political`, `token economy`: a credential has a digit or symbol.
    if not re.search(r"[\d+/=_.~-]", value) and len(value) < 20:
        return match.group(0)
    counts["secret"] += 1
    return match.group("key") + PLACEHOLDERS["secret"]
