"""The user trial's transcript: every message answered in Auto mode, conversations growing, routes counted."""
from __future__ import annotations

import json

from bot.evaluation.user_trial import main, run_trial


def test_every_message_is_answered_and_its_route_counted(tiny_bot):
    messages = {"greetings": ["hello there", "good morning"], "other": ["what is this"],
                "conversations": [["hi", "tell me more", "and then?"]], "expected": {"greetings": None}}
    lines, tally = run_trial(tiny_bot, messages)
    routes = [tiny_bot.respond([m]).skill for m in messages["greetings"]]
    assert tally == {"greetings": [sum(r is None for r in routes), 2]}
    for message in ["hello there", "good morning", "what is this"]:
        assert sum(line.startswith(f"- {message} -> [") for line in lines) == 1
    assert [line.split(" -> ")[0] for line in lines if line.startswith("- U:")] == [
        "- U: hi", "- U: tell me more", "- U: and then?"]


def test_conversation_skill_turns_are_counted_against_what_each_turn_should_reach(tiny_bot):
    conversation = ["hi", "my printer will not print", "i feel sad today"]
    messages = {"conversations": [conversation], "conversation_expected": [[None, "alpha", "alpha"]]}
    lines, tally = run_trial(tiny_bot, messages)
    turns = [line for line in lines if line.startswith("- U:")]
    reached = ["B: [alpha " in line for line in turns]
    assert tally["conversation skill turns"] == [sum(reached[1:]), 2]
    assert ["(wanted alpha)" in line for line in turns] == [False, *[not r for r in reached[1:]]]
    assert reached[1] and not reached[2]  # the toy manager routes both ways: both counts are exercised


def test_the_command_writes_the_transcript(tiny_bot, tmp_path, monkeypatch):
    from bot import AdapterBot

    monkeypatch.setattr(AdapterBot, "from_pretrained", classmethod(lambda cls, *a, **k: tiny_bot))
    path = tmp_path / "messages.json"
    path.write_text(json.dumps({"chat": ["hello"], "expected": {"chat": None}}), encoding="utf-8")
    main([str(path), "--out", str(tmp_path / "trial.md")])
    text = (tmp_path / "trial.md").read_text(encoding="utf-8")
    assert "| chat |" in text and "- hello -> [" in text
