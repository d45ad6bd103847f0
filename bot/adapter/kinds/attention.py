"""Extra keys and values in every attention layer, per row: what ``prefix`` and ``prompt`` share.

Both kinds give each layer ``P`` extra key/value vectors that every query of the row attends to.
They enter through one attention function registered with transformers' ``AttentionInterface``:
it prepends each row's extra keys and values (a row without them has them masked out) and then runs
transformers' own SDPA attention. The extras never enter the KV cache and take no positions, so
generation with the cache, beams and padding works unchanged; a row without extras gets exactly
the backbone's attention.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..routing import active_plan, activated
from .base import Kind

ATTENTION_NAME = "adapterbot_prefix"


def _attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
               attention_mask: torch.Tensor | None, **kwargs) -> tuple[torch.Tensor, Any]:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    plan = active_plan()
    extras = [] if plan is None else [bank.kind.extra_kv(bank, module.layer_idx, query.shape[0]) for bank in plan.attention]
    extras = [e for e in extras if e is not None]
    if not extras:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    batch, q_len, kv_len = query.shape[0], query.shape[2], key.shape[2]
    if attention_mask is None:  # transformers skipped the mask (causal, no padding): make it explicit
        allowed = torch.ones(q_len, kv_len, dtype=torch.bool, device=query.device).tril(kv_len - q_len)
        allowed = allowed.expand(batch, 1, q_len, kv_len)
    else:
        allowed = attention_mask if attention_mask.dtype == torch.bool else attention_mask == 0
        allowed = allowed.expand(batch, 1, q_len, kv_len)
    keys = torch.cat([k for k, _, _ in extras] + [key], dim=2)
    values = torch.cat([v for _, v, _ in extras] + [value], dim=2)
    masks = [valid[:, None, None, :].expand(batch, 1, q_len, valid.shape[1]) for _, _, valid in extras]
    return sdpa_attention_forward(module, query, keys, values, torch.cat(masks + [allowed], dim=3), **kwargs)


def use_extra_kv_attention(backbone: nn.Module) -> None:
    """Switch ``backbone`` to the attention function above (SDPA itself for every row without extras)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTENTION_NAME, _attention)
    AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)
    if backbone.config._attn_implementation != ATTENTION_NAME:
        backbone.set_attn_implementation(ATTENTION_NAME)


class ExtraKeyValues(Kind):
    """A kind whose skills add ``[P, hidden]`` keys and values to every layer's attention."""

    blendable = False
    identity_at_init = False

    def skill_kv(self, module: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        """The skill's extra ``(keys, values)``, each ``[layers, heads, P, head_dim]``."""
        raise NotImplementedError

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        """``[layers, P, hidden]`` -> ``[layers, heads, P, head_dim]``."""
        heads = self.backbone.config.n_head
        return t.view(t.shape[0], t.shape[1], heads, -1).transpose(1, 2)

    def stack(self, modules: list[nn.Module]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``keys``/``values`` ``[layers, K+1, heads, P_max, head_dim]`` and ``valid`` ``[K+1, P_max]``."""
        with torch.no_grad():
            kvs = [self.skill_kv(m) for m in modules]
        p_max = max(k.shape[2] for k, _ in kvs)
        k0 = kvs[0][0]
        keys = k0.new_zeros(k0.shape[0], len(kvs) + 1, k0.shape[1], p_max, k0.shape[3])
        values = torch.zeros_like(keys)
        valid = torch.zeros(len(kvs) + 1, p_max, dtype=torch.bool, device=k0.device)
        for i, (k, v) in enumerate(kvs):
            keys[:, i, :, : k.shape[2]] = k
            values[:, i, :, : v.shape[2]] = v
            valid[i, : k.shape[2]] = True
        return keys, values, valid

    def extra_kv(self, bank, layer: int, batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """This layer's extras for each of ``batch`` rows: keys, values ``[B, heads, P, head_dim]``, valid ``[B, P]``."""
        rows = bank.rows()
        if rows is None:
            return None
        if rows.train is not None:  # computed once per forward pass, with autograd, at the first layer
            plan = active_plan()
            if layer == 0 or self.name not in plan.step:
                plan.step[self.name] = self.skill_kv(rows.train)
            keys, values = plan.step[self.name]
            k, v = keys[layer], values[layer]
            valid = torch.ones(batch, k.shape[1], dtype=torch.bool, device=k.device)
            return k.expand(batch, *k.shape), v.expand(batch, *v.shape), valid

        def gather(r) -> tuple:
            keys, values, valid = bank.stacked()
            slots = torch.where(r.slots[:, 0] < 0, valid.shape[0] - 1, r.slots[:, 0]).to(keys.device)
            return keys[:, slots], values[:, slots], valid[slots]

        keys, values, valid = bank.gathered("kv", batch, gather)
        return keys[layer], values[layer], valid

    def attach(self, bank) -> list:
        use_extra_kv_attention(self.backbone)
        return []

    def run_bare(self, inputs_embeds: torch.Tensor):
        """The bare backbone on ``inputs_embeds`` (no route applies, whatever the caller's)."""
        with activated(None):
            return self.backbone.transformer(inputs_embeds=inputs_embeds, use_cache=True)
