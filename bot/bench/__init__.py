"""``adapterbot bench``: speed and memory of the adapters, side by side with their baselines.

On the DialoGPT-small shape (random weights; DialoGPT-medium too on a GPU) and on the bot's own
backbone (``--backbone``, default the bundled one):

1. generation latency with one skill's adapter against the bare backbone (batch 1 and 8);
2. 8 rows on 8 skills in one pass against all on one skill, a naive per-skill loop, and batching's
   speed-up on the bare backbone (:mod:`bot.bench.latency`);
3. on the DialoGPT shapes: our mixed LoRA batch against PEFT's own ``adapter_names`` mixed batch over
   four workloads, a merged LoRA skill against the bare backbone, and 8 skills of three kinds in
   one batch against one skill (:mod:`bot.bench.peers`; PEFT's side needs the ``peft`` extra);
4. an adapter training step against a full fine-tuning step: time, peak memory, trainable
   fraction (:mod:`bot.bench.training`);

and on the bot itself (``--backbone`` with ``--skills-dir``): the manager's share of a turn and the
wall time of adding a skill from 1,000 examples (:mod:`bot.bench.turn`). Writes ``DIR/bench.json``
and ``DIR/bench.md`` (:mod:`bot.bench.report`). ``--quick`` swaps in tiny shapes, one repeat and
20 examples: a smoke test of the whole run, whose figures mean nothing.
"""
from __future__ import annotations

import gc
import logging
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..adapter import AdaptedModel
from ..adapter.kinds.bottleneck import BottleneckSettings
from .latency import generation_figures
from .measure import (BACKBONE_FIGURES, BOT_FIGURES, DIALOGPT_MEDIUM, DIALOGPT_SMALL, PEER_FIGURES, TINY, Figure, add_random_adapters,
                      figure, machine, random_model)
from .peers import bar_total, peer_figures
from .report import write_report
from .training import training_figures
from .turn import routing_figure, skill_add_figure

__all__ = ["run_bench", "figure_keys"]

log = logging.getLogger(__name__)
BOT = "bundled"  # key prefix of the figures of the bot's own backbone and skills


def figure_keys(device: str = "cpu") -> list[str]:
    """The figure keys ``bench.json`` holds for a run on ``device`` (DialoGPT-medium only on a GPU)."""
    shapes = ["dialogpt_small"] + (["dialogpt_medium"] if device.startswith("cuda") else [])
    return ([f"{s}.{n}" for s in shapes for n in BACKBONE_FIGURES + PEER_FIGURES] + [f"{BOT}.{n}" for n in BACKBONE_FIGURES]
            + [f"{BOT}.{n}" for n in BOT_FIGURES])


def run_bench(args) -> list[Path]:
    """Run every benchmark (see the module doc); ``args``: out, repeats, quick, backbone, skills_dir, device."""
    threads = torch.get_num_threads()
    if getattr(args, "quick", False):
        torch.set_num_threads(1)  # tiny shapes gain nothing from threads, and lose much on a busy machine
    try:
        return _run(args)
    finally:
        torch.set_num_threads(threads)


