"""``houlsby``: two bottleneck adapters per block (after attention and after the feed-forward), and the
block's two layer norms trained per skill (Houlsby et al. 2019)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .base import Kind, apply_low_rank, gather_low_rank, init_bottleneck, normalized, positive, stack_low_rank


@dataclass
class HoulsbySettings:
    """Settings of a ``houlsby`` adapter.

    Attributes:
        bottleneck: width ``r`` of each of the block's two adapters; a block gets
            ``2 * (2 * hidden_size * r + r + hidden_size) + 4 * hidden_size`` parameters (the last term: its layer norms).
    """

    bottleneck: int = 32

    def __post_init__(self) -> None:
        positive(self, "bottleneck")


class HoulsbyAdapter(nn.Module):
    """``h + W_up ReLU(W_down h)``, ``up`` at zero: the identity until trained."""

    def __init__(self, hidden_size: int, bottleneck: int) -> None:
        super().__init__()
        self.down = nn.Linear(hidden_size, bottleneck)
        self.up = nn.Linear(bottleneck, hidden_size)
        init_bottleneck(self.down, self.up)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.up(F.relu(self.down(h)))

    @torch.no_grad()
    def folded(self) -> tuple[torch.Tensor, ...]:
        return self.down.weight.t(), self.down.bias, self.up.weight.t(), self.up.bias


class HoulsbyLayer(nn.Module):
    def __init__(self, block: nn.Module, bottleneck: int) -> None:
        super().__init__()
        d = block.ln_1.weight.shape[0]
        self.attn = HoulsbyAdapter(d, bottleneck)
        self.mlp = HoulsbyAdapter(d, bottleneck)
        self.ln_1 = nn.LayerNorm(d)
        self.ln_2 = nn.LayerNorm(d)
        with torch.no_grad():  # the backbone's own norms: a fresh skill is the identity
            for name in ("ln_1", "ln_2"):
                getattr(self, name).weight.copy_(getattr(block, name).weight)
                getattr(self, name).bias.copy_(getattr(block, name).bias)


class HoulsbyModule(nn.Module):
    """File tensors ``layers.{i}.{attn,mlp}.{down,up}.{weight,bias}`` and ``layers.{i}.{ln_1,ln_2}.{weight,bias}``."""

    def __init__(self, blocks: nn.ModuleList, bottleneck: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(HoulsbyLayer(block, bottleneck) for block in blocks)


class Houlsby(Kind):
    name = "houlsby"
    Settings = HoulsbySettings
    attaches = "after each block's attention and feed-forward, and its two layer norms"

    def new_module(self, settings: HoulsbySettings, for_training: bool = True) -> nn.Module:
        return HoulsbyModule(self.blocks, settings.bottleneck).to(self.blocks[0].ln_1.weight.device)

    def file_shapes(self, settings: HoulsbySettings) -> dict[str, tuple[int, ...]]:
        d, r = self.signature.hidden_size, settings.bottleneck
        pair = {"down.weight": (r, d), "down.bias": (r,), "up.weight": (d, r), "up.bias": (d,)}
        shapes = {f"{site}.{k}": v for site in ("attn", "mlp") for k, v in pair.items()}
        shapes.update({f"{ln}.{p}": (d,) for ln in ("ln_1", "ln_2") for p in ("weight", "bias")})
        return {f"layers.{i}.{k}": v for i in range(self.signature.num_layers) for k, v in shapes.items()}

    def stack(self, modules: list[nn.Module]) -> list[dict]:
        ranks = [m.layers[0].attn.down.out_features for m in modules]
        layers = []
        for i, block in enumerate(self.blocks):
            entry = {site: stack_low_rank([getattr(m.layers[i], site).folded() for m in modules], ranks) for site in ("attn", "mlp")}
            for ln in ("ln_1", "ln_2"):
                own = getattr(block, ln)
                entry[ln] = (torch.stack([getattr(m.layers[i], ln).weight.detach() for m in modules] + [own.weight]),
                             torch.stack([getattr(m.layers[i], ln).bias.detach() for m in modules] + [own.bias]))
            layers.append(entry)
        return layers

    def attach(self, bank) -> list:
        eps = self.signature.layer_norm_eps

        def adapter_hook(i: int, site: str):
            def hook(module, args, output):
                rows = bank.rows()
                if rows is None:
                    return None
                h = output[0] if isinstance(output, tuple) else output
                if rows.train is not None:
                    new = getattr(rows.train.layers[i], site)(h)
                else:
                    stack, ranks = bank.stacked()[i][site]
                    weights = bank.gathered((i, site), h.shape[0], lambda r: gather_low_rank(stack, ranks, r))
                    new = apply_low_rank(h, weights, relu=True, residual=h)
                return (new,) + tuple(output[1:]) if isinstance(output, tuple) else new
            return hook

        def norm_hook(i: int, ln: str):
            def hook(module, args, output):
                rows = bank.rows()
                if rows is None:
                    return None
                n = normalized(args[0], eps)
                if rows.train is not None:
                    norm = getattr(rows.train.layers[i], ln)
                    return n * norm.weight + norm.bias
                scale, shift, used = bank.gathered((i, ln), output.shape[0], lambda r: self._gather_norm(bank, i, ln, r))
                if used is None:
                    return n * scale + shift
                return torch.where(used, n * scale + shift, output)  # rows on other kinds keep the backbone's norm
            return hook

        handles = []
        for i, block in enumerate(self.blocks):
            handles += [block.attn.register_forward_hook(adapter_hook(i, "attn")),
                        block.mlp.register_forward_hook(adapter_hook(i, "mlp")),
                        block.ln_1.register_forward_hook(norm_hook(i, "ln_1")),
                        block.ln_2.register_forward_hook(norm_hook(i, "ln_2"))]
        return handles

    @staticmethod
    def _gather_norm(bank, i: int, ln: str, rows) -> tuple:
        """Each row's norm weight and bias ``[B, 1, d]`` (a blend mixes them), and which rows use them."""
        weight, bias = bank.stacked()[i][ln]
        if rows.uniform is not None:
            return weight[rows.uniform], bias[rows.uniform], None
        slots = torch.where(rows.slots < 0, weight.shape[0] - 1, rows.slots).to(weight.device)
        mix = (rows.weights if rows.weights is not None else torch.ones(slots.shape)).to(weight)[:, :, None]
        used = (rows.slots >= 0).any(1).to(weight.device)[:, None, None]
        return (weight[slots] * mix).sum(1, keepdim=True), (bias[slots] * mix).sum(1, keepdim=True), used
