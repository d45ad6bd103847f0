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
        return (w * self.ln.weight).t(), self.down.bias + w @ self.ln.bias, self.up.weight.t(), self.up.bias


class AdapterLayer(nn.Module):
    """All skills' adapters for one block, and the route that picks one per batch row.

    The route is set by :class:`~bot.adapter.model.AdaptedModel` around a forward or
    ``generate()`` call: ``None`` (bare backbone), an ``int`` (every row on that skill), or a
    ``LongTensor`` with one skill index per row (``-1`` = bare backbone). What a route needs
    (the skill's trainable module, or the weights of each row) is looked up on the route's
    first forward and kept, so a decoding step runs five tensor ops and no other Python work.
    """

    def __init__(self, hidden_size: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.eps = eps
        # Slot ``i`` is the ``i``-th loaded skill (AdaptedModel keeps the names): modules are keyed by
        # position, never by a skill's name, so no name can clash with an ``nn.Module`` attribute.
        self.adapters = nn.ModuleList()
        self._stack: tuple[torch.Tensor, ...] | None = None
        self._route: int | torch.Tensor | None = None
        self._trainable: ResidualAdapter | None = None  # the routed skill's own module while it trains
        self._weights: dict[int, tuple[torch.Tensor, ...]] = {}  # the route's weights, by batch size

    def invalidate(self) -> None:
        """Forget the stacked weights (after adapters are added, removed, loaded or trained)."""
        self._stack = None
        self.set_route(self._route)

    def set_route(self, route: int | torch.Tensor | None) -> None:
        self._route = route
        self._weights = {}
        self._trainable = None
        if isinstance(route, int):
            adapter = self.adapters[route]
            if adapter.up.weight.requires_grad:  # training: autograd through this skill's parameters only
                self._trainable = adapter

    def stacked(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Folded weights of every skill, ``[K+1, ...]``, the last slot all zeros (bare backbone)."""
        if self._stack is None:
            parts = [a.folded() for a in self.adapters]
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
        if self._route is None:
            return h
        if self._trainable is not None:
            return self._trainable(h)
        weights = self._weights.get(h.shape[0])
        if weights is None:
            weights = self._weights[h.shape[0]] = self._prepare(h)
        w_down, b_down, w_up, b_up = weights
        n = F.layer_norm(h, (self.hidden_size,), eps=self.eps)
        if w_down.dim() == 2:  # every row on one skill: two plain matmuls
            a = torch.addmm(b_down, n.reshape(-1, self.hidden_size), w_down).relu_()
            return torch.addmm(b_up, a, w_up).view_as(h).add_(h)
        a = torch.baddbmm(b_down, n, w_down).relu_()  # row b on its own skill's weights
        return torch.baddbmm(b_up, a, w_up).add_(h)

    def _prepare(self, h: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The weights the current route applies to a batch of ``h.shape[0]`` rows."""
        w_down, b_down, w_up, b_up = self.stacked()
        route = self._route
        if isinstance(route, int):  # views of one slot
            return w_down[route], b_down[route, 0], w_up[route], b_up[route, 0]
        slots = torch.where(route < 0, w_down.shape[0] - 1, route).to(h.device)
        if h.shape[0] != slots.shape[0]:  # generate() expanded each row (beams, num_return_sequences)
            slots = slots.repeat_interleave(h.shape[0] // slots.shape[0])
        return w_down[slots], b_down[slots], w_up[slots], b_up[slots]  # gathered once per route and batch size
