"""One kind's bank: the modules of every loaded skill of that kind, their stacked inference weights,
and the hooks that apply them to each batch row of the running call's :class:`~.routing.RoutePlan`."""
from __future__ import annotations

import threading
from typing import Any, Callable

from torch import nn

from .kinds.base import Kind
from .routing import BankRows, active_plan


class Bank(nn.Module):
    """Slot ``i`` is the ``i``-th loaded skill of :attr:`kind` (the model keeps the names).

    The kind's hooks are in place only while some call (in any thread) routes a row to this bank,
    so a backbone with no routed row runs exactly as loaded, with no hook at all.
    """

    _users_lock = threading.Lock()  # guards only the count below, never a whole call

    def __init__(self, kind: Kind) -> None:
        super().__init__()
        self.kind = kind
        self.adapters = nn.ModuleList()
        self._stack: Any = None
        self._handles: list = []
        self._users = 0

    def add(self, module: nn.Module) -> None:
        self.adapters.append(module)
        self.invalidate()

    def remove(self, slot: int) -> None:
        del self.adapters[slot]
        self.invalidate()

    def acquire(self) -> None:
        """A call starts routing rows here: attach the hooks if no other call has."""
        with self._users_lock:
            if self._users == 0:
                self._handles = self.kind.attach(self)
            self._users += 1

    def release(self) -> None:
        with self._users_lock:
            self._users -= 1
            if self._users == 0:
                for handle in self._handles:
                    handle.remove()
                self._handles = []

    def invalidate(self) -> None:
        """Forget the stacked weights (after a skill is added, removed, loaded or trained)."""
        self._stack = None

    def stacked(self) -> Any:
        if self._stack is None:
            self._stack = self.kind.stack(list(self.adapters))
        return self._stack

    def rows(self) -> BankRows | None:
        """This bank's rows in the running call, or ``None`` when no row uses it."""
        plan = active_plan()
        return None if plan is None else plan.banks.get(self.kind.name)

    def gathered(self, key: Any, batch: int, make: Callable[[BankRows], Any]) -> Any:
        """``make(rows)`` for a batch of ``batch`` rows, computed once per call, site and batch size."""
        plan = active_plan()
        rows = plan.banks[self.kind.name].expanded(batch)
        return plan.cached((self.kind.name, key, batch), lambda: make(rows))
