"""Adapter-Bot: one frozen DialoGPT-style backbone, a residual adapter per skill, a dialogue manager.

One turn: ``AdapterBot.respond(history)`` asks the manager which skill should answer
(``manager/``), fetches that skill's knowledge passage if it retrieves (``skills/``),
formats the context (``bot.dialogue``) and generates with the skill's adapter routed in
(``bot.adapter``, ``bot.generation``).
"""
from __future__ import annotations

__all__ = ["AdapterBot", "Reply"]


def __getattr__(name: str):
    # Lazy, so that ``bot.adapter`` or ``bot.evaluation.metrics`` import without the whole stack.
    if name in __all__:
        from . import chatbot

        return getattr(chatbot, name)
    raise AttributeError(f"module 'bot' has no attribute {name!r}")
