"""Adapter-Bot: one frozen DialoGPT-style backbone, a residual adapter per skill, a dialogue manager.

One turn: ``AdapterBot.respond(history)`` asks the manager which skill should answer
(``manager/``), fetches that skill's knowledge passage if it retrieves (``skills/``),
formats the context (``bot.dialogue``) and generates with the skill's adapter routed in
(``bot.adapter``, ``bot.generation``).
"""
from __future__ import annotations

__all__ = ["AdapterBot", "Reply"]


def _check_sibling_packages() -> None:
    """Fail clearly when a folder in the working directory hides ``skills`` or ``manager``.

    An editable install finds its packages after the working directory, where a plain folder
    named ``skills`` (a user's own skills, say) becomes an empty namespace package.
    """
    import importlib

    for package in ("skills", "manager"):
        module = importlib.import_module(package)
        if getattr(module, "__file__", None) is None:
            raise ImportError(f"the folder {next(iter(module.__path__))} hides Adapter-Bot's {package!r} package; "
                              "run Python from another folder, or rename that one")


def __getattr__(name: str):
    # Lazy, so that ``bot.adapter`` or ``bot.evaluation.metrics`` import without the whole stack.
    if name in __all__:
        _check_sibling_packages()
        from . import chatbot

        globals().update({n: getattr(chatbot, n) for n in __all__})  # checked once: later lookups skip this hook
        return globals()[name]
    raise AttributeError(f"module 'bot' has no attribute {name!r}")