def _run(args) -> list[Path]:
    from ..backbone import BackboneError, load_backbone

    quick = bool(getattr(args, "quick", False))
    repeats = 1 if quick else max(1, int(getattr(args, "repeats", 5) or 5))
    device = getattr(args, "device", None) or ("cuda" if torch.cuda.is_available() else "cpu")
    sync = (lambda: torch.cuda.synchronize(device)) if device.startswith("cuda") else None
    shapes = {"dialogpt_small": TINY if quick else DIALOGPT_SMALL}
    if device.startswith("cuda"):
        shapes["dialogpt_medium"] = TINY if quick else DIALOGPT_MEDIUM
    backbone, skills_dir = getattr(args, "backbone", None), getattr(args, "skills_dir", None)
    setup = {
        "quick": quick, "repeats": repeats, "warmup": 1, "new_tokens": 8 if quick else 32, "prompt_tokens": 8 if quick else 32,
        "skills": 8, "bottleneck": BottleneckSettings().bottleneck, "rows": 8, "tokens": 16 if quick else 64,
        "skill_add_examples": 20 if quick else 1000, "shapes": shapes, "backbone": str(backbone or "bundled"),
        "skills_dir": str(skills_dir) if skills_dir else None,
        "memory": "CUDA max_memory_allocated" if device.startswith("cuda") else
                  "peak resident set size (VmHWM, reset through /proc/self/clear_refs) minus the resident size before the model",
    }
    figures: dict[str, Figure] = {}
    context: dict[str, tuple[float, str]] = {}

    def backbone_figures(label: str, model: AdaptedModel, child: dict) -> None:
        skills = [f"skill{i}" for i in range(setup["skills"])]
        add_random_adapters(model, skills, setup["bottleneck"])
        with tqdm(total=6 * (repeats + 1), desc=f"{label}: generation", unit="run") as bar:
            f, c = generation_figures(model, skills, repeats=repeats, new_tokens=setup["new_tokens"],
                                      prompt_tokens=setup["prompt_tokens"], sync=sync, bar=bar)
        for s in skills:
            model.remove_adapter(s)
        if label != BOT:
            with tqdm(total=bar_total(repeats), desc=f"{label}: PEFT, merged, mixed kinds", unit="run") as bar:
                f3, c3, setup["peers"] = peer_figures(model, repeats=repeats, new_tokens=setup["new_tokens"],
                                                      prompt_tokens=setup["prompt_tokens"], rows=setup["skills"],
                                                      sync=sync, bar=bar)
            f, c = f | f3, c | c3
        with tqdm(total=2 * (repeats + 1) + 2, desc=f"{label}: training step", unit="run") as bar:
            f2, c2 = training_figures(model, bottleneck=setup["bottleneck"], rows=setup["rows"], tokens=setup["tokens"],
                                      repeats=repeats, child=child, sync=sync, bar=bar)
        figures.update({f"{label}.{k}": v for k, v in (f | f2).items()})
        context.update({f"{label}.{k}": v for k, v in (c | c2).items()})
        _report(label, f | f2)

    for label, shape in shapes.items():
        backbone_figures(label, random_model(shape, device, label), {"shape": shape})
        gc.collect()

    try:
        model, _, name = load_backbone(backbone, device=device)
    except BackboneError as e:
        note = f"backbone not available: {str(e).splitlines()[0]}"
        figures.update({f"{BOT}.{n}": figure(n, None, note) for n in BACKBONE_FIGURES + BOT_FIGURES})
    else:
        backbone_figures(BOT, AdaptedModel(model, name), {"backbone": backbone})
        del model
        gc.collect()
        for key, measure in [("routing_share_of_turn", lambda: _routing(backbone, skills_dir, device, repeats)),
                             ("skill_add_time", lambda: skill_add_figure(backbone, skills_dir, device, setup["skill_add_examples"]))]:
            try:
                f, c = measure()
            except Exception as e:  # noqa: BLE001 - one failed figure must not lose the others
                log.exception("bench: %s failed", key)
                f, c = figure(key, None, f"failed: {type(e).__name__}: {e}"), {}
            figures[f"{BOT}.{key}"] = f
            context.update({f"{BOT}.{k}": v for k, v in c.items()})
            _report(BOT, {key: f})

    figures = {k: figures[k] for k in figure_keys(device) if k in figures}
    return write_report(Path(args.out), figures, context, machine(device), setup)


def _routing(backbone, skills_dir, device: str, repeats: int):
    from ..chatbot import AdapterBot

    bot = AdapterBot.from_pretrained(backbone, skills_dir, device=device)
    with tqdm(total=2 * (repeats + 1), desc=f"{BOT}: routing share", unit="run") as bar:
        return routing_figure(bot, repeats, bar)


def _report(label: str, figures: dict[str, Figure]) -> None:
    for name, f in figures.items():
        value = "missing" if f.value is None else f"{f.value:.4g}"
        tqdm.write(f"{label}.{name}: {value} {f.unit} (target {'<=' if f.better == 'lower' else '>='} {f.target:g}: "
                   f"{'holds' if f.holds else 'does not hold'})")
