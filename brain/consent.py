"""A member's consent as their profile records it, in one place for every reader of a profile.

brain/store/profiles.py writes the profile (a Redis hash: ``consent`` is ``in`` or ``out``); the routes, the adapter
choice and the nightly trainer read whether a member is opted in through ``is_opted_in``.
"""

from __future__ import annotations

from collections.abc import Mapping

CONSENT_FIELD = "consent"
OPTED_IN = "in"


def is_opted_in(profile: Mapping[str, str] | None) -> bool:
    """Whether the member whose profile this is (as the store returns it; None or empty: no profile) is opted in."""
    return profile is not None and profile.get(CONSENT_FIELD) == OPTED_IN
