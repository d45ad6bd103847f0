"""The Adapter-Bot web chat (Gradio): ``build_app(bot)`` and ``launch(bot, host, port, ...)``."""
from __future__ import annotations

__all__ = ["build_app", "launch"]


def __getattr__(name: str):
    # Lazy, so that ``import ui`` does not pull in Gradio until the app is wanted.
    if name in __all__:
        from . import app

        return getattr(app, name)
    raise AttributeError(f"module 'ui' has no attribute {name!r}")
