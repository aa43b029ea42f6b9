from __future__ import annotations

from bot.commands import COMMANDS
from bot.telegram.button_handler import NOT_YOURS
from tests.bot.telegram.brain_double import PRIVACY_TEXT, BrainDouble
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
        assert self.telegram.callback_answers[query] is not None  # the button stopped spinning
        return reply


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
    telegram: TelegramApiServer, double: BrainDouble, start_bot
):
    await start_bot()
    ana = direct(telegram)

    menu = await ana.says("/persona")
    assert menu.text.startswith("I'm currently 'assistant'.")
    assert [label for label, _ in menu.buttons] == ["assistant", "pirate", "poet"]

    picked = await ana.presses(menu, "pirate")

    assert picked.text == "Persona set for you: pirate.\nAhoy!"
    assert double.persona[ana.key] == "pirate"
    telegram.send_text(ana.user, ana.chat, "hello")
    await telegram.wait_for_text(ana.chat, "You said: hello")
    assert (await ana.says("/persona")).text.startswith("I'm currently 'pirate'.")


async def test_persona_by_name_and_a_custom_persona(telegram: TelegramApiServer, double: BrainDouble, start_bot):
    await start_bot()
    ana = direct(telegram)

    assert (await ana.says("/persona poet")).text == "Persona set for you: poet."
    assert double.persona[ana.key] == "poet"
    custom = await ana.says("/persona custom You are a patient chess coach.")
    assert custom.text == "Persona set for you: custom."
    assert double.persona[ana.key] == "custom"
    unknown = await ana.says("/persona nosuch")
    assert unknown.text == "There is no persona 'nosuch'. See /persona for the list."
    assert (await ana.says("/persona custom")).text.startswith("Tell me who to be")
    assert double.persona[ana.key] == "custom"


async def test_in_a_group_only_admins_change_the_persona(telegram: TelegramApiServer, double: BrainDouble, start_bot):
    await start_bot()
    owner, admin, member = telegram.user("Ana"), telegram.user("Carl"), telegram.user("Bob")
    group = telegram.group("Book club", owner=owner, admins=(admin,))
    bob, carl, ana = Person(telegram, member, group), Person(telegram, admin, group), Person(telegram, owner, group)
    chat_key = f"chat:{group.id}"

    refused = await bob.says("/persona pirate")
    assert refused.text == "Only this chat's admins can change my persona here."
    assert chat_key not in double.persona
    menu = await bob.says("/persona")  # anyone may look
    assert (await bob.presses(menu, "poet")).text == "Only this chat's admins can change my persona here."
    assert chat_key not in double.persona

    assert (await carl.says("/persona pirate")).text == "Persona set in this chat: pirate.\nAhoy!"
    assert double.persona[chat_key] == "pirate"
    assert (await ana.presses(menu, "poet")).text == "Persona set in this chat: poet."
    assert double.persona[chat_key] == "poet"
    assert {c.params["user_id"] for c in telegram.calls_to("getChatMember")} == {member.id, admin.id, owner.id}


async def test_optin_says_what_is_collected_and_records_consent_only_after_the_button(
    telegram: TelegramApiServer, double: BrainDouble, start_bot
):
    await start_bot()
    ana = direct(telegram)

    notice = await ana.says("/optin")

    assert notice.text.startswith(PRIVACY_TEXT)
    assert [label for label, _ in notice.buttons] == ["Yes, opt me in"]
    assert ana.key not in double.consent
    done = await ana.presses(notice, "Yes, opt me in")
    assert done.text.startswith("Thank you: you are opted in (consent version v1, 2026-01-02 03:04 UTC)")
    assert double.consent[ana.key]["opted_in"]
    assert notice.buttons == []  # a confirmation cannot be pressed twice

    out = await ana.says("/optout")
    assert out.text.startswith("You are opted out: from now on nothing you say is kept for training.")
    assert not double.consent[ana.key]["opted_in"]


async def test_forget_asks_first_and_only_the_asker_can_confirm(
    telegram: TelegramApiServer, double: BrainDouble, start_bot
):
    await start_bot()
    ana_user, bob_user = telegram.user("Ana"), telegram.user("Bob")
    group = telegram.group("Book club", owner=ana_user)
    ana, bob = Person(telegram, ana_user, group), Person(telegram, bob_user, group)

    question = await ana.says("/forget")
    assert question.text.startswith("This deletes everything I keep about you")
    assert double.forgotten == []

    query = telegram.press(bob.user, question, "Yes, forget me")
    await telegram.wait_for(lambda: telegram.callback_answers[query] is not None)
    assert telegram.callback_answers[query]["text"] == NOT_YOURS
    assert double.forgotten == []

    done = await ana.presses(question, "Yes, forget me")
    assert done.text.startswith("Done: I forgot you")
    assert double.forgotten == [ana.key]


async def test_reset_memory_and_privacy(telegram: TelegramApiServer, double: BrainDouble, start_bot):
    await start_bot()
    ana = direct(telegram)
    telegram.send_text(ana.user, ana.chat, "remember the milk")
    await telegram.wait_for_text(ana.chat, "You said: remember the milk")

    memory = await ana.says("/memory")
    assert "Learning from our chats: no" in memory.text
    assert "user: remember the milk" in memory.text
    privacy = await ana.says("/privacy")
    assert privacy.text == f"{PRIVACY_TEXT}\n\nYou are not opted in."
    assert (await ana.says("/reset")).text == "Memory of this chat cleared (2 turns)."
    assert "Recent turns remembered here: 0" in (await ana.says("/memory")).text


async def test_stats_answers_operators_and_nobody_else(telegram: TelegramApiServer, start_bot):
    operator, someone = telegram.user("Olga"), telegram.user("Sam")
    await start_bot(operators=[operator.id])
    olga = Person(telegram, operator, telegram.private_chat(operator))
    sam = Person(telegram, someone, telegram.private_chat(someone))

    assert (await olga.says("/stats")).text.startswith("Model: double\n")
    assert "/stats" in (await olga.says("/help")).text

    telegram.send_text(sam.user, sam.chat, "/stats")
    help_text = await sam.says("/help")  # answered after /stats, which therefore got no answer
    assert telegram.transcript(sam.chat) == [help_text.text]
    assert "/stats" not in help_text.text


async def test_an_unknown_command_points_to_help(telegram: TelegramApiServer, start_bot):
    await start_bot()
    ana = direct(telegram)

    assert (await ana.says("/dance")).text == "I don't know /dance. Try /help."
