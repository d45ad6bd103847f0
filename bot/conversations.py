"""Routing histories shaped like real conversations, for training and measuring the dialogue manager.

A user rarely opens with the skill's question: it comes after a greeting or some small talk,
and small talk comes back after a skill's exchange. So every class sees histories of every
length, and the history's length cannot predict its class:

- ``none``: Chit-Chat histories ending at any turn, the first included (greetings), 1 to
  ``MAX_TURNS`` turns long;
- a skill: each of its contexts as it is, and after a Chit-Chat opening of 1 to ``MAX_TURNS - 1`` turns;
- ``none`` again: a Chit-Chat turn after a skill's whole exchange (context, reply);
- a skill after another skill's whole exchange: the user changes the subject ("thanks. anyway,
  my wifi keeps dropping" after a bereavement), and the newest message decides;
- ``none`` also: messages people send a chatbot that no skill answers (greetings, thanks, jokes,
  questions about the bot: ``skills/sources/open_chitchat.jsonl``, written for the project), as
  they stand and after a Chit-Chat opening; 75% ``train``, 25% ``valid``, none in ``test``.

Which Chit-Chat split feeds which use: ``train`` for the manager's training memory, ``valid``
for its calibration memory and threshold, ``test`` for ``adapterbot eval``. Everything is drawn
from a seeded ``random.Random``, so the same inputs give the same histories on every machine.
"""
from __future__ import annotations

import functools
import json
import random
from pathlib import Path
from typing import Sequence

from skills import BUNDLED_DIR
from skills.corpora import Conversation, Split, chitchat_conversations, shares_bad_news, split_of
from skills.data import Example

MAX_TURNS = 6
OPEN_CHITCHAT = BUNDLED_DIR.parent / "sources" / "open_chitchat.jsonl"
ASIDES = BUNDLED_DIR.parent / "sources" / "asides.jsonl"


@functools.cache
def _chitchat(split: Split) -> tuple[Conversation, ...]:
    return tuple(chitchat_conversations(split))


def chitchat_histories(split: Split, n: int, seed: int = 0) -> list[list[str]]:
    """``n`` ``none`` histories from Chit-Chat's ``split``: a random turn with 0 to ``MAX_TURNS - 1`` turns before it.

    A quarter end at a conversation's first turn (openings and greetings). Turns where someone
    shares bad news (:func:`~skills.corpora.shares_bad_news`) are left out: they are the
    empathetic skill's, not open chit-chat's.
    """
    rng = random.Random(f"chitchat-histories:{split}:{seed}")
    conversations = _chitchat(split)
    out: list[list[str]] = []
    while len(out) < n:
        turns = rng.choice(conversations).turns
        end = 0 if rng.random() < 0.25 else rng.randrange(len(turns))
        if shares_bad_news(turns[end]):
            continue
        out.append(turns[max(0, end - rng.randrange(MAX_TURNS)) : end + 1])
    return out


def opening(split: Split, rng: random.Random) -> list[str]:
    """The first 1 to ``MAX_TURNS - 1`` turns of a random Chit-Chat conversation of ``split``."""
    turns = rng.choice(_chitchat(split)).turns
    return turns[: rng.randint(1, min(MAX_TURNS - 1, len(turns)))]


def after_chitchat(contexts: Sequence[list[str]], split: Split, seed: int = 0) -> list[list[str]]:
    """Each context after a Chit-Chat opening of ``split`` (its newest turns stay the skill's)."""
    rng = random.Random(f"after-chitchat:{split}:{seed}")
    return [opening(split, rng) + list(c) for c in contexts]


def skill_histories(contexts: Sequence[list[str]], split: Split, seed: int = 0) -> list[list[str]]:
    """A skill's routing histories: each context as it is, then each after a Chit-Chat opening."""
    return [list(c) for c in contexts] + after_chitchat(contexts, split, seed)


@functools.cache
def _asides(split: Split, path: Path = ASIDES) -> tuple[tuple[str, str], ...]:
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    return tuple((r["aside"], r["place"]) for r in rows if split_of(r["aside"], valid_pct=20, test_pct=20) == split)


def with_aside(contexts: Sequence[list[str]], split: Split, seed: int = 0) -> list[list[str]]:
    """Each context with a personal aside of ``split`` before or after its newest turn ("who won the very first
    world cup? my buddy and i have money on it"): people wrap a request in their own life, and the manager sent
    that question to the empathetic skill at 0.98 (alone: trivia at 0.99). The asides
    (``skills/sources/asides.jsonl``, written for the project) are split 60/20/20 by hash. Only the test ones are
    used, to measure (``adapterbot eval``'s ``skill_with_aside``): a manager trained on the others as well routed
    worse everywhere else (docs/DESIGN.md, the dialogue manager)."""
    rng = random.Random(f"with-aside:{split}:{seed}")
    asides = _asides(split)
    out = []
    for context in contexts:
        aside, place = rng.choice(asides)
        newest = f"{aside} {context[-1]}" if place == "before" else f"{context[-1]} {aside}"
        out.append([*context[:-1], newest])
    return out


def chitchat_after_skill(examples: Sequence[Example], split: Split, seed: int = 0) -> list[list[str]]:
    """``none`` histories: a skill's exchange (context and reply), then a Chit-Chat turn of ``split``."""
    rng = random.Random(f"chitchat-after-skill:{split}:{seed}")
    tails = chitchat_histories(split, len(examples), seed)
    return [[*e.context, e.response, tail[rng.randrange(len(tail))]] for e, tail in zip(examples, tails)]


def after_other_skills(contexts: Sequence[list[str]], others: Sequence[Example], split: Split, seed: int = 0) -> list[list[str]]:
    """Each context after a random exchange (context, reply) of ``others``, other skills' examples of ``split``."""
    if not others:
        return []
    rng = random.Random(f"after-other-skills:{split}:{seed}")
    return [[*e.context, e.response, *c] for c in contexts for e in [rng.choice(others)]]


def open_chitchat(split: Split, path: Path = OPEN_CHITCHAT) -> list[list[str]]:
    """The written open chit-chat messages of ``split`` (by hash: 75% train, 25% valid, none test),
    each as it stands and after a Chit-Chat opening of the same split."""
    rows = [json.loads(line)["message"] for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    messages = [[m] for m in rows if split_of(m, valid_pct=25, test_pct=0) == split]
    return skill_histories(messages, split, seed=1)
