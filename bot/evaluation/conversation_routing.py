"""Routing as a user meets it: by position in a conversation, on out-of-set chit-chat, and its calibration.

The held-out sets are built from splits that no training saw (the skills' ``test`` splits,
Chit-Chat's ``test`` conversations) by :mod:`bot.conversations`, with a fixed seed:

- ``first_turn``: each skill's test contexts as they are, and Chit-Chat histories (``none``);
- ``skill_after_chitchat``: each skill's test contexts after a Chit-Chat opening of 1-5 turns;
- ``chitchat_after_skill``: a Chit-Chat turn after a skill's test exchange (gold ``none``);
- ``out_of_set``: conversations of chatterbot-corpus categories that no skill and no manager
  ever trained or validated on (greetings, jokes, questions about the bot, ...), gold ``none``, each
  distinct history once;
- ``skill_after_skill``: each skill's test contexts after another skill's test exchange (the user
  changes the subject); not part of the calibration union, which stays the issue's four sets;
- ``skill_with_aside``: each skill's test contexts with a personal aside of the test split around the newest turn
  ("... my buddy and i have money on it"); not part of the calibration union either;
- ``follow_up``: each skill's multi-turn test contexts (a follow-up such as "i tried that
  already, still nothing" after the skill's reply), as they stand and after a Chit-Chat opening:
  the follow-up should stay on the skill. Its turns are also in the first two sets, so it is
  not part of the calibration union.

Calibration is measured on the union of the first four: the probability of the class chosen against
whether it was right, in 10 bins (expected calibration error, and the bins for the diagram).
"""
from __future__ import annotations

from manager import NONE, calibration_report
from skills.corpora import chatterbot_conversations

from .. import conversations
from ..manager_training import first_turn_data, split_examples

OUTSIDE_CATEGORIES = ("greetings", "conversations", "gossip", "humor", "food", "health", "money", "computers", "ai", "botprofile")
SETS = ("first_turn", "skill_after_chitchat", "chitchat_after_skill", "out_of_set")
CALIBRATION_SETS = SETS
SETS += ("skill_after_skill", "skill_with_aside", "follow_up")


def out_of_set_histories() -> list[list[str]]:
    """Every user turn (even position) of the outside categories' conversations, with the turns before it, each
    distinct history once: many conversations open alike ("stock market" opens eight), and a history counted
    eight times would weigh eight times in the figure."""
    out: dict[tuple[str, ...], None] = {}
    for conv in chatterbot_conversations(list(OUTSIDE_CATEGORIES)):
        out.update((tuple(conv.turns[: i + 1]), None) for i in range(0, len(conv.turns), 2))
    return [list(h) for h in out]


def routing_sets(bot, seed: int = 0, split: str = "test") -> dict[str, list[tuple[str, list[str]]]]:
    """``{set name: [(gold class, history), ...]}`` for the installed skills the manager knows, built from ``split``
    (``"valid"`` to choose a setting, ``"test"`` to report; the out-of-set chit-chat, an outside check, only with
    ``"test"``)."""
    examples = {k: v for k, v in split_examples(bot, split).items() if k in bot.manager.classes}
    first = [(name, h) for name, histories in first_turn_data(bot, split).items()
             if name in bot.manager.classes for h in histories]
    after_chat = [(name, h) for name, rows in examples.items()
                  for h in conversations.after_chitchat([e.context for e in rows], split, seed)]
    after_skill = [(NONE, h) for rows in examples.values() for h in conversations.chitchat_after_skill(rows, split, seed)]
    switch = [(name, h) for name, rows in examples.items()
              for h in conversations.after_other_skills([e.context for e in rows],
                                                        [e for other, o in examples.items() if other != name for e in o],
                                                        split, seed)]
    aside = [(name, h) for name, rows in examples.items()
             for h in conversations.with_aside([e.context for e in rows], split, seed)]
    multi_turn = {name: [e.context for e in rows if len(e.context) >= 3] for name, rows in examples.items()}
    follow_up = [(name, h) for name, contexts in multi_turn.items()
                 for h in [*contexts, *conversations.after_chitchat(contexts, split, seed)]]
    return {"first_turn": first, "skill_after_chitchat": after_chat, "chitchat_after_skill": after_skill,
            "out_of_set": [(NONE, h) for h in out_of_set_histories()] if split == "test" else [],
            "skill_after_skill": switch,
            "skill_with_aside": aside, "follow_up": follow_up}


def conversation_routing(bot, seed: int = 0) -> dict:
    """Accuracy of each set (and its misroutes' destinations), and calibration over their union.

    Returns ``{"sets": {name: {"n", "accuracy", "routed": {class: count}}}, "calibration":
    calibration_report(...), "threshold": float, "temperature": float}``.
    """
    sets = routing_sets(bot, seed)
    out, confidences, correct = {}, [], []
    for name, rows in sets.items():
        decisions = bot.route_batch([h for _, h in rows]) if rows else []
        routed: dict[str, int] = {}
        hits = 0
        for (gold, _), d in zip(rows, decisions):
            chosen = d.skill or NONE
            routed[chosen] = routed.get(chosen, 0) + 1
            hits += chosen == gold
            if name in CALIBRATION_SETS:
                confidences.append(d.probability)
                correct.append(chosen == gold)
        out[name] = {"n": len(rows), "accuracy": hits / len(rows) if rows else 0.0, "routed": routed}
    return {"sets": out, "calibration": calibration_report(confidences, correct),
            "threshold": bot.manager.config.threshold, "temperature": bot.manager.config.temperature}
