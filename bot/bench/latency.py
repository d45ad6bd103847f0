"""Generation latency: one skill against the bare backbone, and a batch that mixes skills.

Every variant greedily generates exactly ``new_tokens`` tokens (``min_new_tokens`` =
``max_new_tokens``) after the same random prompts, so all of them do the same work:

- ``bare_b1`` / ``adapter_b1``: one row, bare backbone / one skill;
- ``bare_b8`` / ``single_skill_b8``: ``batch`` rows, bare / all on one skill;
- ``mixed_b8``: ``batch`` rows, each on a different skill, in one ``generate()`` call;
- ``per_skill_loop_b8``: the same rows grouped by skill, one whole ``generate()`` per group: the
  naive way to serve a mixed batch with one adapter active at a time. It is a baseline, not how
  PEFT serves a mixed batch (PEFT's ``adapter_names`` loops over skills inside each LoRA layer
  instead; :mod:`bot.bench.peers` races PEFT itself). With every row on its own skill this is also
  ``batch`` sequential single-row generations.
"""
from __future__ import annotations

import torch

from ..adapter import AdaptedModel
from .measure import Figure, figure, medians, paired, race


def generation_figures(model: AdaptedModel, skills: list[str], *, repeats: int, new_tokens: int, prompt_tokens: int,
                       sync=None, bar=None) -> tuple[dict[str, Figure], dict[str, tuple[float, str]]]:
    """``(figures, context)`` of one backbone; ``len(skills)`` is the batch size of the batched variants."""
    config = model.backbone.config
    device = next(model.backbone.parameters()).device
    batch = len(skills)
    g = torch.Generator().manual_seed(0)
    prompts = torch.randint(0, config.vocab_size, (batch, prompt_tokens), generator=g).to(device)
    eos = config.eos_token_id if config.eos_token_id is not None else 0
    settings = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, num_beams=1,
                    pad_token_id=eos, eos_token_id=eos)

    @torch.no_grad()
    def generate(rows: list[int], route) -> None:
        ids = prompts[rows]
        with model.route(route):
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **settings)
        assert out.shape[1] == prompt_tokens + new_tokens

    def per_skill_loop() -> None:
        groups: dict[str, list[int]] = {}
        for row, skill in enumerate(skills):
            groups.setdefault(skill, []).append(row)
        for skill, rows in groups.items():
            generate(rows, skill)

    every = list(range(batch))
    variants = {
        "bare_b1": lambda: generate([0], None),
        "adapter_b1": lambda: generate([0], skills[0]),
        "bare_b8": lambda: generate(every, None),
        "single_skill_b8": lambda: generate(every, skills[0]),
        "mixed_b8": lambda: generate(every, skills),
        "per_skill_loop_b8": per_skill_loop,
    }
    t = race(variants, repeats, sync=sync, bar=bar)

    def kept(r: dict[str, float]) -> float:  # the mixed batch's batching speed-up over the bare backbone's
        return (r["per_skill_loop_b8"] / r["mixed_b8"]) / (batch * r["bare_b1"] / r["bare_b8"])

    ratios = {
        "adapter_vs_bare_latency_b1": lambda r: r["adapter_b1"] / r["bare_b1"],
        "adapter_vs_bare_latency_b8": lambda r: r["single_skill_b8"] / r["bare_b8"],
        "mixed_vs_single_skill_latency_b8": lambda r: r["mixed_b8"] / r["single_skill_b8"],
        "mixed_batching_speedup_kept": kept,
        "mixed_vs_per_skill_loop_speedup": lambda r: r["per_skill_loop_b8"] / r["mixed_b8"],
    }
    figures = {name: figure(name, paired(t, fn)) for name, fn in ratios.items()}
    m = medians(t)
    context = {f"latency_{k}": (v, "s") for k, v in m.items()}
    context["bare_batching_speedup"] = (paired(t, lambda r: batch * r["bare_b1"] / r["bare_b8"]), "x")
    context["mixed_batching_speedup"] = (paired(t, lambda r: r["per_skill_loop_b8"] / r["mixed_b8"]), "x")
    context["tokens_per_s_bare_b1"] = (new_tokens / m["bare_b1"], "tokens/s")
    context["tokens_per_s_mixed_b8"] = (batch * new_tokens / m["mixed_b8"], "tokens/s")
    return figures, context
