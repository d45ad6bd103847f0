"""How common each word is in casual chat: document frequencies over the Chit-Chat corpus's messages.

A chatty message carries words that no passage needs to cover ("already cleaned them", "is that bad??",
"someone told me"). Retrieval's coverage (:func:`skills.knowledge.coverage`) weighs each word of a message
by its rarity in the knowledge file and by :func:`topicality`, its rarity in casual chat, so those words
count for less than "airpod" or "peru". The table ships in ``skills/sources/chat_words.json``; rebuild it
with ``python -m bot.recipes.chat_words``.
"""
from __future__ import annotations

import functools
import json
import math
from pathlib import Path

TABLE = Path(__file__).parent / "sources" / "chat_words.json"
# A word in fewer messages than this weighs fully (its chat IDF is above TOPICAL: 135,574 messages / e^8 = 45),
# so the table leaves it out.
MIN_DF = 40
# Chat IDF (ln(messages / (df + 1))) at and above which a word weighs fully, and the power of the ratio below it:
# chosen on the knowledge skills' train and validation questions (docs/DESIGN.md, "Knowledge").
TOPICAL = 8.0
POWER = 2.0


@functools.cache
def _table() -> tuple[int, dict[str, int]]:
    table = json.loads(TABLE.read_text(encoding="utf-8"))
    return table["messages"], table["df"]


def topicality(word: str) -> float:
    """How much ``word`` (a stem, as :func:`skills.knowledge.content_words` gives it) says about a message's topic,
    in ``(0, 1]``: 1 for words rare in casual chat, less for common ones ("one" 0.12, "already" 0.37)."""
    n, df = _table()
    return min(1.0, math.log(n / (df.get(word, 0) + 1)) / TOPICAL) ** POWER
