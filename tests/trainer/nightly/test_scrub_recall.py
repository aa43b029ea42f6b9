"""The scrubber's recall over the canary list (at least 60 forms members type) and its false positives on ordinary
text; the README's privacy section quotes these figures (python -m trainer.nightly.scrub prints them)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import yaml

from trainer.nightly.scrub import measure, scrub

DATA = yaml.safe_load((Path(__file__).parent / "data" / "pii_canaries.yaml").read_text())


def test_every_canary_form_is_scrubbed_and_ordinary_text_is_left_alone() -> None:
    canaries, ordinary = DATA["canaries"], DATA["ordinary"]
    assert len(canaries) >= 60 and {c["kind"] for c in canaries} >= {"email", "phone", "card", "number", "iban"}
    recall, false_positives, missed, changed = measure(canaries, ordinary)
    assert missed == [] and recall == 1.0
    assert changed == [] and false_positives == 0.0


def test_forms_the_list_does_not_name_are_scrubbed_too() -> None:
    """Inputs of the same classes that are not in the list (the list is not the specification)."""
    counts: Counter = Counter()
    text = (
        "Handy 0171 1234567, IBAN AT61 1904 3002 3457 3201, karte 4111 - 1111 - 1111 - 1111, "
        "schreib an jürgen.müller(at)beispiel.de, konto 9876 5432 1098 7654 3210 99"
    )
    out = scrub(text, counts)
    for secret in ("1234567", "3002 3457", "1111 - 1111", "müller", "5432 1098"):
        assert secret not in out, secret
    assert counts == {"phone": 1, "iban": 1, "card": 1, "email": 1, "number": 1}


def test_an_iban_is_scrubbed_whole_and_the_words_after_it_stay() -> None:
    counts: Counter = Counter()
    assert scrub("send it to DE89 3704 0044 0532 0130 00 AND tell me", counts) == "send it to [iban] AND tell me"
    assert counts == {"iban": 1}
