"""One transformer block's residual adapters: ``h' = h + W_up . ReLU(W_down . LayerNorm(h))``.

Each skill has its own :class:`ResidualAdapter` (trainable, autograd-friendly). For
inference the frozen adapters of all skills are also kept *stacked*: ``[K+1, d, r]`` and
``[K+1, r, d]``, the LayerNorm's affine folded into ``W_down``, and one extra all-zero slot
that stands for the bare backbone. A batch row with skill index ``i`` (``-1`` = bare) then
uses slot ``i`` through one batched matmul, so a batch may mix skills with no Python loop.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResidualAdapter(nn.Module):
    """One skill's adapter for one block. ``up`` starts at zero: a new adapter is the identity."""

    def __init__(self, hidden_size: int, bottleneck: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(hidden_size, eps=eps)
        self.down = nn.Linear(hidden_size, bottleneck)
        self.up = nn.Linear(bottleneck, hidden_size)
        nn.init.normal_(self.down.weight, std=0.02)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.up(F.relu(self.down(self.ln(h))))

    @torch.no_grad()
    def folded(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(W_down [d, r], b_down [r], W_up [r, d], b_up [d])`` with the LayerNorm affine folded in.

        ``down(g * n + b) = (W g) n + (W b + c)``, so inference needs only an affine-free layer norm.
        """
        w = self.down.weight  # [r, d]
        w_down = (w * self.ln.weight).t().contiguous()
        b_down = self.down.bias + w @ self.ln.bias
        return w_down, b_down, self.up.weight.t().contiguous(), self.up.bias.clone()


class AdapterLayer(nn.Module):
    """All skills' adapters for one block, and the route that picks one per batch row.

    The route is set by :class:`~bot.adapter.model.AdaptedModel` around a forward or
    ``generate()`` call: ``None`` (bare backbone), an ``int`` (every row on that skill), or a
    ``LongTensor`` with one skill index per row (``-1`` = bare backbone).
    """

    def __init__(self, hidden_size: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.eps = eps
        self.adapters = nn.ModuleDict()
        self._stack: tuple[torch.Tensor, ...] | None = None
        self._route: int | torch.Tensor | None = None
        self._gathered: dict[int, tuple[torch.Tensor, ...]] = {}

    def invalidate(self) -> None:
        """Forget the stacked weights (after adapters are added, removed, loaded or trained)."""
        self._stack = None
        self._gathered = {}

    def set_route(self, route: int | torch.Tensor | None) -> None:
        self._route = route
        self._gathered = {}

    def stacked(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Folded weights of every skill, ``[K+1, ...]``, the last slot all zeros (bare backbone)."""
        if self._stack is None:
            parts = [a.folded() for a in self.adapters.values()]
            r = max((p[0].shape[1] for p in parts), default=1)
            ref = next(self.parameters(), torch.empty(0))
            d, k = self.hidden_size, len(parts) + 1
            w_down, b_down = ref.new_zeros(k, d, r), ref.new_zeros(k, 1, r)
            w_up, b_up = ref.new_zeros(k, r, d), ref.new_zeros(k, 1, d)
            for i, (wd, bd, wu, bu) in enumerate(parts):  # smaller bottlenecks are zero-padded
                w_down[i, :, : wd.shape[1]] = wd
                b_down[i, 0, : bd.shape[0]] = bd
                w_up[i, : wu.shape[0]] = wu
                b_up[i, 0] = bu
            self._stack = (w_down, b_down, w_up, b_up)
        return self._stack

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        route = self._route
        if route is None:
            return h
        if isinstance(route, int):
            return self._apply_single(h, route)
        return self._apply_rows(h, route)

    def _apply_single(self, h: torch.Tensor, index: int) -> torch.Tensor:
        """Every row on one skill: two plain matmuls, no gather."""
        adapter = list(self.adapters.values())[index]
        if torch.is_grad_enabled() and adapter.up.weight.requires_grad:
            return adapter(h)  # training: autograd through this skill's own parameters only
        w_down, b_down, w_up, b_up = (t[index] for t in self.stacked())
        n = F.layer_norm(h, (self.hidden_size,), eps=self.eps).view(-1, self.hidden_size)
        a = F.relu_(torch.addmm(b_down[0], n, w_down))
        return torch.addmm(b_up[0], a, w_up).view_as(h).add_(h)

    def _apply_rows(self, h: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Row ``b`` on slot ``rows[b]``: each row's weights gathered once per call, two batched matmuls."""
        batch = h.shape[0]
        if batch not in self._gathered:
            k = len(self.adapters)
            slots = torch.where(rows < 0, k, rows).to(h.device)
            if batch != slots.shape[0]:  # generate() expanded each row (beams, num_return_sequences)
                slots = slots.repeat_interleave(batch // slots.shape[0])
            self._gathered[batch] = tuple(t.index_select(0, slots) for t in self.stacked())
        w_down, b_down, w_up, b_up = self._gathered[batch]
        n = F.layer_norm(h, (self.hidden_size,), eps=self.eps)
        a = F.relu_(torch.baddbmm(b_down, n, w_down))
        return torch.baddbmm(b_up, a, w_up).add_(h)
