"""The dialogue manager's default features: the frozen backbone's own pooled hidden states.

No second encoder sits in memory: the manager reads the bare backbone (no adapter) on the
newest turns and pools its last hidden layer, over the user's last message and over the
recent context, into one ``[2 * hidden]`` vector per history.
"""
from __future__ import annotations

from typing import Sequence

import torch

from .adapter import AdaptedModel
from .dialogue import build_context


class BackboneFeatures:
    """Callable ``histories -> [B, 2 * hidden]`` (the ``manager.FeatureFn`` protocol).

    Args:
        model: the adapted backbone; features always use the bare backbone.
        tokenizer: the backbone's tokenizer.
        max_tokens: at most this many context tokens are read (the newest ones), which keeps
            routing a small share of a turn's time.
    """

    def __init__(self, model: AdaptedModel, tokenizer, max_tokens: int = 64) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self.name = f"backbone-meanpool:{model.signature.backbone}"
        self.dim = 2 * model.signature.hidden_size

    @torch.no_grad()
    def __call__(self, histories: Sequence[Sequence[str]]) -> torch.Tensor:
        contexts, last_lens = [], []
        for history in histories:
            ids = build_context(self.tokenizer, history, self.max_tokens)
            last = build_context(self.tokenizer, list(history)[-1:], self.max_tokens)
            contexts.append(ids)
            last_lens.append(len(last))
        width = max(map(len, contexts))
        ids = torch.full((len(contexts), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros(len(contexts), width)
        last_mask = torch.zeros(len(contexts), width)
        for i, (c, n) in enumerate(zip(contexts, last_lens)):  # right padding: positions start at 0
            ids[i, : len(c)] = torch.tensor(c)
            mask[i, : len(c)] = 1
            last_mask[i, len(c) - n : len(c)] = 1
        device = next(self.model.backbone.parameters()).device
        with self.model.route(None):
            hidden = self.model.backbone.transformer(input_ids=ids.to(device), attention_mask=mask.to(device)).last_hidden_state
        hidden = hidden.float().cpu()

        def pool(m: torch.Tensor) -> torch.Tensor:
            return (hidden * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp(min=1)

        return torch.cat([pool(last_mask), pool(mask)], dim=-1)
