"""One turn end to end on the tiny backbone: routing, forcing, history limits."""
from __future__ import annotations

import pytest

from bot.dialogue import DialogueError


def test_auto_routes_and_reports_scores(tiny_bot):
    r = tiny_bot.respond(["my printer will not print"], skill="auto")
    assert isinstance(r.text, str)
    assert set(r.scores) == {"none", "alpha", "beta"}
    assert abs(sum(r.scores.values()) - 1) < 1e-4
    assert r.confidence == pytest.approx(r.scores[r.skill or "none"])


def test_forced_skill_and_forced_bare(tiny_bot):
    assert tiny_bot.respond(["hello"], skill="beta").skill == "beta"
    r = tiny_bot.respond(["my printer will not print"], skill=None)
    assert r.skill is None and r.confidence is None


def test_unknown_skill_names_installed_ones(tiny_bot):
    with pytest.raises(ValueError, match="alpha, beta"):
        tiny_bot.respond(["hi"], skill="gamma")


@pytest.mark.parametrize("history", [[""], ["   \n\t"], []])
def test_empty_message_is_a_clear_error(tiny_bot, history):
    with pytest.raises(DialogueError, match="empty"):
        tiny_bot.respond(history)


def test_history_longer_than_the_window_still_gets_a_reply(tiny_bot):
    history = [f"turn {i} about computers and feelings " * 5 for i in range(200)] + ["x" * 20000]
    r = tiny_bot.respond(history, skill="alpha", max_new_tokens=8)
    assert isinstance(r.text, str)


def test_stream_yields_growing_text_ending_in_the_full_reply(tiny_bot):
    parts = list(tiny_bot.stream(["i feel sad today"], skill="beta", max_new_tokens=12))
    assert parts and parts[-1].skill == "beta"
    texts = [p.text for p in parts]
    assert all(texts[i + 1].startswith(texts[i]) for i in range(len(texts) - 1))
    assert parts[-1].text == tiny_bot.respond(["i feel sad today"], skill="beta", max_new_tokens=12).text
