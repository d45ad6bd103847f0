"""``lora``: low-rank updates of the attention and MLP projections, ``y = x W + (alpha / rank) x A B``.

The tensors are stored the way PEFT names them (``lora_A.weight`` ``[rank, in]``, ``lora_B.weight``
``[out, rank]``), under ``layers.{i}.{target}``, so a skill converts to and from PEFT's format by
renaming alone (:mod:`bot.adapter.peft_format`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from ..config import AdapterConfigError
from .base import Kind, apply_low_rank, gather_low_rank, positive, stack_low_rank

TARGETS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")


@dataclass
class LoraSettings:
    """Settings of a ``lora`` adapter.

    Attributes:
        rank: rank ``r`` of each update; a target ``[in, out]`` gets ``r * (in + out)`` parameters.
        alpha: scale numerator: the update is multiplied by ``alpha / rank``.
        targets: the projections of every block that get an update, among ``attn.c_attn`` (query, key and
            value), ``attn.c_proj`` (attention output), ``mlp.c_fc`` and ``mlp.c_proj`` (the feed-forward).
    """

    rank: int = 8
    alpha: float = 16.0
    targets: list[str] = field(default_factory=lambda: list(TARGETS))

    def __post_init__(self) -> None:
        positive(self, "rank")
        if not self.alpha > 0:
            raise AdapterConfigError("alpha", f"must be a number > 0, got {self.alpha}")
        unknown = [t for t in self.targets if t not in TARGETS]
        if unknown or not self.targets or len(set(self.targets)) != len(self.targets):
            raise AdapterConfigError("targets", f"must be distinct names among {', '.join(TARGETS)}, got {self.targets}")

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


class LoraUpdate(nn.Module):
    """``(alpha / r) B A x``: ``lora_A`` Kaiming-initialised, ``lora_B`` at zero (PEFT's initialisation)."""

    def __init__(self, fan_in: int, fan_out: int, rank: int, scale: float) -> None:
        super().__init__()
        self.scale = scale
        self.lora_A = nn.Linear(fan_in, rank, bias=False)
        self.lora_B = nn.Linear(rank, fan_out, bias=False)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lora_B(self.lora_A(x)) * self.scale

    @torch.no_grad()
    def folded(self) -> tuple:
        return self.lora_A.weight.t(), None, self.lora_B.weight.t() * self.scale, None

    @torch.no_grad()
    def delta(self) -> torch.Tensor:
        """The update of the ``Conv1D`` weight ``[in, out]``, for merging."""
        return (self.lora_A.weight.t() @ self.lora_B.weight.t()) * self.scale


def projection(block: nn.Module, target: str) -> nn.Module:
    """The block's ``Conv1D`` named ``target`` (``attn.c_attn``...)."""
    return block.get_submodule(target)


class LoraModule(nn.Module):
    """One skill: ``layers[i].{attn,mlp}.{target}`` hold a :class:`LoraUpdate` per targeted projection."""

    def __init__(self, blocks: nn.ModuleList, settings: LoraSettings) -> None:
        super().__init__()
        self.targets = list(settings.targets)
        self.layers = nn.ModuleList()
        for block in blocks:
            layer = nn.Module()
            for target in self.targets:
                parent, child = target.split(".")
                if not hasattr(layer, parent):
                    layer.add_module(parent, nn.Module())
                fan_in, fan_out = projection(block, target).weight.shape  # Conv1D stores [in, out]
                getattr(layer, parent).add_module(child, LoraUpdate(fan_in, fan_out, settings.rank, settings.scale))
            self.layers.append(layer)


class Lora(Kind):
    name = "lora"
    Settings = LoraSettings
    attaches = "to the attention and MLP projections of every block"

    def new_module(self, settings: LoraSettings, for_training: bool = True) -> nn.Module:
        return LoraModule(self.blocks, settings).to(self.blocks[0].ln_1.weight.device)

    def file_shapes(self, settings: LoraSettings) -> dict[str, tuple[int, ...]]:
        shapes = {}
        for i, block in enumerate(self.blocks):
            for target in settings.targets:
                fan_in, fan_out = projection(block, target).weight.shape
                shapes[f"layers.{i}.{target}.lora_A.weight"] = (settings.rank, fan_in)
                shapes[f"layers.{i}.{target}.lora_B.weight"] = (fan_out, settings.rank)
        return shapes

    def stack(self, modules: list[nn.Module]) -> list[dict]:
        """Per block, per target: the stacked updates (a skill without that target holds zeros there)."""
        ranks = [m.layers[0].get_submodule(m.targets[0]).lora_A.out_features for m in modules]
        layers = []
        for i, block in enumerate(self.blocks):
            entry = {}
            for target in TARGETS:
                fan_in, fan_out = projection(block, target).weight.shape
                zero = (block.ln_1.weight.new_zeros(fan_in, 1), None, block.ln_1.weight.new_zeros(1, fan_out), None)
                parts = [m.layers[i].get_submodule(target).folded() if target in m.targets else zero for m in modules]
                if any(target in m.targets for m in modules):
                    entry[target] = stack_low_rank(parts, [r if target in m.targets else 0 for r, m in zip(ranks, modules)])
            layers.append(entry)
        return layers

    def attach(self, bank) -> list:
        def hook_for(i: int, target: str):
            def hook(module, args, output):
                rows = bank.rows()
                if rows is None:
                    return None
                x = args[0]
                if rows.train is not None:
                    update = rows.train.layers[i].get_submodule(target) if target in rows.train.targets else None
                    return output if update is None else output + update(x)
                stacked = bank.stacked()[i].get(target)
                if stacked is None:
                    return None
                stack, ranks = stacked
                weights = bank.gathered((i, target), x.shape[0], lambda r: gather_low_rank(stack, ranks, r))
                return apply_low_rank(x, weights, relu=False, residual=output)
            return hook

        return [projection(block, target).register_forward_hook(hook_for(i, target))
                for i, block in enumerate(self.blocks) for target in TARGETS]

    @torch.no_grad()
    def merge(self, module: LoraModule) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Add the skill's updates to the backbone's projection weights in place; returns ``(weight, original)`` pairs."""
        originals = []
        for i, block in enumerate(self.blocks):
            for target in module.targets:
                weight = projection(block, target).weight
                originals.append((weight, weight.clone()))
                weight.add_(module.layers[i].get_submodule(target).delta())
        return originals
