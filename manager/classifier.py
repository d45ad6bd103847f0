"""The routing head: standardised features -> logits over ``["none", *skills]``."""
from __future__ import annotations

import torch
from torch import nn


class RoutingHead(nn.Module):
    """``logits = net((x - mean) / std)``, with ``net`` linear (``hidden=0``) or a one-hidden-layer MLP.

    ``mean`` and ``std`` are buffers (saved with the weights), set from the exemplar memory by
    :meth:`standardise_on` before each fit, so features of any scale train at one learning rate.
    """

    def __init__(self, feature_dim: int, num_classes: int, hidden: int = 0) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(feature_dim))
        self.register_buffer("std", torch.ones(feature_dim))
        if hidden:
            self.net = nn.Sequential(nn.Linear(feature_dim, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
        else:
            self.net = nn.Sequential(nn.Linear(feature_dim, num_classes))

    def standardise_on(self, features: torch.Tensor) -> None:
        """Set ``mean``/``std`` from ``features`` ``[N, D]``; constant dimensions keep a std of 1."""
        std = features.std(0, unbiased=False) if features.shape[0] > 1 else torch.ones_like(self.std)
        self.mean.copy_(features.mean(0))
        self.std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net((features - self.mean) / self.std)
