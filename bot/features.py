"""The dialogue manager's default features: the frozen backbone's own pooled hidden states.

No second encoder sits in memory: the manager reads the bare backbone (no adapter) on the
newest turns, stops after its first blocks, and pools their output twice: over the user's
newest message, and over the turns before it. Two separate halves, rather than one pool over
the whole context, let the head weigh the newest message on its own (a long chit-chat history
must not decide the class) while the turns before still show which exchange a short follow-up
continues. Reading only the first blocks and the newest tokens keeps routing a small share of a turn.
"""
from __future__ import annotations

from typing import Sequence

import torch

from .adapter import AdaptedModel
from .dialogue import build_context, pad


class _Stop(Exception):
    """Raised by the hook on the last block read, to skip the rest of the forward pass."""


class BackboneFeatures:
    """Callable ``histories -> [B, 2 * hidden]`` (the ``manager.FeatureFn`` protocol): the mean
    hidden state over the newest message, then over the turns before it (zeros on a first turn).

    Args:
        model: the adapted backbone; features always use the bare backbone.
        tokenizer: the backbone's tokenizer.
        max_tokens: at most this many context tokens are read (the newest ones).
        layers: how many of the backbone's first blocks are run; their output is pooled.
            ``None``: a sixth of them, at least one (1 of the bundled backbone's 6, 2 of
            DialoGPT-small's 12); fewer blocks cost proportionally less. How many blocks to read
            is chosen on validation routing (``python -m bot.recipes.skills`` records the sweep
            in its report).
    """

    def __init__(self, model: AdaptedModel, tokenizer, max_tokens: int = 64, layers: int | None = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        n = model.signature.num_layers
        self.layers = max(1, n // 6) if layers is None else layers
        if not 1 <= self.layers <= n:
            raise ValueError(f"layers must be between 1 and the backbone's {n} blocks, got {layers}")
        self.name = f"backbone-lastprev:{model.signature.backbone}:blocks={self.layers}:tokens={max_tokens}"
        self.dim = 2 * model.signature.hidden_size

    @classmethod
    def from_name(cls, model: AdaptedModel, tokenizer, name: str) -> "BackboneFeatures | None":
        """The features a manager recorded as ``name`` (its block and token counts), or ``None``
        when ``name`` is not this class's on this backbone."""
        kind, _, rest = name.partition(":")
        backbone, _, settings = rest.rpartition(":blocks=")
        layers, _, tokens = settings.partition(":tokens=")
        if kind != "backbone-lastprev" or backbone != model.signature.backbone or not (layers.isdigit() and tokens.isdigit()):
            return None
        if not 1 <= int(layers) <= model.signature.num_layers:
            return None
        return cls(model, tokenizer, max_tokens=int(tokens), layers=int(layers))

    @torch.no_grad()
    def __call__(self, histories: Sequence[Sequence[str]]) -> torch.Tensor:
        contexts, last_lens = [], []
        for history in histories:
            ids = build_context(self.tokenizer, history, self.max_tokens)
            last = build_context(self.tokenizer, list(history)[-1:], self.max_tokens)
            contexts.append(ids)
            last_lens.append(len(last))
        ids, mask = pad(contexts, self.tokenizer.pad_token_id)  # right padding: positions start at 0
        mask = mask.float()
        last_mask = torch.zeros_like(mask)
        for i, (c, n) in enumerate(zip(contexts, last_lens)):
            last_mask[i, len(c) - n : len(c)] = 1
        hidden = self._hidden(ids, mask).float().cpu()

        def pool(m: torch.Tensor) -> torch.Tensor:
            return (hidden * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp(min=1)

        return torch.cat([pool(last_mask), pool(mask - last_mask)], dim=-1)

    def _hidden(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The bare backbone's hidden states after block ``self.layers``; later blocks never run."""
        transformer = self.model.backbone.transformer
        device = next(transformer.parameters()).device
        captured: list[torch.Tensor] = []

        def stop(module, args, output) -> None:
            captured.append(output[0] if isinstance(output, tuple) else output)
            raise _Stop

        with self.model.route(None):
            handle = transformer.h[self.layers - 1].register_forward_hook(stop)
            try:
                transformer(input_ids=ids.to(device), attention_mask=mask.to(device))
            except _Stop:
                pass
            finally:
                handle.remove()
        return captured[0]
