"""Readers for the two dialogue corpora that install from PyPI and need no network.

* ``chitchat-dataset``: 7,168 open-domain conversations (BYU PCC lab, MIT licence).
  It trains the bundled backbone; its held-out conversations give the dialogue
  manager its ``none`` (open chit-chat) contexts.
* ``chatterbot-corpus``: short English conversations in YAML files, one file per
  category. The bundled skills are trained on a few of its categories.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

Split = Literal["train", "valid", "test"]


def split_of(key: str, valid_pct: int = 3, test_pct: int = 3) -> Split:
    """Deterministic split of a whole item (conversation) by the SHA-1 of its key.

    The same key always lands in the same split, on every machine and Python
    version, so the held-out conversations never leak into training.
    """
    bucket = int(hashlib.sha1(key.encode("utf-8")).hexdigest(), 16) % 100
    if bucket < test_pct:
        return "test"
    if bucket < test_pct + valid_pct:
        return "valid"
    return "train"


@dataclass(frozen=True)
class Conversation:
    """One conversation: an id and its turns, oldest first (a turn is one speaker's messages)."""

    id: str
    turns: list[str]


def chitchat_conversations(split: Split | None = None) -> list[Conversation]:
    """Conversations of ``chitchat-dataset``, consecutive messages of one speaker joined into a turn.

    Args:
        split: keep only the conversations of this split (see :func:`split_of`); ``None`` keeps all.
    """
    import chitchat_dataset

    path = Path(chitchat_dataset.__file__).with_name("dataset.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    out = []
    for conv_id in sorted(data):
        if split is not None and split_of(conv_id) != split:
            continue
        turns = [" ".join(u["text"].strip() for u in message).strip() for message in data[conv_id]["messages"]]
        turns = [t for t in turns if t]
        if len(turns) >= 2:
            out.append(Conversation(conv_id, turns))
    return out


def chatterbot_dir() -> Path:
    """Folder of the English YAML files of ``chatterbot-corpus``."""
    import chatterbot_corpus

    return Path(chatterbot_corpus.__file__).parent / "data" / "english"


def chatterbot_conversations(categories: list[str]) -> list[Conversation]:
    """Conversations of the named ``chatterbot-corpus`` categories (file stems, e.g. ``"emotion"``).

    Exact duplicate conversations (the corpus repeats some) are kept once.
    """
    out, seen = [], set()
    for category in categories:
        path = chatterbot_dir() / f"{category}.yml"
        if not path.exists():
            known = sorted(p.stem for p in chatterbot_dir().glob("*.yml"))
            raise ValueError(f"chatterbot-corpus has no category {category!r}; known: {', '.join(known)}")
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for i, conv in enumerate(doc.get("conversations") or []):
            if not isinstance(conv, list):  # a mis-indented entry parses as one string: not a conversation
                continue
            turns = [str(t).strip() for t in conv if t is not None and str(t).strip()]
            key = "\x1f".join(turns)
            if len(turns) >= 2 and key not in seen:
                seen.add(key)
                out.append(Conversation(f"{category}:{i}", turns))
    return out


# Someone sharing something bad in their own voice, and someone meeting it with sympathy: the
# filter that mines the empathetic skill's exchanges from Chit-Chat (see the skill's card).
BAD_NEWS = re.compile(
    r"\b(i (just )?(failed|flunked|bombed)|failed my|lost my (job|dog|cat|mom|dad|mother|father|grand\w+|friend|wallet)"
    r"|passed away|(dog|cat|grandpa|grandma|grandfather|grandmother|mom|dad|friend|uncle|aunt) died|funeral"
    r"|i'?m (so |really |very |feeling )?(sad|depressed|stressed|upset|worried|anxious|lonely|heartbroken|devastated|miserable)"
    r"|i am (so |really |very |feeling )?(sad|depressed|stressed|upset|worried|anxious|lonely|heartbroken|miserable)"
    r"|i feel (so |really |very )?(sad|awful|terrible|lonely|down|horrible|depressed|hopeless)"
    r"|broke up|dumped me|got fired|laid off|in the hospital|diagnosed|cancer"
    r"|(bad|rough|terrible|awful|horrible) (day|week)|miss (him|her|them) so)\b", re.IGNORECASE)
SYMPATHY = re.compile(
    r"^\W*(oh no|oh,? i'?m (so )?sorry|i'?m (so |really |very )?sorry|so sorry|sorry to hear|that'?s (terrible|awful|horrible|"
    r"rough|tough|so sad|sad|too bad|hard)|that sucks|oh (wow|man|gosh)|aw+|my condolences|that must)", re.IGNORECASE)


def shares_bad_news(turn: str) -> bool:
    """Whether a turn shares something bad in the speaker's own voice (the :data:`BAD_NEWS` filter)."""
    return BAD_NEWS.search(turn) is not None


def bad_news_exchanges(max_reply_words: int = 30) -> list[tuple[Conversation, int]]:
    """``(conversation, i)`` for every Chit-Chat turn ``i`` that shares bad news and whose next turn
    opens with sympathy (:data:`SYMPATHY`) in at most ``max_reply_words`` words."""
    out = []
    for conv in chitchat_conversations():
        for i in range(len(conv.turns) - 1):
            reply = conv.turns[i + 1]
            if shares_bad_news(conv.turns[i][-300:]) and SYMPATHY.search(reply) and len(reply.split()) <= max_reply_words:
                out.append((conv, i))
    return out
