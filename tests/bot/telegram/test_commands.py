from __future__ import annotations

from bot.commands import COMMANDS, NOT_YOURS
from tests.support.eventually import eventually
from tests.support.fake_brain import PRIVACY, FakeBrain
from tests.support.telegram_api import TelegramApiServer, TgChat, TgMessage, TgUser


class Person:
    """A user in a chat, typing commands and reading the bot's answers."""

    def __init__(self, telegram: TelegramApiServer, user: TgUser, chat: TgChat):
        self.telegram, self.user, self.chat = telegram, user, chat

    @property
    def key(self) -> str:
        return f"telegram:{self.user.id}"

    async def says(self, text: str) -> TgMessage:
        seen = len(self.telegram.bot_messages(self.chat))
        self.telegram.send_text(self.user, self.chat, text)
        return await self.telegram.wait_for_reply(self.chat, after=seen)

    async def presses(self, message: TgMessage, label: str) -> TgMessage:
        seen = len(self.telegram.bot_messages(self.chat))
        query = self.telegram.press(self.user, message, label)
        reply = await self.telegram.wait_for_reply(self.chat, after=seen)
        assert self.telegram.callback_answers[query] == {"text": None, "show_alert": None}  # it stopped spinning
        return reply

    async def is_refused(self, message: TgMessage, label: str) -> None:
        """Presses a button that is not for them: only they are told so, with a short note on the button."""
        query = self.telegram.press(self.user, message, label)
        answer = await eventually(lambda: self.telegram.callback_answers[query], f"the answer to pressing {label!r}")
        assert answer["text"] == NOT_YOURS


def direct(telegram: TelegramApiServer, name: str = "Ana") -> Person:
    user = telegram.user(name, name.lower())
    return Person(telegram, user, telegram.private_chat(user))


async def test_the_command_menu_is_registered_with_telegram(telegram: TelegramApiServer, start_bot):
    await start_bot()

    menu = telegram.calls_to("setMyCommands")[-1].params["commands"]
    assert [c["command"] for c in menu] == ["start", *COMMANDS]
    assert "stats" not in [c["command"] for c in menu]


async def test_start_and_help_say_what_the_bot_can_do(telegram: TelegramApiServer, start_bot):
    await start_bot()
    ana = direct(telegram)

    for command in ("/start", "/help"):
        text = (await ana.says(command)).text
        assert text.startswith("Talk to me in plain words.")
        assert all(f"/{name}" in text for name in COMMANDS)
        assert "/stats" not in text


async def test_persona_alone_offers_the_presets_as_buttons_and_a_press_picks_one(
    telegram: TelegramApiServer, fake_brain: FakeBrain, start_bot
):
    await start_bot()
    ana = direct(telegram)

    menu = await ana.says("/persona")
    assert menu.text.startswith("I'm currently 'assistant'.")
    assert [label for label, _ in menu.buttons] == ["assistant", "pirate", "poet"]

    picked = await ana.presses(menu, "pirate")

    assert picked.text == "Persona set for you: pirate.\nAhoy!"
    assert fake_brain.persona[ana.key] == "pirate"
    telegram.send_text(ana.user, ana.chat, "hello")
    await telegram.wait_for_text(ana.chat, "You said: hello")
    assert (await ana.says("/persona")).text.startswith("I'm currently 'pirate'.")


async def test_persona_by_name_and_a_custom_persona(telegram: TelegramApiServer, fake_brain: FakeBrain, start_bot):
    await start_bot()
    ana = direct(telegram)

    assert (await ana.says("/persona poet")).text == "Persona set for you: poet."
    assert fake_brain.persona[ana.key] == "poet"
    custom = await ana.says("/persona custom You are a patient chess coach.")
    assert custom.text == "Persona set for you: custom."
    assert fake_brain.persona[ana.key] == "custom"
    unknown = await ana.says("/persona nosuch")
    assert unknown.text == "There is no persona 'nosuch'. See /persona for the list."
    assert (await ana.says("/persona custom")).text.startswith("Tell me who to be")
    assert fake_brain.persona[ana.key] == "custom"


async def test_in_a_group_only_admins_change_the_persona(telegram: TelegramApiServer, fake_brain: FakeBrain, start_bot):
    await start_bot()
    owner, admin, member = telegram.user("Ana"), telegram.user("Carl"), telegram.user("Bob")
    group = telegram.group("Book club", owner=owner, admins=(admin,))
    bob, carl, ana = Person(telegram, member, group), Person(telegram, admin, group), Person(telegram, owner, group)
    chat_key = f"chat:{group.id}"

    refused = await bob.says("/persona pirate")
    assert refused.text == "Only this chat's admins can change my persona here."
    assert chat_key not in fake_brain.persona
    menu = await bob.says("/persona")  # anyone may look
    assert (await bob.presses(menu, "poet")).text == "Only this chat's admins can change my persona here."
    assert chat_key not in fake_brain.persona

    assert (await carl.says("/persona pirate")).text == "Persona set in this chat: pirate.\nAhoy!"
    assert fake_brain.persona[chat_key] == "pirate"
    own_menu = await ana.says("/persona")
    assert (await ana.presses(own_menu, "poet")).text == "Persona set in this chat: poet."
    assert fake_brain.persona[chat_key] == "poet"
    assert {c.params["user_id"] for c in telegram.calls_to("getChatMember")} == {member.id, admin.id, owner.id}


