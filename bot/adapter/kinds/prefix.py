"""``prefix``: prefix tuning (Li & Liang 2021): trainable keys and values before every layer's attention.

While training, the prefix is reparameterised through a small MLP, which steadies optimisation;
the file holds only the resulting keys and values (``layers.{i}.key``, ``layers.{i}.value``,
``[length, hidden]``), as Li & Liang drop the MLP after training.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import AdapterConfigError
from .attention import ExtraKeyValues
from .base import positive


@dataclass
class PrefixSettings:
    """Settings of a ``prefix`` adapter.

    Attributes:
        length: number of prefix vectors per layer; the file holds ``2 * layers * length * hidden_size`` numbers.
        reparam_hidden: width of the MLP that produces the prefix while training (0: train the keys and values directly).
    """

    length: int = 16
    reparam_hidden: int = 64

    def __post_init__(self) -> None:
        positive(self, "length")
        if self.reparam_hidden < 0:
            raise AdapterConfigError("reparam_hidden", f"must be an integer >= 0, got {self.reparam_hidden}")


class PrefixLayer(nn.Module):
    def __init__(self, length: int, hidden: int) -> None:
        super().__init__()
        self.key = nn.Parameter(torch.randn(length, hidden) * 0.02)
        self.value = nn.Parameter(torch.randn(length, hidden) * 0.02)


class PrefixModule(nn.Module):
    """``layers[i].{key,value}`` directly, or ``embedding`` ``[length, hidden]`` through ``mlp`` while training."""

    def __init__(self, num_layers: int, hidden: int, settings: PrefixSettings, reparameterised: bool) -> None:
        super().__init__()
        self.num_layers = num_layers
        if reparameterised:
            self.embedding = nn.Parameter(torch.randn(settings.length, hidden) * 0.02)
            self.mlp = nn.Sequential(nn.Linear(hidden, settings.reparam_hidden), nn.Tanh(),
                                     nn.Linear(settings.reparam_hidden, num_layers * 2 * hidden))
        else:
            self.layers = nn.ModuleList(PrefixLayer(settings.length, hidden) for _ in range(num_layers))

    def kv(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(keys, values)``, each ``[layers, length, hidden]``."""
        if hasattr(self, "mlp"):
            out = self.mlp(self.embedding)  # [P, L * 2 * d]
            out = out.view(out.shape[0], self.num_layers, 2, -1).permute(1, 2, 0, 3)
            return out[:, 0], out[:, 1]
        return torch.stack([l.key for l in self.layers]), torch.stack([l.value for l in self.layers])


class Prefix(ExtraKeyValues):
    name = "prefix"
    Settings = PrefixSettings
    attaches = "to the keys and values of every layer's attention"

    def new_module(self, settings: PrefixSettings, for_training: bool = True) -> nn.Module:
        reparameterised = for_training and settings.reparam_hidden > 0
        module = PrefixModule(self.signature.num_layers, self.signature.hidden_size, settings, reparameterised)
        return module.to(self.blocks[0].ln_1.weight.device)

    def file_shapes(self, settings: PrefixSettings) -> dict[str, tuple[int, ...]]:
        shape = (settings.length, self.signature.hidden_size)
        return {f"layers.{i}.{t}": shape for i in range(self.signature.num_layers) for t in ("key", "value")}

    def file_state(self, module: nn.Module) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            keys, values = module.kv()
        return {f"layers.{i}.{t}": x[i] for i in range(len(keys)) for t, x in (("key", keys), ("value", values))}

    def skill_kv(self, module: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        keys, values = module.kv()
        return self._heads(keys), self._heads(values)
