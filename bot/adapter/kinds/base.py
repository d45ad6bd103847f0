"""The protocol every adapter kind implements, and the low-rank algebra three kinds share.

A kind is one file in this folder. It supplies its settings dataclass, a fresh module for a skill,
the tensors its file holds, how the frozen skills of that kind are stacked for inference, and the
hooks that apply the stacked weights to each batch row. :class:`~bot.adapter.model.AdaptedModel`
knows kinds only through :class:`Kind`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..config import AdapterConfigError, BackboneSignature
from ..routing import BankRows
from skills.fields import check_types

if TYPE_CHECKING:
    from ..bank import Bank


class Kind:
    """One adapter method. Subclasses set the class attributes and implement the methods.

    Attributes:
        name: the kind's name in ``skill.yaml``, ``adapter_config.json`` and the CLI (``--kind``).
        Settings: its settings dataclass (one docstring line per field).
        attaches: where it attaches, in words (shown by ``skill list`` and the docs).
        blendable: rows may mix skills of this kind with weights.
        identity_at_init: a fresh module leaves the backbone's outputs unchanged.
    """

    name: ClassVar[str]
    Settings: ClassVar[type]
    attaches: ClassVar[str]
    blendable: ClassVar[bool] = True
    identity_at_init: ClassVar[bool] = True

    def __init__(self, backbone: nn.Module, signature: BackboneSignature) -> None:
        self.backbone = backbone
        self.signature = signature
        self.blocks = backbone.transformer.h

    def new_module(self, settings: Any, for_training: bool = True) -> nn.Module:
        """A fresh module for one skill (``for_training=False``: the form its file loads into)."""
        raise NotImplementedError

    def file_shapes(self, settings: Any) -> dict[str, tuple[int, ...]]:
        """Every tensor the skill's file must hold, by name, with its shape (computed, never allocated)."""
        raise NotImplementedError

    def file_state(self, module: nn.Module) -> dict[str, torch.Tensor]:
        """The tensors written to the skill's file."""
        return dict(module.state_dict())

    def stack(self, modules: list[nn.Module]) -> Any:
        """The frozen weights of all the bank's skills, ready to gather per row (one extra empty slot)."""
        raise NotImplementedError

    def attach(self, bank: "Bank") -> list[Any]:
        """Register the hooks that apply ``bank``'s skills; returns their handles."""
        raise NotImplementedError


def init_bottleneck(down: nn.Linear, up: nn.Linear) -> None:
    """A bottleneck adapter's start: ``down`` small and random, ``up`` zero, so the adapter adds nothing yet."""
    nn.init.normal_(down.weight, std=0.02)
    nn.init.zeros_(down.bias)
    nn.init.zeros_(up.weight)
    nn.init.zeros_(up.bias)


def positive(settings: Any, *names: str) -> None:
    """Check ``settings``' types, then that each named field is at least 1."""
    check_types(settings, AdapterConfigError)
    for name in names:
        if getattr(settings, name) < 1:
            raise AdapterConfigError(name, f"must be at least 1, got {getattr(settings, name)}")


# ---- low rank: ``out = act(x W_in + b_in) W_out + b_out`` per row (bottleneck, houlsby, lora) ----------------------
LowRank = tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor | None]


def stack_low_rank(parts: list[LowRank], ranks: list[int]) -> tuple[LowRank, list[int]]:
    """``[K+1, ...]`` stacks of ``(W_in [d_in, r], b_in [r], W_out [r, d_out], b_out [d_out])``.

    Smaller ranks are zero-padded to the largest; the last slot is all zeros (a row that does not
    use the bank). Returns the stacks and each slot's own rank.
    """
    w_in0, b_in0, w_out0, b_out0 = parts[0]
    r, k = max(ranks), len(parts) + 1
    w_in = w_in0.new_zeros(k, w_in0.shape[0], r)
    w_out = w_out0.new_zeros(k, r, w_out0.shape[1])
    b_in = None if b_in0 is None else w_in0.new_zeros(k, 1, r)
    b_out = None if b_out0 is None else w_in0.new_zeros(k, 1, w_out0.shape[1])
    for i, (wi, bi, wo, bo) in enumerate(parts):
        w_in[i, :, : wi.shape[1]] = wi
        w_out[i, : wo.shape[0]] = wo
        if b_in is not None:
            b_in[i, 0, : bi.shape[0]] = bi
        if b_out is not None:
            b_out[i, 0] = bo
    return (w_in, b_in, w_out, b_out), ranks + [0]


def gather_low_rank(stack: LowRank, ranks: list[int], rows: BankRows) -> LowRank:
    """Each row's weights from ``stack``, padded only to the largest rank this batch uses.

    One skill for every row: that slot's 2-D views. Otherwise ``[B, ...]`` gathers; a blend of ``M``
    skills becomes one low-rank map of width ``M * r`` (``relu`` acts per unit, so concatenating
    units and scaling the output weights sums the weighted outputs exactly).
    """
    w_in, b_in, w_out, b_out = stack
    if rows.uniform is not None:
        s, r = rows.uniform, ranks[rows.uniform]
        return w_in[s, :, :r], None if b_in is None else b_in[s, 0, :r], w_out[s, :r], None if b_out is None else b_out[s, 0]
    slots = torch.where(rows.slots < 0, len(ranks) - 1, rows.slots).to(w_in.device)  # [B, M]
    r = max(ranks[s] for s in slots.unique().tolist()) or 1
    batch, m = slots.shape
    if m == 1 and rows.weights is None:  # one skill per row: plain gathers (no multiply)
        s = slots[:, 0]
        return w_in[s, :, :r], None if b_in is None else b_in[s, :, :r], w_out[s, :r], None if b_out is None else b_out[s]
    weights = (rows.weights if rows.weights is not None else torch.ones(batch, m)).to(w_in)
    g_in = w_in[slots, :, :r].permute(0, 2, 1, 3).reshape(batch, w_in.shape[1], m * r)
    g_out = (w_out[slots, :r] * weights[:, :, None, None]).reshape(batch, m * r, w_out.shape[2])
    g_b_in = None if b_in is None else b_in[slots, 0, :r].reshape(batch, 1, m * r)
    g_b_out = None if b_out is None else (b_out[slots, 0] * weights[:, :, None]).sum(1, keepdim=True)
    return g_in, g_b_in, g_out, g_b_out


def apply_low_rank(x: torch.Tensor, weights: LowRank, relu: bool, residual: torch.Tensor) -> torch.Tensor:
    """``residual + act(x W_in + b_in) W_out + b_out`` with ``weights`` from :func:`gather_low_rank`."""
    w_in, b_in, w_out, b_out = weights
    if w_in.dim() == 2:  # every row on one skill
        flat = x.reshape(-1, x.shape[-1])
        a = flat @ w_in if b_in is None else torch.addmm(b_in, flat, w_in)
        if relu:
            a = a.relu_()
        out = a @ w_out if b_out is None else torch.addmm(b_out, a, w_out)
        return out.view(*x.shape[:-1], w_out.shape[-1]).add_(residual)
    a = torch.bmm(x, w_in) if b_in is None else torch.baddbmm(b_in, x, w_in)
    if relu:
        a = a.relu_()
    out = torch.bmm(a, w_out) if b_out is None else torch.baddbmm(b_out, a, w_out)
    return out.add_(residual)


def normalized(h: torch.Tensor, eps: float) -> torch.Tensor:
    """``LayerNorm`` without its affine (folded into the next weights)."""
    return F.layer_norm(h, (h.shape[-1],), eps=eps)
