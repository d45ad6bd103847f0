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
