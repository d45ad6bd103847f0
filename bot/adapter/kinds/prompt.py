"""``prompt``: prompt tuning (Lester et al. 2021): trainable soft-prompt embeddings before the input.

The soft prompt's keys and values in each layer depend only on the prompt (it comes first, and
attention is causal), so they are computed once by the frozen backbone and then enter attention as
extra keys and values (:mod:`.attention`), like a prefix. Unlike a literal prepended prompt, the
user's tokens keep positions from 0, so the backbone sees them exactly as without a skill; the
prompt itself sits at positions ``0..length-1``. The file holds ``embeddings`` ``[length, hidden]``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import AdapterConfigError
from .attention import ExtraKeyValues
from .base import positive


@dataclass
class PromptSettings:
    """Settings of a ``prompt`` adapter.

    Attributes:
        length: number of soft-prompt tokens; the file holds ``length * hidden_size`` numbers.
    """

    length: int = 20

    def __post_init__(self) -> None:
        positive(self, "length")


class PromptModule(nn.Module):
    """``embeddings`` ``[length, hidden]``, initialised from random vocabulary embeddings (as Lester et al.)."""

    def __init__(self, token_embeddings: torch.Tensor, length: int) -> None:
        super().__init__()
        picks = torch.randint(0, token_embeddings.shape[0], (length,))
        self.embeddings = nn.Parameter(token_embeddings[picks].detach().clone())


class Prompt(ExtraKeyValues):
    name = "prompt"
    Settings = PromptSettings
    attaches = "before the input, as soft-prompt embeddings"

    def new_module(self, settings: PromptSettings, for_training: bool = True) -> nn.Module:
        window = self.backbone.config.n_positions
        if settings.length > window:  # its tokens take positions 0..length-1 of the backbone's window
            raise AdapterConfigError("length", f"must be at most the backbone's {window} positions, got {settings.length}")
        return PromptModule(self.backbone.transformer.wte.weight, settings.length)

    def file_shapes(self, settings: PromptSettings) -> dict[str, tuple[int, ...]]:
        return {"embeddings": (settings.length, self.signature.hidden_size)}

    def skill_kv(self, module: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        cache = self.run_bare(module.embeddings[None]).to_tuple()[1]  # the KV cache (``cache``; ``past_key_values`` before 5.24)
        keys = torch.stack([layer.keys[0] for layer in cache.layers])  # [layers, heads, P, head_dim]
        values = torch.stack([layer.values[0] for layer in cache.layers])
        return keys, values
