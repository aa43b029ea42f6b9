"""Personal data scrubbing: e-mail addresses, phone numbers, IBANs, card-like and long account numbers, and URLs
that carry secrets.

Each kind is replaced by a placeholder and counted. The field's libraries judge what they know best: libphonenumber's
matcher (``phonenumbers``) finds phone numbers in any national or international format, ``python-stdnum`` validates
IBANs (mod 97) and tells a card number by its Luhn check. Candidates are found with loose patterns (any separators, a
word glued in front: ``ref-4111…``) and then judged.

Order: URLs first (they may hold an address or digits), then e-mail addresses (plain, internationalized such as
``änn@bücher.de``, and spelled out: ``ann(at)example.org``, ``ann [at] example [dot] org``), IBANs, digit runs, and
phone numbers last. Every run of 13 to 19 digits counts as a card number whether or not it passes the Luhn check (a
mistyped card number, an account or an ID number is no less personal); 20 digits or more are an account number.

The recall over tests/trainer/nightly/data/pii_canaries.yaml is measured by ``python -m trainer.nightly.scrub``
(and held by tests/trainer/nightly/test_scrub_recall.py); the README's privacy section quotes it.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from urllib.parse import parse_qsl, urlsplit

import phonenumbers
from stdnum import iban as stdnum_iban
from stdnum import luhn

URL = re.compile(r"(?:\bhttps?://|\bwww\.)[^\s<>\"']+", re.IGNORECASE)
# "@" or a spelled-out "at"; "." or a spelled-out "dot" (in brackets, or between spaces for "dot" only: a bare " at "
# is ordinary English)
_AT = r"(?:\s*@\s*|\s*[(\[{<]\s*at\s*[)\]}>]\s*|\s+at\s+(?=[\w-]+\s*(?:[(\[{<]\s*dot\s*[)\]}>]|\s+dot\s+)))"
_DOT = r"(?:\.|\s*[(\[{<]\s*dot\s*[)\]}>]\s*|\s+dot\s+)"
# letters of any script (\w minus digits and underscore is not expressible simply, so \w: digits are allowed in
# labels anyway); the top-level label is letters only (or an IDNA "xn--" label)
EMAIL = re.compile(
    rf"(?<![\w.+-])[\w.!#$%&'*+/=?^`{{|}}~-]*\w{_AT}(?:[\w-]+{_DOT})+(?:xn--[\w-]+|[^\W\d_]{{2,}})(?![\w-])",
    re.IGNORECASE,
)
# two letters, two check digits, then 11 to 30 letters or digits with single spaces or dashes between groups
IBAN_CANDIDATE = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?:[ -]?[A-Za-z0-9]){11,30}(?![A-Za-z0-9])")
# digits with at most two separators between them (space, dot, dash, slash, underscore); a word may be glued in front
DIGIT_RUN = re.compile(r"(?<!\d)\d(?:[ \t./_-]{0,2}\d){12,}(?!\d)")
# groups of four digits with any short punctuation between them: a card number only if it passes the Luhn check
CARD_GROUPS = re.compile(r"(?<!\d)\d{4}(?:[^\w\n]{1,3}\d{4}){2,3}(?:[^\w\n]{1,3}\d{1,3})?(?!\d)")
PHONE_SHAPED = re.compile(r"\+?\(?\d{2,4}\)?(?:[ .-]\d{2,4}){2,4}")
# a decimal number or a date, which some region's numbering plan would also accept
NOT_PHONE = re.compile(r"\d+[.,]\d+|\d{4}-\d{1,2}-\d{1,2}|\d{1,2}[./-]\d{1,2}[./-]\d{2,4}")
DECIMAL = re.compile(r"^\d+\.\d+$")
# regions whose national formats (without +country) count as phone numbers; international ones are found in any
PHONE_REGIONS = ("US", "GB", "DE", "FR")
SECRET_PARAMS = {
    "token", "access_token", "refresh_token", "id_token", "auth", "authorization", "key", "api_key", "apikey",
    "secret", "client_secret", "password", "pass", "pwd", "sig", "signature", "session", "sessionid", "sid",
    "code", "jwt", "x-amz-signature", "x-amz-credential", "ticket", "invite",
}  # fmt: skip
# a path segment or fragment this long, mixing letters and digits, is most likely a credential
TOKEN_LIKE = re.compile(r"(?=[A-Za-z0-9_\-]*\d)(?=[A-Za-z0-9_\-]*[A-Za-z])[A-Za-z0-9_\-]{24,}")
PLACEHOLDERS = {
    "url": "[url]", "email": "[email]", "iban": "[iban]", "card": "[card]", "number": "[number]", "phone": "[phone]",
}  # fmt: skip


def carries_secret(url: str) -> bool:
    parts = urlsplit(url if "://" in url else "http://" + url)
    if parts.username or parts.password:
        return True
    if any(name.lower() in SECRET_PARAMS for name, _ in parse_qsl(parts.query, keep_blank_values=True)):
        return True
    return bool(TOKEN_LIKE.search(parts.path) or TOKEN_LIKE.search(parts.fragment))


def _iban_span(candidate: str) -> int:
    """How many characters of the candidate make a valid IBAN (the longest such prefix; 0: none)."""
    ends = [i + 1 for i, ch in enumerate(candidate) if ch.isalnum()]
    for end in reversed(ends):
        if end < 15:
            break
        if stdnum_iban.is_valid(candidate[:end]):
            return end
    return 0


def _phones(text: str) -> list[tuple[int, int]]:
    """The spans of phone numbers libphonenumber finds, in any of PHONE_REGIONS' formats or an international one."""
    spans: set[tuple[int, int]] = set()
    for region in PHONE_REGIONS:
        for match in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.POSSIBLE):
            # a possible number counts when it is valid, or written the way phone numbers are (ten digits or more in
            # groups, such as a US number with an unassigned area code: "(555) 123-4567"); the rest are too often
            # times, prices and versions
            raw = match.raw_string
            if NOT_PHONE.fullmatch(raw) or len(re.sub(r"\D", "", raw)) < 7:
                continue
            if phonenumbers.is_valid_number(match.number) or PHONE_SHAPED.fullmatch(raw):
                spans.add((match.start, match.end))
    return sorted(spans)


