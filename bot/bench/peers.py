"""The bank against its peer and its own limits, on one backbone shape:

- **PEFT** (``peft.PeftModel.generate(..., adapter_names=[...])``, its own mixed-batch inference)
  against our one-pass mixed LoRA batch (``model.generate(..., route=[...])``): the same backbone
  weights, the same 8 LoRA skills (exported with :func:`bot.adapter.peft_format.export_peft` and
  loaded into PEFT as 8 adapters, so the trainable count is the same), the same prompts, the same
  greedy tokens, raced side by side. Four workloads, as serving papers run them: every row on a
  different skill; a few skills (2); skewed traffic (Zipf over the 8 skills); one skill.
- one LoRA skill **merged** into the backbone (``model.merge``) against the bare backbone;
- a batch of 8 rows on 8 skills of **three kinds** (bottleneck, houlsby, lora) against all 8 rows on one skill.

Without ``peft`` installed, the PEFT figures are missing with a note saying so; the others are measured.
"""
from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import torch

from ..adapter import AdaptedModel
from ..adapter.peft_format import export_peft
from .measure import Figure, figure, medians, paired, race

WORKLOADS = ("distinct", "few", "zipf", "one")
PEFT_MISSING = "peft not installed (pip install 'adapter-bot[peft]'): PEFT's side not run"
MIXED_KINDS = ("bottleneck", "bottleneck", "bottleneck", "houlsby", "houlsby", "houlsby", "lora", "lora")


def workload_routes(skills: list[str], rows: int, zipf_s: float = 1.1, seed: int = 0) -> dict[str, list[str]]:
    """Each workload's skill per row: ``distinct`` (row i on skill i), ``few`` (2 skills, alternating),
    ``zipf`` (drawn with probability ∝ 1/rank^zipf_s, fixed seed), ``one`` (every row on the first skill)."""
    weights = torch.tensor([1.0 / (k + 1) ** zipf_s for k in range(len(skills))])
    drawn = torch.multinomial(weights, rows, replacement=True, generator=torch.Generator().manual_seed(seed))
    return {
        "distinct": [skills[i % len(skills)] for i in range(rows)],
        "few": [skills[i % 2] for i in range(rows)],
        "zipf": [skills[int(k)] for k in drawn],
        "one": [skills[0]] * rows,
    }


def add_random_skills(model: AdaptedModel, names: list[str], kinds: list[str], seed: int = 0) -> None:
    """Add one skill per name, of the given kind at its default settings, every weight perturbed."""
    g = torch.Generator().manual_seed(seed)
    for name, kind in zip(names, kinds):
        model.add_adapter(name, model.new_config(kind))
        with torch.no_grad():
            for p in model.adapter_parameters(name):
                p.add_(torch.randn(p.shape, generator=g).to(p.device) * 0.02)
    model.invalidate()


def peft_twin(model: AdaptedModel, skills: list[str], folder: Path):
    """A ``PeftModel`` on a copy of ``model``'s backbone holding ``skills`` (lora) as adapters of the same names."""
    import peft

    for name in skills:
        export_peft(model, name, folder / name)
    backbone = copy.deepcopy(model.backbone)
    twin = peft.PeftModel.from_pretrained(backbone, folder / skills[0], adapter_name=skills[0], is_trainable=False)
    for name in skills[1:]:
        twin.load_adapter(folder / name, adapter_name=name, is_trainable=False)
    return twin.eval()


