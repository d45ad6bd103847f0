"""What every benchmark shares: figures with targets, side-by-side timing, the machine, random models.

Timing is *side by side*: each repeat runs every variant once, in an order rotated from one
repeat to the next, after a warm-up round. A ratio is computed within each repeat (the variants
of one repeat saw the same machine load) and the figure is the median over repeats.
"""
from __future__ import annotations

import gc
import math
import os
import platform
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Mapping

import torch

from ..adapter import AdaptedModel
from ..backbone import fuse_gelu

DIALOGPT_SMALL = dict(n_layer=12, n_embd=768, n_head=12, vocab_size=50257, n_positions=1024)
DIALOGPT_MEDIUM = dict(n_layer=24, n_embd=1024, n_head=16, vocab_size=50257, n_positions=1024)
TINY = dict(n_layer=2, n_embd=64, n_head=2, vocab_size=1000, n_positions=128)  # --quick


# name -> (target, unit, which side of the target holds, what it measures)
TARGETS: dict[str, tuple[float, str, str, str]] = {
    "adapter_vs_bare_latency_b1": (1.05, "x", "lower", "generation latency, one skill's adapter / bare backbone, batch 1"),
    "adapter_vs_bare_latency_b8": (1.05, "x", "lower", "generation latency, one skill's adapter / bare backbone, batch 8"),
    "mixed_vs_single_skill_latency_b8": (1.10, "x", "lower", "latency of 8 rows on 8 skills in one pass / all 8 on one skill"),
    "mixed_batching_speedup_kept": (0.90, "fraction", "higher",
                                    "batching speed-up of the mixed batch (vs 8 single-row generations on their skills) "
                                    "/ the bare backbone's (batch-8 vs batch-1 throughput)"),
    "mixed_vs_per_skill_loop_speedup": (1.0, "x", "higher",
                                        "naive per-skill loop (one whole generate() per skill, a baseline, not PEFT) / one-pass mixed batch"),
    "train_step_time_vs_full_finetune": (0.6, "x", "lower", "time of one adapter training step / one full fine-tuning step"),
    "train_step_memory_vs_full_finetune": (0.5, "x", "lower", "peak memory of adapter training / full fine-tuning"),
    "trainable_fraction": (0.03, "fraction", "lower", "one skill's adapter parameters / backbone parameters"),
    "routing_share_of_turn": (0.05, "fraction", "lower", "manager.route(history) / a whole respond(history, skill='auto')"),
    "skill_add_time": (300.0, "s", "lower", "wall time of add_skill (train, install, update the manager)"),
    "ours_vs_peft_mixed_distinct": (0.8, "x", "lower", "our one-pass mixed LoRA batch / PEFT's adapter_names batch, "
                                                       "every row on a different skill (8 rows, 8 skills)"),
    "ours_vs_peft_mixed_few": (0.8, "x", "lower", "our mixed LoRA batch / PEFT's adapter_names batch, 8 rows on 2 skills"),
    "ours_vs_peft_mixed_zipf": (0.8, "x", "lower", "our mixed LoRA batch / PEFT's adapter_names batch, "
                                                   "8 rows drawn from Zipf traffic over 8 skills"),
    "ours_vs_peft_mixed_one": (0.8, "x", "lower", "our LoRA batch / PEFT's adapter_names batch, 8 rows on one skill"),
    "lora_merged_vs_bare": (1.02, "x", "lower", "generation latency, one LoRA skill merged into the backbone / bare backbone, batch 1"),
    "mixed_kinds_vs_one_skill": (1.15, "x", "lower", "latency of 8 rows on 8 skills of 3 kinds (bottleneck, houlsby, lora) "
                                                     "in one pass / all 8 on one skill"),
}
BACKBONE_FIGURES = list(TARGETS)[:8]  # measured on every backbone shape
BOT_FIGURES = list(TARGETS)[8:10]  # measured on the bot the bench runs on (bundled backbone and skills)
PEER_FIGURES = list(TARGETS)[10:]  # measured on the DialoGPT shapes (bot.bench.peers): PEFT, merging, mixed kinds


@dataclass
class Figure:
    """One benchmark figure and its target. ``better`` says which side of the target holds."""

    value: float | None
    target: float
    unit: str
    better: str = "lower"  # or "higher"
    note: str = ""

    @property
    def holds(self) -> bool:
        if self.value is None or not math.isfinite(self.value):
            return False
        return self.value <= self.target if self.better == "lower" else self.value >= self.target

    def to_json(self) -> dict:
        out = {"value": self.value, "target": self.target, "unit": self.unit, "holds": self.holds, "better": self.better}
        return out | ({"note": self.note} if self.note else {})


def figure(name: str, value: float | None, note: str = "") -> Figure:
    """The figure ``name`` (a key of :data:`TARGETS`) with its target."""
    target, unit, better, _ = TARGETS[name]
    return Figure(None if value is None else float(value), target, unit, better, note)


Times = dict[str, list[float]]


def race(variants: Mapping[str, Callable[[], object]], repeats: int, warmup: int = 1,
         sync: Callable[[], None] | None = None, bar=None) -> Times:
    """Wall seconds of each variant in each repeat, the variants interleaved within every repeat.

    ``warmup`` untimed rounds come first. ``sync`` (e.g. ``torch.cuda.synchronize``) runs before
    and after each timed call. ``bar`` (tqdm) advances once per call.
    """
    names = list(variants)
    sync = sync or (lambda: None)

    def once(name: str) -> float:
        gc.collect()
        sync()
        start = time.perf_counter()
        variants[name]()
        sync()
        seconds = time.perf_counter() - start
        if bar is not None:
            bar.update(1)
        return seconds

    for _ in range(warmup):
        for name in names:
            once(name)
    times: Times = {name: [] for name in names}
    for r in range(repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(once(name))
    return times


def paired(times: Times, fn: Callable[[dict[str, float]], float]) -> float:
    """Median over repeats of ``fn`` applied to one repeat's times (``{variant: seconds}``)."""
    repeats = len(next(iter(times.values())))
    return statistics.median(fn({k: v[i] for k, v in times.items()}) for i in range(repeats))


def medians(times: Times) -> dict[str, float]:
    return {k: statistics.median(v) for k, v in times.items()}


def machine(device: str) -> dict:
    """The machine a run was taken on: CPU model, cores, threads, library versions, device."""
    import transformers

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info = {"cpu": cpu, "cores": cores, "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "transformers": transformers.__version__, "python": platform.python_version(), "device": device}
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def random_model(shape: dict, device: str, name: str, seed: int = 0) -> AdaptedModel:
    """A GPT-2 of ``shape`` with random weights (timing needs no trained ones), frozen, wrapped."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(**shape, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    backbone = GPT2LMHeadModel(config)
    fuse_gelu(backbone)  # as load_backbone does
    backbone.to(device).eval()
    return AdaptedModel(backbone, name)


def add_random_adapters(model: AdaptedModel, names: list[str], bottleneck: int, seed: int = 0) -> None:
    """Add one adapter per name, every weight perturbed, so that none is the identity."""
    g = torch.Generator().manual_seed(seed)
    for name in names:
        model.add_adapter(name, model.new_config(bottleneck=bottleneck))
        with torch.no_grad():
            for p in model.adapter_parameters(name):
                p.add_(torch.randn(p.shape, generator=g).to(p.device) * 0.02)
    model.invalidate()
