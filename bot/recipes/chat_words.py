"""Recipe: the table of how common each word is in casual chat (``skills/sources/chat_words.json``,
read by :func:`skills.chat_words.topicality`), from the Chit-Chat corpus's messages.

Run ``python -m bot.recipes.chat_words``.
"""
from __future__ import annotations

import json
from collections import Counter
from typing import Callable, Iterable

from skills.chat_words import MIN_DF, TABLE


def document_frequencies(texts: Iterable[str], words_of: Callable[[str], set[str]], min_df: int = MIN_DF) -> dict:
    """``{"messages": n, "df": {word: messages holding it}}`` over ``texts``, words in fewer than ``min_df`` left out."""
    df: Counter = Counter()
    n = 0
    for text in texts:
        df.update(words_of(text))
        n += 1
    return {"messages": n, "df": {w: c for w, c in sorted(df.items()) if c >= min_df}}


def main() -> None:
    from skills.corpora import chitchat_conversations
    from skills.files import atomic_write_text
    from skills.knowledge import content_words

    texts = [turn for conversation in chitchat_conversations() for turn in conversation.turns]
    table = document_frequencies(texts, content_words)
    atomic_write_text(TABLE, json.dumps(table, indent=0, ensure_ascii=False) + "\n")
    print(f"{TABLE}: {len(table['df'])} words over {table['messages']} messages")


if __name__ == "__main__":
    main()