def _replace_spans(text: str, spans: list[tuple[int, int]], placeholder: str) -> tuple[str, int]:
    """``text`` with the (possibly overlapping) spans replaced by the placeholder, and how many there were."""
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    for start, end in reversed(merged):
        text = text[:start] + placeholder + text[end:]
    return text, len(merged)


def scrub(text: str, counts: Counter) -> str:
    """``text`` with personal data replaced by placeholders; ``counts`` gains one per replacement by kind."""

    def counted(kind: str, judge: Callable[[str], bool] = lambda _: True) -> Callable[[re.Match], str]:
        def replace(match: re.Match) -> str:
            if not judge(match.group(0)):
                return match.group(0)
            counts[kind] += 1
            return PLACEHOLDERS[kind]

        return replace

    def iban(match: re.Match) -> str:
        raw = match.group(0)
        end = _iban_span(raw)
        if not end:
            return raw
        counts["iban"] += 1
        return PLACEHOLDERS["iban"] + raw[end:]

    def digits(match: re.Match) -> str:
        raw = match.group(0)
        found = re.sub(r"\D", "", raw)
        if DECIMAL.match(raw) or len(found) < 13:
            return raw
        kind = "number" if len(found) >= 20 else "card"
        counts[kind] += 1
        return PLACEHOLDERS[kind]

    text = URL.sub(counted("url", carries_secret), text)
    text = EMAIL.sub(counted("email"), text)
    text = IBAN_CANDIDATE.sub(iban, text)
    text = DIGIT_RUN.sub(digits, text)
    text = CARD_GROUPS.sub(counted("card", is_card), text)
    text, phones = _replace_spans(text, _phones(text), PLACEHOLDERS["phone"])
    if phones:
        counts["phone"] += phones
    return text


def is_card(number: str) -> bool:
    """Whether the digits pass the Luhn check (a card number rather than another long number)."""
    found = re.sub(r"\D", "", number)
    return 13 <= len(found) <= 19 and luhn.is_valid(found)


def measure(canaries: list[dict[str, str]], ordinary: list[str]) -> tuple[float, float, list[str], list[str]]:
    """Recall over the canaries (the share whose ``value`` leaves no trace after scrubbing its ``text``) and the
    share of ordinary sentences changed at all; with the canaries missed and the sentences changed."""
    missed = [c["text"] for c in canaries if c["value"] in scrub(c["text"], Counter())]
    changed = [line for line in ordinary if scrub(line, Counter()) != line]
    recall = 1 - len(missed) / len(canaries) if canaries else 1.0
    false_positives = len(changed) / len(ordinary) if ordinary else 0.0
    return recall, false_positives, missed, changed


if __name__ == "__main__":  # python -m trainer.nightly.scrub [canaries.yaml]: the figures the README quotes
    import sys
    from pathlib import Path

    import yaml

    default = Path(__file__).parents[2] / "tests/trainer/nightly/data/pii_canaries.yaml"
    data = yaml.safe_load(Path(sys.argv[1] if len(sys.argv) > 1 else default).read_text())
    recall, fp, missed, changed = measure(data["canaries"], data["ordinary"])
    print(f"recall {recall:.1%} of {len(data['canaries'])} canaries; {fp:.1%} of {len(data['ordinary'])} ordinary "
          "sentences changed")  # fmt: skip
    for text in missed:
        print("missed:", text)
    for text in changed:
        print("changed:", text)
