"""The one type checker of the project's settings dataclasses: ``skill.yaml``'s sections, ``adapter_config.json``
and ``manager_config.json``.

A field's value is checked against its annotation (``bool``, ``int``, ``float``, ``str``, ``X | None``,
``list[str]``, ``dict[str, int]``, ``dict[str, Any]`` or a nested dataclass); a bad value raises a
:class:`FieldError` that names the field (dotted inside nested dataclasses) and, once the caller adds
it, the file. ``manager/`` and ``bot/`` import it (``manager/`` takes only this and ``skills.files``
from ``skills/``).
"""
from __future__ import annotations

import math
import re
import typing
from dataclasses import MISSING, fields, is_dataclass
from pathlib import Path
from typing import Any, Callable

# PyYAML reads YAML 1.1, where ``1e-3`` (no dot) is a string, not a float.
_FLOAT_RE = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


class FieldError(ValueError):
    """A field of a settings dataclass is missing, unknown or holds a bad value.

    Attributes:
        field: dotted name of the field, e.g. ``decoding.top_p``.
        problem: what is wrong, e.g. ``must be a number in (0, 1], got 1.5``.
        file: the file the value came from, if any.
    """

    what = ""  # what the fields belong to, as the message says it, e.g. "adapter config "

    def __init__(self, field: str, problem: str, file: Path | None = None) -> None:
        self.field, self.problem, self.file = field, problem, file
        where = f"{file}: " if file is not None else ""
        super().__init__(f"{where}{self.what}field {field!r} {problem}")

    def __reduce__(self) -> tuple:
        return type(self), (self.field, self.problem, self.file)

    def within(self, prefix: str) -> "FieldError":
        return type(self)(f"{prefix}.{self.field}", self.problem, self.file)

    def in_file(self, file: Path) -> "FieldError":
        return type(self)(self.field, self.problem, file)


def _is_float(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


_SCALARS: dict[Any, tuple[Callable[[Any], bool], str]] = {
    bool: (lambda v: isinstance(v, bool), "true or false"),
    int: (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    float: (_is_float, "a number"),
    str: (lambda v: isinstance(v, str), "a string"),
}


def _describe(hint: Any) -> str:
    if hint in _SCALARS:
        return _SCALARS[hint][1]
    if typing.get_origin(hint) is list:
        return "a list of strings"
    if typing.get_origin(hint) is dict and typing.get_args(hint)[1] is int:
        return "a mapping of names to integers"
    return "a mapping"


def typed(value: Any, hint: Any, name: str, error: type[FieldError] = FieldError, lenient: bool = False) -> Any:
    """``value`` checked against the type ``hint`` of field ``name`` (nested mappings become dataclasses).

    An ``int`` passes as a ``float`` (and becomes one). With ``lenient`` (YAML, UI sliders), a numeric
    string passes as a ``float`` and an integral float as an ``int``.
    """
    args = typing.get_args(hint)
    if type(None) in args:  # ``X | None``
        inner = next(a for a in args if a is not type(None))
        return None if value is None else typed(value, inner, name, error, lenient)
    if lenient and hint is float and isinstance(value, str) and _FLOAT_RE.match(value.strip()):
        value = float(value)
    if lenient and hint is int and isinstance(value, float) and value.is_integer():  # UI sliders and YAML may write 8.0
        value = int(value)
    if is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if isinstance(value, dict):
            try:
                return from_mapping(hint, value, error)
            except FieldError as e:
                raise e.within(name) from None
    elif hint in _SCALARS:
        if _SCALARS[hint][0](value):
            return float(value) if hint is float else value
    elif typing.get_origin(hint) is list:
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
    elif typing.get_origin(hint) is dict:
        key_ok = isinstance(value, dict) and all(isinstance(k, str) for k in value)
        value_check = _SCALARS[args[1]][0] if args and args[1] in _SCALARS else (lambda v: True)
        if key_ok and all(value_check(v) for v in value.values()):
            return dict(value)
    raise error(name, f"must be {_describe(hint)}, got {value!r}")


def check_types(obj: Any, error: type[FieldError] = FieldError, lenient: bool = False) -> None:
    """Check (and normalise in place) every field of the dataclass instance ``obj``; call it from ``__post_init__``."""
    hints = typing.get_type_hints(type(obj))
    for f in fields(obj):
        setattr(obj, f.name, typed(getattr(obj, f.name), hints[f.name], f.name, error, lenient))


def from_mapping(cls: type, data: dict, error: type[FieldError] = FieldError) -> Any:
    """``cls(**data)``, refusing unknown and missing required fields with ``error`` naming the first one."""
    known = [f.name for f in fields(cls)]
    unknown = [k for k in data if k not in known]
    if unknown:
        others = f" (and so are {', '.join(map(repr, unknown[1:]))})" if unknown[1:] else ""
        raise error(str(unknown[0]), f"is unknown{others}; known fields: {', '.join(known)}")
    for f in fields(cls):
        if f.default is MISSING and f.default_factory is MISSING and f.name not in data:
            raise error(f.name, "is required but missing")
    return cls(**data)