def peer_figures(model: AdaptedModel, *, repeats: int, new_tokens: int, prompt_tokens: int, rows: int = 8, sync=None,
                 bar=None) -> tuple[dict[str, Figure], dict[str, tuple[float, str]], dict]:
    """``(figures, context, setup)`` of the three races on ``model`` (its skills are added here and removed again)."""
    config = model.backbone.config
    device = next(model.backbone.parameters()).device
    g = torch.Generator().manual_seed(1)
    prompts = torch.randint(0, config.vocab_size, (rows, prompt_tokens), generator=g).to(device)
    mask = torch.ones_like(prompts)
    eos = config.eos_token_id if config.eos_token_id is not None else 0
    settings = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, num_beams=1,
                    pad_token_id=eos, eos_token_id=eos)
    figures: dict[str, Figure] = {}
    context: dict[str, tuple[float, str]] = {}
    outputs: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def ours(name: str, n: int, route) -> None:
        outputs[name] = model.generate(input_ids=prompts[:n], attention_mask=mask[:n], route=route, **settings)

    # ---- 1. our mixed LoRA batch against PEFT's adapter_names batch -------------------------------------------------
    skills = [f"lora{i}" for i in range(rows)]
    add_random_skills(model, skills, ["lora"] * rows, seed=0)
    routes = workload_routes(skills, rows)
    setup = {"workloads": {w: [skills.index(s) for s in r] for w, r in routes.items()},
             "lora": {k: v for k, v in vars(model.configs[skills[0]].settings).items()}}
    try:
        import peft  # noqa: F401
    except ImportError:
        figures.update({f"ours_vs_peft_mixed_{w}": figure(f"ours_vs_peft_mixed_{w}", None, PEFT_MISSING) for w in WORKLOADS})
        if bar is not None:
            bar.update(2 * len(WORKLOADS) * (repeats + 1))
    else:
        with tempfile.TemporaryDirectory(prefix="adapterbot-bench-peft-") as tmp:
            twin = peft_twin(model, skills, Path(tmp))

            @torch.no_grad()
            def theirs(name: str, names: list[str]) -> None:
                outputs[name] = twin.generate(input_ids=prompts, attention_mask=mask, adapter_names=names, **settings)

            variants = {}
            for w, route in routes.items():
                variants[f"ours_{w}"] = lambda w=w, route=route: ours(f"ours_{w}", rows, route)
                variants[f"peft_{w}"] = lambda w=w, route=route: theirs(f"peft_{w}", route)
            t = race(variants, repeats, sync=sync, bar=bar)
            ours_params = model.adapter_size(skills[0])
            peft_params = sum(p.numel() for n, p in twin.named_parameters() if "lora_" in n and f".{skills[0]}." in n)
            for w in WORKLOADS:
                same = (outputs[f"ours_{w}"] == outputs[f"peft_{w}"]).all(dim=1).float().mean().item()
                note = "" if same == 1.0 else f"only {100 * same:.0f}% of rows generated PEFT's tokens"
                figures[f"ours_vs_peft_mixed_{w}"] = figure(f"ours_vs_peft_mixed_{w}",
                                                            paired(t, lambda r, w=w: r[f"ours_{w}"] / r[f"peft_{w}"]), note)
                context[f"peft_same_tokens_{w}"] = (same, "fraction")
            context |= {f"latency_{k}": (v, "s") for k, v in medians(t).items()}
            context["lora_params_per_skill"] = (float(ours_params), "parameters")
            context["peft_lora_params_per_skill"] = (float(peft_params), "parameters")
            del twin

    # ---- 2. a merged LoRA skill against the bare backbone (two copies of the backbone, one merged) -------------------
    merged = AdaptedModel(copy.deepcopy(model.backbone), model.signature.backbone)
    merged.add_adapter(skills[0], model.configs[skills[0]])
    merged.module(skills[0]).load_state_dict(model.module(skills[0]).state_dict())
    merged.merge(skills[0])

    @torch.no_grad()
    def run_merged() -> None:
        outputs["merged_b1"] = merged.generate(input_ids=prompts[:1], attention_mask=mask[:1], route=skills[0], **settings)

    t = race({"bare_b1": lambda: ours("bare_b1", 1, None), "merged_b1": run_merged,
              "lora_unmerged_b1": lambda: ours("lora_unmerged_b1", 1, skills[0])}, repeats, sync=sync, bar=bar)
    same = bool(torch.equal(outputs["merged_b1"], outputs["lora_unmerged_b1"]))
    figures["lora_merged_vs_bare"] = figure("lora_merged_vs_bare", paired(t, lambda r: r["merged_b1"] / r["bare_b1"]),
                                            "" if same else "the merged skill's greedy tokens differ from the unmerged skill's")
    context["lora_unmerged_vs_bare_b1"] = (paired(t, lambda r: r["lora_unmerged_b1"] / r["bare_b1"]), "x")
    context |= {f"latency_{k}": (v, "s") for k, v in medians(t).items()}
    del merged
    for s in skills:
        model.remove_adapter(s)

    # ---- 3. 8 rows on 8 skills of three kinds against all 8 rows on one skill ------------------------------------------
    kinds = [MIXED_KINDS[i % len(MIXED_KINDS)] for i in range(rows)]
    mixed = [f"{k}{i}" for i, k in enumerate(kinds)]
    add_random_skills(model, mixed, kinds, seed=1)
    t = race({"one_skill_b8": lambda: ours("one_skill_b8", rows, mixed[0]),
              "mixed_kinds_b8": lambda: ours("mixed_kinds_b8", rows, mixed)}, repeats, sync=sync, bar=bar)
    figures["mixed_kinds_vs_one_skill"] = figure("mixed_kinds_vs_one_skill",
                                                 paired(t, lambda r: r["mixed_kinds_b8"] / r["one_skill_b8"]))
    context |= {f"latency_{k}": (v, "s") for k, v in medians(t).items()}
    setup["mixed_kinds"] = kinds
    for s in mixed:
        model.remove_adapter(s)
    return figures, context, setup


def bar_total(repeats: int) -> int:
    """Timed and warm-up calls of :func:`peer_figures` (for a progress bar)."""
    return (2 * len(WORKLOADS) + 3 + 2) * (repeats + 1)
