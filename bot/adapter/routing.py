"""Routing as data: which skill (or weighted mix of skills) each batch row uses, for one call.

A route is given with the call (``model(..., route=...)``, ``model.generate(..., route=...)`` or
``with model.route(...)``) and becomes a :class:`RoutePlan`. The plan is held in a
:class:`~contextvars.ContextVar`, so it belongs to the thread (or asyncio task) that made the call:
two threads generating at once on different skills never see each other's route, and no lock is
held. The adapter hooks read the plan of the call they run in.

A row's route is ``None`` (the bare backbone), a skill name, or a mapping ``{skill: weight}``
that blends skills of one kind.
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
from torch import nn

Row = str | None | Mapping[str, float]
Route = Row | Sequence[Row]


@dataclass
class BankRows:
    """What one kind's bank applies to each row of a batch.

    Attributes:
        slots: ``[B, M]`` slot of each row's skill(s) in the bank (``-1``: the row does not use the bank).
        weights: ``[B, M]`` blend weights, or ``None`` when every row uses at most one skill at weight 1.
        uniform: the slot every row uses at weight 1, when there is one (two plain matmuls instead of batched ones).
        train: the one routed skill's trainable module while it trains (autograd runs through it).
    """

    slots: torch.Tensor
    weights: torch.Tensor | None = None
    uniform: int | None = None
    train: nn.Module | None = None

    def expanded(self, batch: int) -> "BankRows":
        """The rows as ``generate()`` runs them: each row repeated for its beams or return sequences."""
        if batch == self.slots.shape[0]:
            return self
        k = batch // self.slots.shape[0]
        weights = None if self.weights is None else self.weights.repeat_interleave(k, 0)
        return BankRows(self.slots.repeat_interleave(k, 0), weights, self.uniform, self.train)

    def used(self, batch: int) -> torch.Tensor:
        """``[batch]`` bool: rows that use this bank."""
        return (self.expanded(batch).slots >= 0).any(1)


@dataclass
class RoutePlan:
    """One call's routing: each bank's rows, and caches that live as long as the call."""

    banks: dict[str, BankRows]
    attention: list[Any] = field(default_factory=list)  # the banks that add keys and values to attention
    cache: dict[Any, Any] = field(default_factory=dict)  # gathered weights, by (kind, layer, batch)
    step: dict[Any, Any] = field(default_factory=dict)  # values computed once per forward pass while training

    def cached(self, key: Any, make: Callable[[], Any]) -> Any:
        if key not in self.cache:
            self.cache[key] = make()
        return self.cache[key]


_ACTIVE: ContextVar[RoutePlan | None] = ContextVar("adapter_route", default=None)


def active_plan() -> RoutePlan | None:
    """The plan of the call running in this thread or task (``None``: the bare backbone)."""
    return _ACTIVE.get()


@contextmanager
def activated(plan: RoutePlan | None) -> Iterator[None]:
    """Run the block under ``plan`` in this context only; the previous plan comes back on exit."""
    token = _ACTIVE.set(plan)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def row_mixes(route: Route) -> list[dict[str, float]]:
    """Each row's ``{skill: weight}`` (empty for the bare backbone); weights must be finite and >= 0."""
    rows = [route] if route is None or isinstance(route, (str, Mapping)) else list(route)
    mixes = []
    for row in rows:
        if row is None:
            mixes.append({})
        elif isinstance(row, str):
            mixes.append({row: 1.0})
        elif isinstance(row, Mapping):
            mix = {}
            for name, weight in row.items():
                if not isinstance(name, str) or isinstance(weight, bool) or not isinstance(weight, (int, float)) \
                        or not (weight >= 0 and weight < float("inf")):
                    raise ValueError(f"a blend maps skill names to finite weights >= 0, got {name!r}: {weight!r}")
                if weight > 0:
                    mix[name] = float(weight)
            mixes.append(mix)
        else:
            raise TypeError(f"a row's route is a skill name, None or a {{skill: weight}} mapping, got {row!r}")
    return mixes
