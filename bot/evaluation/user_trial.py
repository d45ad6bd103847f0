"""A user trial's transcript: fresh messages and conversations through Auto mode, as a new user sends them.

The messages file is JSON written by the person running the trial, before any reply is seen:

    {"distress": ["my grandma passed away this morning", ...], "tech": [...], ...,
     "conversations": [["hey there", "my computer keeps freezing", ...], ...],
     "expected": {"distress": "empathetic", "tech": "tech_support", "chitchat": null},
     "conversation_expected": [[null, "tech_support", "tech_support", ...], ...]}

Every kind but ``conversations``, ``expected`` and ``conversation_expected`` is a list of single
messages; ``expected`` maps a kind to the skill that should answer it (``null``: the bare backbone).
``conversation_expected``, optional, gives for each conversation the skill each turn should reach
(``null``: chit-chat); its skill turns are counted as the kind ``conversation skill turns``. A conversation sends the
growing history: the user's turns alternating with the bot's own replies. Replies use each route's
default decoding (the skills' greedy, the bare backbone's sample-and-rank), seeded by the turn's
number in the trial, so a rerun gives the same transcript.

The transcript counts the routes; whether a reply is good (on topic, fluent, correct or an honest
"I don't know") is for a person to judge, reading it.

Run ``python -m bot.evaluation.user_trial MESSAGES.json --out docs/reports/user_trial.md``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from tqdm import tqdm

OTHER_KEYS = ("conversations", "expected", "conversation_expected")
CONVERSATION_KIND = "conversation skill turns"


def _line(reply) -> str:
    route = reply.skill or "chit-chat"
    note = f"{route} {reply.confidence:.2f}" if reply.confidence is not None else route
    if reply.blend:
        note += " blend " + ", ".join(f"{k} {v:.2f}" for k, v in reply.blend.items())
    if reply.knowledge is not None:
        note += ", passage used" if reply.knowledge_used else ", passage not used"
    return f"[{note}] {reply.text}"


def run_trial(bot, messages: dict) -> tuple[list[str], dict]:
    """The transcript's lines and the route tally ``{kind: [routed right, n]}`` of ``messages``."""
    expected = messages.get("expected", {})
    kinds = [k for k in messages if k not in OTHER_KEYS]
    total = sum(len(messages[k]) for k in kinds) + sum(len(c) for c in messages.get("conversations", []))
    bar = tqdm(total=total, desc="user trial", unit="turn")
    lines, tally = [], {}
    turn = 0
    for kind in kinds:
        lines.append(f"\n## {kind}\n")
        right = 0
        for message in messages[kind]:
            reply = bot.respond([message], seed=turn)
            turn += 1
            right += kind in expected and reply.skill == expected[kind]
            lines.append(f"- {message} -> {_line(reply)}")
            bar.update(1)
        if kind in expected:
            tally[kind] = [right, len(messages[kind])]
    conversations = messages.get("conversations", [])
    wanted = messages.get("conversation_expected") or [[None] * len(c) for c in conversations]
    if [len(w) for w in wanted] != [len(c) for c in conversations]:
        raise ValueError("conversation_expected: needs one list per conversation, one entry per turn")
    reached = skill_turns = 0
    for i, (conversation, skills) in enumerate(zip(conversations, wanted), 1):
        lines.append(f"\n## conversation {i}\n")
        history: list[str] = []
        for message, skill in zip(conversation, skills):
            history.append(message)
            reply = bot.respond(history, seed=turn)
            turn += 1
            history.append(reply.text)
            skill_turns += skill is not None
            reached += skill is not None and reply.skill == skill
            mark = "" if skill is None else " (wanted " + skill + ")" if reply.skill != skill else ""
            lines.append(f"- U: {message} -> B: {_line(reply)}{mark}")
            bar.update(1)
    if skill_turns:
        tally[CONVERSATION_KIND] = [reached, skill_turns]
    bar.close()
    return lines, tally


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("messages", type=Path, help="the trial's messages (JSON, see the module's help)")
    p.add_argument("--out", type=Path, required=True, help="the transcript (Markdown) to write")
    p.add_argument("--skills-dir", type=Path, default=None, help="default: the bundled skills")
    args = p.parse_args(argv)

    from bot import AdapterBot
    from skills.files import atomic_write_text

    bot = AdapterBot.from_pretrained(None, args.skills_dir)
    lines, tally = run_trial(bot, json.loads(args.messages.read_text(encoding="utf-8")))
    head = ["# User trial transcript", "", f"Messages: `{args.messages.name}`; Auto mode, each route's default decoding seeded by the turn's number, bundled backbone.", "",
            "| kind | routed right |", "|---|---|"] + [f"| {k} | {r}/{n} |" for k, (r, n) in tally.items()]
    atomic_write_text(args.out, "\n".join(head + lines) + "\n")
    print("\n".join(head + lines))


if __name__ == "__main__":
    main()
