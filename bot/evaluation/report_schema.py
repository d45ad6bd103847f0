"""The report's schema: what ``report.json`` must hold (see :mod:`bot.evaluation.report`), checked and normalised."""
from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

SKILL_KEYS = ("n", "ppl", "ppl_backbone", "bleu", "f1", "rougeL", "distinct1", "distinct2")
ROUTING_KEYS = ("accuracy", "labels", "confusion", "per_skill")
PER_SKILL_KEYS = ("precision", "recall", "f1")
TEXT_KEYS = ("bleu", "f1", "rougeL", "distinct1", "distinct2")
ROUTING_ORDER = ("backbone", "oracle", "auto")
_FORGETTING_RESERVED = ("order", "metric")


def _as_float(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        # numpy / torch scalars
        if hasattr(value, "item"):
            return _as_float(value.item(), where)
        raise ValueError(f"report: {where} must be a number, got {type(value).__name__}")
    value = float(value)
    return value if math.isfinite(value) else None


def _as_int(value: Any, where: str) -> int:
    if hasattr(value, "item") and not isinstance(value, (int, float)):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise ValueError(f"report: {where} must be an integer, got {value!r}")
    return int(value)


def _require(d: Any, keys: tuple[str, ...], where: str) -> None:
    if not isinstance(d, dict):
        raise ValueError(f"report: {where} must be a dict, got {type(d).__name__}")
    missing = [k for k in keys if k not in d]
    if missing:
        raise ValueError(f"report: {where} is missing {', '.join(repr(k) for k in missing)}")


def validate_report(report: dict) -> dict:
    """Check ``report`` against the docs/DESIGN.md contract; return a normalised deep copy.

    Required keys must be present (extra keys inside a skill or routing entry are
    kept); ``n`` and confusion counts become ``int``, metrics become ``float`` (or
    ``None`` when missing/non-finite), labels become ``str``. The confusion matrix
    must be ``len(labels)`` x ``len(labels)``. Raises ``ValueError`` naming the key.
    """
    _require(report, ("skills", "routing"), "top level")
    out = copy.deepcopy(report)

    skills = out["skills"]
    if not isinstance(skills, dict):
        raise ValueError("report: 'skills' must be a dict of skill name -> metrics")
    for name, entry in skills.items():
        where = f"skills[{name!r}]"
        _require(entry, SKILL_KEYS, where)
        entry["n"] = _as_int(entry["n"], f"{where}['n']")
        for key in SKILL_KEYS[1:]:
            entry[key] = _as_float(entry[key], f"{where}[{key!r}]")

    routing = out["routing"]
    _require(routing, ROUTING_KEYS, "routing")
    routing["accuracy"] = _as_float(routing["accuracy"], "routing['accuracy']")
    if not isinstance(routing["labels"], (list, tuple)):
        raise ValueError("report: routing['labels'] must be a list")
    labels = [str(x) for x in routing["labels"]]
    routing["labels"] = labels
    confusion = routing["confusion"]
    if hasattr(confusion, "tolist"):
        confusion = confusion.tolist()
    if not isinstance(confusion, (list, tuple)) or len(confusion) != len(labels):
        raise ValueError(
            f"report: routing['confusion'] must have one row per label ({len(labels)})"
        )
    rows = []
    for i, row in enumerate(confusion):
        if not isinstance(row, (list, tuple)) or len(row) != len(labels):
            raise ValueError(
                f"report: routing['confusion'][{i}] must have {len(labels)} columns"
            )
        rows.append([_as_int(c, f"routing['confusion'][{i}]") for c in row])
    routing["confusion"] = rows
    per_skill = routing["per_skill"]
    if not isinstance(per_skill, dict):
        raise ValueError("report: routing['per_skill'] must be a dict")
    for name, entry in per_skill.items():
        where = f"routing['per_skill'][{name!r}]"
        _require(entry, PER_SKILL_KEYS, where)
        for key in PER_SKILL_KEYS:
            entry[key] = _as_float(entry[key], f"{where}[{key!r}]")
    return out


def _validate_forgetting(forgetting: dict) -> tuple[list[str], str, dict[str, dict[str, list]]]:
    _require(forgetting, ("order",), "forgetting")
    order = [str(s) for s in forgetting["order"]]
    if not order:
        raise ValueError("report: forgetting['order'] is empty")
    metric = str(forgetting.get("metric", "ppl"))
    methods: dict[str, dict[str, list]] = {}
    for method, per_skill in forgetting.items():
        if method in _FORGETTING_RESERVED:
            continue
        if not isinstance(per_skill, dict):
            raise ValueError(f"report: forgetting[{method!r}] must be a dict skill -> list")
        methods[method] = {}
        for skill, values in per_skill.items():
            where = f"forgetting[{method!r}][{skill!r}]"
            if not isinstance(values, (list, tuple)) or len(values) != len(order):
                raise ValueError(f"report: {where} must be a list of {len(order)} values")
            methods[method][skill] = [_as_float(v, where) for v in values]
    if not methods:
        raise ValueError("report: forgetting has no method (e.g. 'sequential', 'adapters')")
    return order, metric, methods


def _jsonable(obj: Any) -> Any:
    """Plain-JSON copy: numpy/torch scalars and arrays unwrapped, non-finite floats -> None."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):
        return _jsonable(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
