"""One adapter training step against one full fine-tuning step of the same backbone, on the same batch.

A step is what ``bot.training`` does: forward, loss, backward, gradient clipping, AdamW step,
gradients dropped. The adapter step trains one skill's adapter with the backbone frozen; the
full step trains every backbone weight with no adapter in the way. Dropout is off in both.

Time is raced side by side in this process. Peak memory is taken in a fresh subprocess per
variant, two steps each (the first allocates AdamW's state), so that neither variant inherits
the other's allocations:

- CPU: the process's peak resident set size (``VmHWM``) during the steps, reset just before them
  through ``/proc/self/clear_refs``, minus the resident size before the model was built (taken
  after a throwaway step on a tiny model, so torch's lazily loaded kernels and buffers count on
  neither side): weights, gradients, optimizer state and activations. Where ``clear_refs`` is
  missing, the peak since the process started (``ru_maxrss``) stands in, which also counts
  building the model.
- CUDA: ``torch.cuda.max_memory_allocated`` over the steps (weights included).
"""
from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import torch

from ..adapter import AdaptedModel
from .measure import Figure, figure, medians, paired, race

SKILL = "bench_train"


def train_step(model: AdaptedModel, variant: str, ids: torch.Tensor) -> Callable[[], None]:
    """A closure running one training step of ``variant`` (``"adapter"`` or ``"full"``) on ``ids``."""
    full = variant == "full"
    params = list(model.backbone.parameters()) if full else model.adapter_parameters(SKILL)
    opt = torch.optim.AdamW(params, lr=1e-5)

    def step() -> None:
        for p in model.backbone.parameters():
            p.requires_grad_(full)
        model.set_trainable(SKILL, not full)
        with model.route(None if full else SKILL):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def _add_skill(model: AdaptedModel, bottleneck: int) -> None:
    model.add_adapter(SKILL, model.new_config(bottleneck=bottleneck))
    model.backbone.eval()


def training_figures(model: AdaptedModel, *, bottleneck: int, rows: int, tokens: int, repeats: int, child: dict,
                     sync=None, bar=None) -> tuple[dict[str, Figure], dict[str, tuple[float, str]]]:
    """``(figures, context)``; ``child`` tells the memory subprocess how to rebuild this backbone.

    The backbone's weights change (a full fine-tuning step is taken): call this last on a model.
    """
    _add_skill(model, bottleneck)
    device = next(model.backbone.parameters()).device
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.backbone.config.vocab_size, (rows, tokens), generator=g).to(device)
    try:
        variants = {"adapter_step": train_step(model, "adapter", ids), "full_step": train_step(model, "full", ids)}
        t = race(variants, repeats, sync=sync, bar=bar)
        trainable = sum(p.numel() for p in model.adapter_parameters(SKILL))
        total = sum(p.numel() for p in model.backbone.parameters())
    finally:
        for p in model.backbone.parameters():
            p.requires_grad_(False)
        model.remove_adapter(SKILL)
        variants = None
        gc.collect()
    spec = dict(child, bottleneck=bottleneck, rows=rows, tokens=tokens, device=str(device), threads=torch.get_num_threads())
    try:
        memory = {v: peak_memory(dict(spec, variant=v))["peak_bytes"] for v in ("adapter", "full")}
        memory_figure = figure("train_step_memory_vs_full_finetune", memory["adapter"] / memory["full"])
    except (RuntimeError, OSError, ValueError) as e:  # no /proc, or the subprocess failed: the figure is missing
        memory, memory_figure = {}, figure("train_step_memory_vs_full_finetune", None, f"not measured: {str(e).splitlines()[0]}")
    if bar is not None:
        bar.update(2)
    figures = {
        "train_step_time_vs_full_finetune": figure("train_step_time_vs_full_finetune", paired(t, lambda r: r["adapter_step"] / r["full_step"])),
        "train_step_memory_vs_full_finetune": memory_figure,
        "trainable_fraction": figure("trainable_fraction", trainable / total),
    }
    m = medians(t)
    context = {"train_step_adapter": (m["adapter_step"], "s"), "train_step_full": (m["full_step"], "s"),
               "trainable_params": (float(trainable), "parameters"), "backbone_params": (float(total), "parameters")}
    context |= {f"train_peak_memory_{k}": (v / 2**20, "MiB") for k, v in memory.items()}
    return figures, context


def in_child(child: str, spec: dict, what: str) -> dict:
    """``child(json_spec)`` (a ``module:function`` of this project) run in a fresh interpreter; the JSON
    object its last output line holds. RuntimeError naming ``what`` with the child's stderr if it fails."""
    module, function = child.split(":")
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    code = f"import sys; from {module} import {function}; {function}(sys.argv[1])"
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(spec)], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def peak_memory(spec: dict) -> dict:
    """Run one variant's steps in a fresh interpreter; ``{"peak_bytes": int, "method": str}``."""
    return in_child("bot.bench.training:child", spec, f"memory benchmark of {spec['variant']!r}")


# ---- the subprocess -------------------------------------------------------------------
def _rss() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def _hwm() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


def _trim() -> None:
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed heap back, so the baseline is tight
    except (OSError, AttributeError):
        pass


def _reset_hwm() -> bool:
    _trim()
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak(spec: dict) -> dict:
    from .measure import TINY, random_model

    device = spec["device"]
    cuda = device.startswith("cuda")
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    warm = random_model(TINY, device, "warm-up")  # load torch's lazy kernels and buffers before the baseline
    _add_skill(warm, 8)
    train_step(warm, spec["variant"], torch.zeros(2, 8, dtype=torch.long, device=device))()
    del warm
    _trim()
    before = 0 if cuda else _rss()
    if "shape" in spec:
        model = random_model(spec["shape"], device, "bench")
    else:
        from ..backbone import load_backbone

        backbone, _, name = load_backbone(spec["backbone"], device=device)
        model = AdaptedModel(backbone, name)
    _add_skill(model, spec["bottleneck"])
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.backbone.config.vocab_size, (spec["rows"], spec["tokens"]), generator=g).to(device)
    return peak_of_two_steps(train_step(model, spec["variant"], ids), cuda, before)


def peak_of_two_steps(step, cuda: bool, before: int) -> dict:
    """``{"peak_bytes", "method"}``: the peak memory of two calls of ``step`` beyond ``before`` (resident bytes
    before the model; 0 on CUDA, whose allocator counts the weights too)."""
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        method = "torch.cuda.max_memory_allocated"
    else:
        method = "VmHWM after clear_refs, minus VmRSS before the model" if _reset_hwm() else "ru_maxrss minus VmRSS before the model"
    for _ in range(2):
        step()
    if cuda:
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    elif method.startswith("VmHWM"):
        peak = _hwm() - before
    else:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    return {"peak_bytes": peak, "method": method}


def child(spec: str) -> None:
    """Entry point of the subprocess: print the peak memory of the variant ``spec`` (JSON) names."""
    print(json.dumps(_peak(json.loads(spec))))
