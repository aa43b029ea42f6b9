"""Discord's own rules for a bot, in one place."""

from __future__ import annotations

# a message's content, in characters
MESSAGE_LIMIT = 2000
# a component's custom_id, in characters
CUSTOM_ID_LIMIT = 100
# buttons on one message (five rows of five)
BUTTONS_PER_MESSAGE = 25
BUTTON_LABEL_LIMIT = 80
# an autocompletion offers at most this many choices, each named in at most this many characters
CHOICES_LIMIT = 25
CHOICE_NAME_LIMIT = 100
# Discord drops an autocompletion not answered within 3 s; the brain is given less than that
AUTOCOMPLETE_WAIT_S = 2.0
