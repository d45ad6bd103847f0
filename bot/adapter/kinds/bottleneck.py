"""``bottleneck``: Adapter-Bot's residual adapter after every block, ``h + W_up ReLU(W_down LN(h))``."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .base import Kind, apply_low_rank, gather_low_rank, init_bottleneck, normalized, positive, stack_low_rank


@dataclass
class BottleneckSettings:
    """Settings of a ``bottleneck`` adapter.

    Attributes:
        bottleneck: width ``r`` of the bottleneck; each block gets ``2 * hidden_size * r + r + 3 * hidden_size``
            parameters. Adapter-Bot used 200 on DialoGPT-medium; 64 keeps a skill near 2% of the bundled backbone.
    """

    bottleneck: int = 64

    def __post_init__(self) -> None:
        positive(self, "bottleneck")


class ResidualAdapter(nn.Module):
    """One skill's adapter for one block. ``up`` starts at zero: a new adapter is the identity."""

    def __init__(self, hidden_size: int, bottleneck: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(hidden_size, eps=eps)
        self.down = nn.Linear(hidden_size, bottleneck)
        self.up = nn.Linear(bottleneck, hidden_size)
        init_bottleneck(self.down, self.up)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.up(F.relu(self.down(self.ln(h))))

    @torch.no_grad()
    def folded(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(W_down [d, r], b_down [r], W_up [r, d], b_up [d])`` with the LayerNorm affine folded in.

        ``down(g * n + b) = (W g) n + (W b + c)``, so inference needs only an affine-free layer norm.
        """
        w = self.down.weight  # [r, d]
        return (w * self.ln.weight).t(), self.down.bias + w @ self.ln.bias, self.up.weight.t(), self.up.bias


class BottleneckModule(nn.Module):
    """One skill: a :class:`ResidualAdapter` per block; file tensors ``layers.{i}.{ln,down,up}.{weight,bias}``."""

    def __init__(self, num_layers: int, hidden_size: int, bottleneck: int, eps: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(ResidualAdapter(hidden_size, bottleneck, eps) for _ in range(num_layers))


class Bottleneck(Kind):
    name = "bottleneck"
    Settings = BottleneckSettings
    attaches = "after every transformer block"

    def new_module(self, settings: BottleneckSettings, for_training: bool = True) -> nn.Module:
        s = self.signature
        return BottleneckModule(s.num_layers, s.hidden_size, settings.bottleneck, s.layer_norm_eps)

    def file_shapes(self, settings: BottleneckSettings) -> dict[str, tuple[int, ...]]:
        d, r = self.signature.hidden_size, settings.bottleneck
        shapes = {"ln.weight": (d,), "ln.bias": (d,), "down.weight": (r, d), "down.bias": (r,), "up.weight": (d, r), "up.bias": (d,)}
        return {f"layers.{i}.{k}": v for i in range(self.signature.num_layers) for k, v in shapes.items()}

    def stack(self, modules: list[nn.Module]) -> list:
        ranks = [m.layers[0].down.out_features for m in modules]
        return [stack_low_rank([m.layers[i].folded() for m in modules], ranks) for i in range(self.signature.num_layers)]

    def attach(self, bank) -> list:
        eps = self.signature.layer_norm_eps

        def hook_for(i: int):
            def hook(module, args, output):
                rows = bank.rows()
                if rows is None:
                    return None
                h = output[0] if isinstance(output, tuple) else output
                if rows.train is not None:
                    new = rows.train.layers[i](h)
                else:
                    stack, ranks = bank.stacked()[i]
                    weights = bank.gathered(i, h.shape[0], lambda r: gather_low_rank(stack, ranks, r))
                    new = apply_low_rank(normalized(h, eps), weights, relu=True, residual=h)
                return (new,) + tuple(output[1:]) if isinstance(output, tuple) else new
            return hook

        return [block.register_forward_hook(hook_for(i)) for i, block in enumerate(self.blocks)]
