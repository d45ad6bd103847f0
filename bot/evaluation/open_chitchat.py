"""Open chit-chat as a user meets it: the bare backbone's replies to messages no training saw.

The messages are first turns of the chatterbot categories kept out of every training set
(greetings, jokes, questions about the bot; :func:`~bot.evaluation.conversation_routing.out_of_set_histories`),
drawn with a fixed seed. Each gets the default reply (``bot.chatbot.BARE_DECODING``: the likeliest of
several samples) beside the greedy reply the bare backbone gave before sample-and-rank. There is no
automatic judge of small talk here: the report prints them to be read.
"""
from __future__ import annotations

import random

from .conversation_routing import out_of_set_histories

SAMPLES = 12
GREEDY = {"do_sample": False, "max_new_tokens": 60, "repetition_penalty": 1.2, "no_repeat_ngram_size": 3}
"""The bare backbone's decoding before sample-and-rank, for comparison."""


def chitchat_samples(bot, seed: int = 0, n: int = SAMPLES) -> list[dict]:
    """``[{"message", "greedy", "default"}]`` for ``n`` distinct out-of-set first messages drawn with ``seed``."""
    messages = sorted({h[0].strip() for h in out_of_set_histories() if len(h) == 1})
    picked = random.Random(seed).sample(messages, min(n, len(messages)))
    return [{"message": m, "greedy": bot.respond([m], None, **GREEDY).text, "default": bot.respond([m], None, seed=seed + i).text}
            for i, m in enumerate(picked)]
