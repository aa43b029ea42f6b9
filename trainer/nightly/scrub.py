"""Personal data scrubbing: e-mail addresses, phone numbers, card-like numbers and URLs that carry secrets.

Each kind is replaced by a placeholder and counted. URLs go first (they may hold an address or digits),
cards before phones (a card number also looks like a long phone number). Every run of 13 to 19 digits
counts as a card number, whether or not it passes the Luhn check: a mistyped card number, an account or
an ID number is no less personal.
"""

from __future__ import annotations

import re
from collections import Counter
from urllib.parse import parse_qsl, urlsplit

URL = re.compile(r"(?:\bhttps?://|\bwww\.)[^\s<>\"']+", re.IGNORECASE)
EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
CARD = re.compile(r"(?<![\d-])\d(?:[ .-]?\d){12,18}(?![\d-])")
PHONE = re.compile(r"(?<![\w+])\+?\(?\d[\d\s().-]{5,}\d(?!\w)")
DECIMAL = re.compile(r"^\d+\.\d+$")
SECRET_PARAMS = {
    "token", "access_token", "refresh_token", "id_token", "auth", "authorization", "key", "api_key", "apikey",
    "secret", "client_secret", "password", "pass", "pwd", "sig", "signature", "session", "sessionid", "sid",
    "code", "jwt", "x-amz-signature", "x-amz-credential", "ticket", "invite",
}  # fmt: skip
# a path segment or fragment this long, mixing letters and digits, is most likely a credential
TOKEN_LIKE = re.compile(r"(?=[A-Za-z0-9_\-]*\d)(?=[A-Za-z0-9_\-]*[A-Za-z])[A-Za-z0-9_\-]{24,}")
PLACEHOLDERS = {"url": "[url]", "email": "[email]", "card": "[card]", "phone": "[phone]"}


def carries_secret(url: str) -> bool:
    parts = urlsplit(url if "://" in url else "http://" + url)
    if parts.username or parts.password:
        return True
    if any(name.lower() in SECRET_PARAMS for name, _ in parse_qsl(parts.query, keep_blank_values=True)):
        return True
    return bool(TOKEN_LIKE.search(parts.path) or TOKEN_LIKE.search(parts.fragment))


def scrub(text: str, counts: Counter) -> str:
    """``text`` with personal data replaced by placeholders; ``counts`` gains one per replacement by kind."""

    def url(match: re.Match) -> str:
        if carries_secret(match.group(0)):
            counts["url"] += 1
            return PLACEHOLDERS["url"]
        return match.group(0)

    def card(match: re.Match) -> str:
        digits = re.sub(r"\D", "", match.group(0))
        if 13 <= len(digits) <= 19:
            counts["card"] += 1
            return PLACEHOLDERS["card"]
        return match.group(0)

    def phone(match: re.Match) -> str:
        raw = match.group(0)
        digits = re.sub(r"\D", "", raw)
        separated = raw.startswith("+") or bool(re.search(r"[\s()-]", raw.strip()))
        if DECIMAL.match(raw) or not 7 <= len(digits) <= 15 or not (separated or len(digits) >= 10):
            return raw
        counts["phone"] += 1
        return PLACEHOLDERS["phone"]

    def email(match: re.Match) -> str:
        counts["email"] += 1
        return PLACEHOLDERS["email"]

    text = URL.sub(url, text)
    text = EMAIL.sub(email, text)
    text = CARD.sub(card, text)
    return PHONE.sub(phone, text)
