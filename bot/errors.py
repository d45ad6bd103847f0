"""How an error is shown to a person: one line, the same in the web UI, the CLI's tools and the load test."""
from __future__ import annotations

import traceback
from pathlib import Path


def one_line(e: BaseException, limit: int = 400, where: bool = False) -> str:
    """The first line of ``e``'s message, at most ``limit`` characters.

    Without ``where``: the message alone, or the exception's type when it has none. With
    ``where``: ``"Type: message (at file:line in function)"``, the place being the innermost
    frame raising it.
    """
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    if not where:
        return (text or type(e).__name__)[:limit]
    frames = traceback.extract_tb(e.__traceback__)
    place = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno} in {frames[-1].name})" if frames else ""
    return f"{type(e).__name__}: {text}{place}"[:limit]