async def test_a_persona_menu_is_for_the_member_who_asked_and_is_pressed_once(
    telegram: TelegramApiServer, fake_brain: FakeBrain, start_bot
):
    await start_bot()
    owner, member = telegram.user("Ana"), telegram.user("Bob")
    group = telegram.group("Book club", owner=owner)
    ana, bob = Person(telegram, owner, group), Person(telegram, member, group)
    chat_key = f"chat:{group.id}"

    menu = await bob.says("/persona")
    await ana.is_refused(menu, "pirate")  # even an admin picks from a menu of her own
    assert (await ana.says("/persona")).text.startswith("I'm currently 'assistant'.")

    assert (await bob.presses(menu, "poet")).text == "Only this chat's admins can change my persona here."
    assert menu.buttons == []  # the menu did its work; pressing it again would only repeat it
    assert chat_key not in fake_brain.persona


async def test_optin_says_what_is_collected_and_records_consent_only_after_the_button(
    telegram: TelegramApiServer, fake_brain: FakeBrain, start_bot
):
    await start_bot()
    ana = direct(telegram)

    notice = await ana.says("/optin")

    assert notice.text.startswith(PRIVACY.text)
    assert [label for label, _ in notice.buttons] == ["Yes, opt me in"]
    assert ana.key not in fake_brain.consent
    done = await ana.presses(notice, "Yes, opt me in")
    assert done.text.startswith("Thank you: you are opted in (consent version v1, 2026-01-02 03:04 UTC)")
    assert fake_brain.consent[ana.key].opted_in
    assert notice.buttons == []  # a confirmation cannot be pressed twice

    out = await ana.says("/optout")
    assert out.text.startswith("You are opted out: from now on nothing you say is kept for training.")
    assert not fake_brain.consent[ana.key].opted_in


async def test_forget_asks_first_and_only_the_asker_can_confirm(
    telegram: TelegramApiServer, fake_brain: FakeBrain, start_bot
):
    await start_bot()
    ana_user, bob_user = telegram.user("Ana"), telegram.user("Bob")
    group = telegram.group("Book club", owner=ana_user)
    ana, bob = Person(telegram, ana_user, group), Person(telegram, bob_user, group)

    question = await ana.says("/forget")
    assert question.text.startswith("This deletes everything I keep about you")
    assert fake_brain.forgotten == []

    await bob.is_refused(question, "Yes, forget me")

    done = await ana.presses(question, "Yes, forget me")
    assert done.text.startswith("Done: I forgot you")
    assert fake_brain.forgotten == [ana.key]


async def test_reset_memory_and_privacy(telegram: TelegramApiServer, fake_brain: FakeBrain, start_bot):
    await start_bot()
    ana = direct(telegram)
    telegram.send_text(ana.user, ana.chat, "remember the milk")
    await telegram.wait_for_text(ana.chat, "You said: remember the milk")

    memory = await ana.says("/memory")
    assert "Learning from our chats: no" in memory.text
    assert "user: remember the milk" in memory.text
    privacy = await ana.says("/privacy")
    assert privacy.text == f"{PRIVACY.text}\n\nYou are not opted in."
    assert (await ana.says("/reset")).text == "Memory of this chat cleared (2 turns)."
    assert "Recent turns remembered here: 0" in (await ana.says("/memory")).text


async def test_stats_answers_operators_and_nobody_else(telegram: TelegramApiServer, start_bot):
    operator, someone = telegram.user("Olga"), telegram.user("Sam")
    await start_bot(operators=[operator.id])
    olga = Person(telegram, operator, telegram.private_chat(operator))
    sam = Person(telegram, someone, telegram.private_chat(someone))

    assert (await olga.says("/stats")).text.startswith("Model: fake\n")
    assert "/stats" in (await olga.says("/help")).text

    telegram.send_text(sam.user, sam.chat, "/stats")
    help_text = await sam.says("/help")  # answered after /stats, which therefore got no answer
    assert telegram.transcript(sam.chat) == [help_text.text]
    assert "/stats" not in help_text.text


async def test_an_unknown_command_points_to_help(telegram: TelegramApiServer, start_bot):
    await start_bot()
    ana = direct(telegram)

    assert (await ana.says("/dance")).text == "I don't know /dance. Try /help."
