"""``bench.json`` and ``bench.md``: the figures with their targets, the context figures, the method."""
from __future__ import annotations

import json
from pathlib import Path

from skills.files import atomic_write_text

from ..evaluation.report_markdown import fmt
from .measure import TARGETS, Figure

METHOD = """\
How these were taken: each section races its variants side by side in one process: a warm-up
round, then {repeats} repeat(s), each running every variant once in an order rotated from repeat
to repeat. Ratios are computed within each repeat and the median over repeats is reported, so
background load that drifts during the run touches both sides of a ratio alike. Generation is
greedy with exactly {new_tokens} new tokens after {prompt_tokens}-token random prompts; skills are
{skills} adapters of bottleneck {bottleneck} with random non-zero weights. The naive per-skill loop
runs one whole `generate()` per skill on that skill's rows (with every row on its own skill: {skills}
sequential single-row generations); it is a baseline, not how PEFT serves a mixed batch, which the
PEFT rows race directly. Training steps (forward, backward, clipping, AdamW) use a
batch of {rows} x {tokens} random tokens, dropout off. Peak training memory is measured in a fresh
subprocess per variant, over two steps: {memory}. DialoGPT shapes carry random weights (timing
needs no trained ones); "bundled" is the backbone and skills the bot runs on ({backbone}).
"""

PEERS = """\
The PEFT rows race our one-pass mixed batch (`model.generate(route=[...])`) against PEFT's own
mixed-batch inference (`PeftModel.generate(adapter_names=[...])`, which loops over the batch's
skills inside every LoRA layer) on a copy of the same backbone, with the same {skills} LoRA skills
({lora}, random non-zero weights; exported with `export_peft` and loaded into PEFT as {skills}
adapters, so both hold the same trainable parameters), the same prompts and greedy settings, in
one race with both sides interleaved. Workloads (skill index per row): {workloads}. PEFT gets
`adapter_names` in every workload, as a server mixing requests would call it. The context's
`peft_same_tokens_*` is the share of rows where both sides generated the same tokens. The merged
row races one LoRA skill merged into a second copy of the backbone (`model.merge`) against the
bare backbone, batch 1. The mixed-kinds row races {skills} rows on {skills} skills of kinds
{mixed_kinds} (default settings, random weights) against all {skills} rows on the first one.
"""


def _with_unit(value: float | None, unit: str) -> str:
    """A figure with its unit, e.g. ``1.250x``, ``0.0210 (2.10 %)``, ``0.35 s``; ``missing`` when not measured."""
    spec = {"x": ".3f", "fraction": ".4f", "s": ".3g"}.get(unit, ".4g")
    number = fmt(None if value is None else float(value), spec, missing="missing")
    if value is None or number == "missing":
        return number
    if unit == "x":
        return f"{number}x"
    if unit == "fraction":
        return f"{number} ({fmt(100 * float(value), 2)} %)"
    return f"{number} {unit}"


def _target(f: Figure) -> str:
    return ("≤ " if f.better == "lower" else "≥ ") + (f"{f.target:g}x" if f.unit == "x" else f"{f.target:g} {f.unit}")


def markdown(figures: dict[str, Figure], context: dict[str, tuple[float, str]], machine: dict, setup: dict) -> str:
    where = f"{machine['device']}" + (f" ({machine['gpu']})" if "gpu" in machine else "")
    lines = [
        "# Adapter-Bot benchmark",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']} ({machine['torch_threads']} threads), "
        f"transformers {machine['transformers']}, device {where}."
        + (" **Quick smoke run: tiny shapes, one repeat; the figures mean nothing.**" if setup["quick"] else ""),
        "Targets are judged on the DialoGPT-small shape; the bundled backbone's figures stand beside them.",
        "",
        "| figure | value | target | holds |",
        "|---|---|---|---|",
    ]
    for key, f in figures.items():
        label, _, name = key.partition(".")
        text = f"{label}: {TARGETS[name][3]}" + (f" ({f.note})" if f.note else "")
        holds = "missing" if f.value is None else ("yes" if f.holds else "**no**")
        lines.append(f"| {text} | {_with_unit(f.value, f.unit)} | {_target(f)} | {holds} |")
    lines += ["", "Context (no target):", "", "| figure | value |", "|---|---|"]
    lines += [f"| {key} | {_with_unit(v, unit)} |" for key, (v, unit) in context.items()]
    lines += ["", METHOD.format(**setup)]
    if setup.get("peers"):
        lines += ["", PEERS.format(**setup, **setup["peers"])]
    return "\n".join(lines)


def write_report(out: Path, figures: dict[str, Figure], context: dict[str, tuple[float, str]], machine: dict,
                 setup: dict) -> list[Path]:
    """Write ``bench.json`` (figures, ``machine``, ``setup``, ``context``) and ``bench.md``; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    data = {"machine": machine, "setup": setup} | {k: f.to_json() for k, f in figures.items()}
    data["context"] = {k: {"value": v, "unit": unit} for k, (v, unit) in context.items()}
    json_path, md_path = out / "bench.json", out / "bench.md"
    atomic_write_text(json_path, json.dumps(data, indent=2) + "\n")
    atomic_write_text(md_path, markdown(figures, context, machine, setup) + "\n")
    return [json_path, md_path]
