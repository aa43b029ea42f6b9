"""/remember and /memory in the terminal console, against a real brain."""

from __future__ import annotations

from tests.bot.test_console import run_console


def test_console_pins_lists_and_forgets_facts(brain):
    out = run_console(brain, ["/remember I'm vegetarian.", "/remember I live in Porto.", "/memory forget 1", "/memory"])
    assert 'Forgotten: "I\'m vegetarian."' in out
    assert "1. I live in Porto. (you pinned it)" in out
    out = run_console(brain, ["/memory clear", "/memory"])
    assert "Done: I forgot the 1 fact I kept about you." in out and "No facts about you here yet" in out


def test_console_memory_says_older_turns_are_kept_for_recall_when_no_summaries_are_written(tmp_path, tiny_model_dir):
    from tests.support.brain_server import running_brain

    with running_brain(tmp_path, tiny_model_dir, memory={"summaries": False}) as brain:
        out = run_console(brain, ["hello", "/memory"])
    assert "older messages are kept so that I can recall them" in out
    assert "Summary of earlier talk" not in out and "No summary of earlier talk yet" not in out
