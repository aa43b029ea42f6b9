"""What a change of a member's reactions on a reply means, on every platform (bot/feedback.py)."""

from __future__ import annotations

import pytest

from bot.feedback import DISLIKE, LIKE, REMOVED, ReactionRules
from bot.settings import ReactionSettings

RULES = ReactionRules.from_settings(ReactionSettings(likes=["👍", "❤️"], dislikes=["👎"]))


@pytest.mark.parametrize(
    ("before", "after", "rating"),
    [
        ([], ["👍"], LIKE),
        (["👍"], ["👎"], DISLIKE),  # changed
        (["👍"], [], REMOVED),  # taken back
        (["👍"], ["👍", "❤"], None),  # another like: still liked (Telegram may send ❤ without U+FE0F)
        (["👍"], ["👍", "👎"], DISLIKE),  # both at once: the one just added rates
        (["👍", "👎"], ["👍", "👎", "🔥"], None),  # a reaction that rates nothing changes nothing
        (["🔥"], [], None),
        (["👍", "👎"], ["👎"], DISLIKE),
    ],
)
def test_a_change_of_reactions_gives_the_rating_a_member_would_expect(before, after, rating):
    assert RULES.change(before, after) == rating
