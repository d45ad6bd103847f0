"""Reading and scoring a file of already-generated predictions.

``adapterbot eval --predictions FILE`` scores responses produced elsewhere.
FILE is JSONL, one object per line::

    {"context": ["turn", ...] | "turn", "prediction": "...", "reference": "...",
     "skill": "optional skill name"}

A scored file must be exact, so nothing is skipped: any bad line raises
``ValueError`` naming the file, the 1-based line number and the problem.
Blank (whitespace-only) lines are ignored; a file with no rows is an error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from .metrics import text_metrics

__all__ = ["PredictionRow", "read_predictions", "score_predictions"]


@dataclass(frozen=True)
class PredictionRow:
    """One scored example. ``context`` is always a list (a string becomes one turn)."""

    context: list[str]
    prediction: str
    reference: str
    skill: str | None = None
    line: int = 0  # 1-based line number in the source file (0 when built in code)


def _parse_row(obj: object) -> PredictionRow:
    """Validate one decoded JSON value; raise ValueError with the problem only."""
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    for key in ("context", "prediction", "reference"):
        if key not in obj:
            raise ValueError(f'missing field "{key}"')
    context = obj["context"]
    if isinstance(context, str):
        context = [context]
    elif isinstance(context, list):
        for i, turn in enumerate(context):
            if not isinstance(turn, str):
                raise ValueError(
                    f'field "context" must be a string or a list of strings; '
                    f"item {i} is {type(turn).__name__}"
                )
    else:
        raise ValueError(
            f'field "context" must be a string or a list of strings, '
            f"got {type(context).__name__}"
        )
    for key in ("prediction", "reference"):
        if not isinstance(obj[key], str):
            raise ValueError(f'field "{key}" must be a string, got {type(obj[key]).__name__}')
    skill = obj.get("skill")
    if skill is not None and not isinstance(skill, str):
        raise ValueError(f'field "skill" must be a string, got {type(skill).__name__}')
    if skill is not None and not skill.strip():
        raise ValueError('field "skill" must not be empty')
    return PredictionRow(
        context=list(context),
        prediction=obj["prediction"],
        reference=obj["reference"],
        skill=skill,
    )


def read_predictions(path: str | Path) -> list[PredictionRow]:
    """Read a predictions JSONL file into :class:`PredictionRow` objects.

    Raises ``ValueError("FILE, line N: problem")`` on invalid UTF-8, invalid
    JSON, a value that is not an object, a missing field or a wrong-typed
    field; and ``ValueError`` when the file holds no rows. A missing file
    raises ``FileNotFoundError``. A ``"skill": null`` is the same as no skill.
    """
    path = Path(path)
    data = path.read_bytes()
    rows: list[PredictionRow] = []
    for lineno, raw in enumerate(data.split(b"\n"), start=1):
        if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):  # UTF-8 BOM
            raw = raw[3:]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(
                f"{path}, line {lineno}: not valid UTF-8 (byte {exc.start}: {exc.reason})"
            ) from None
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"{path}, line {lineno}: invalid JSON ({exc.msg} at column {exc.colno})"
            ) from None
        try:
            row = _parse_row(obj)
        except ValueError as exc:
            raise ValueError(f"{path}, line {lineno}: {exc}") from None
        rows.append(
            PredictionRow(row.context, row.prediction, row.reference, row.skill, lineno)
        )
    if not rows:
        raise ValueError(f"{path}: no predictions (the file is empty)")
    return rows


def _group_metrics(rows: list[PredictionRow]) -> dict:
    out: dict = {"n": len(rows)}
    out.update(text_metrics([r.prediction for r in rows], [r.reference for r in rows]))
    return out


def score_predictions(rows: Iterable[PredictionRow]) -> dict:
    """Score rows: ``{"all": {...}, "skills": {skill: {...}}}``.

    Each group is ``{"n": int}`` plus :func:`bot.evaluation.metrics.text_metrics`
    (``bleu`` 0-100, ``f1``, ``rougeL``, ``distinct1``, ``distinct2``, ``length``).
    Rows without a skill count only towards ``"all"``; ``"skills"`` is sorted by
    name. Raises ``ValueError`` when there are no rows.
    """
    rows = list(rows)
    if not rows:
        raise ValueError("score_predictions: no rows to score")
    by_skill: dict[str, list[PredictionRow]] = {}
    for row in rows:
        if row.skill is not None:
            by_skill.setdefault(row.skill, []).append(row)
    return {
        "all": _group_metrics(rows),
        "skills": {name: _group_metrics(by_skill[name]) for name in sorted(by_skill)},
    }
