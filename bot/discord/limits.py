"""Discord's own rules for a bot, in one place (bot/README.md explains them)."""

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

# Rate limits. Discord meters every REST route in buckets per major parameter (a message's edits and posts
# count in their channel's bucket), tells each response's bucket in X-RateLimit-* headers, and answers one
# call too many with 429 and `retry_after`; over all routes a bot may make about 50 calls a second (the global
# bucket, whose 429 says "global"). discord.py keeps both kinds of bucket from those headers and waits inside
# a call, before it or after a 429, so a busy channel holds its own calls only; a streamed reply's calls raise
# instead, and the reply waits itself, to draw the newest text after the wait (bot.discord.waits).
# A streamed reply adds its own pace (bot.discord.edit_interval_s, 1 s by default): editing a message every
# second stays within a channel's message bucket (five calls every five seconds) with room for other replies.
# a typing indicator shows for about 10 s; it is renewed every 5 s while the model works (not while the channel
# is inside a wait Discord asked for)
TYPING_REFRESH_S = 5.0
