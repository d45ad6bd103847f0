"""``report.md``: the Markdown of an evaluation report, and the table cells every report in the project uses.

:func:`esc`, :func:`fmt` and :func:`table` are the one way a figure becomes a Markdown cell
(:mod:`bot.evaluation.user_report` and :mod:`bot.bench.report` use them too).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .report_schema import ROUTING_ORDER

def esc(s: Any) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def fmt(value: Any, digits: int | str | None = 3, missing: str = "–") -> str:
    """A table cell: floats to ``digits`` decimals (a string: a format spec such as ``".3g"``; ``None``:
    as short as exact, e.g. ``3.3``); ``missing`` for ``None`` and non-finite floats."""
    if value is None:
        return missing
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return missing
        if digits is None:
            return f"{value:g}"
        return format(value, digits) if isinstance(digits, str) else f"{value:.{digits}f}"
    return esc(value)


def table(header: list[str], rows: list[list[str]], align: str | None = None) -> str:
    align = align or ("l" + "r" * (len(header) - 1))
    marks = {"l": ":---", "r": "---:", "c": ":---:"}
    lines = [
        "| " + " | ".join(esc(h) for h in header) + " |",
        "| " + " | ".join(marks[a] for a in align) + " |",
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _text_cells(m: dict) -> list[str]:
    return [
        fmt(m.get("bleu"), 2),
        fmt(m.get("f1")),
        fmt(m.get("rougeL")),
        fmt(m.get("distinct1")),
        fmt(m.get("distinct2")),
    ]


_TEXT_HEADER = ["BLEU", "F1", "ROUGE-L", "distinct-1", "distinct-2"]


def _routing_names(routings: dict) -> list[str]:
    known = [r for r in ROUTING_ORDER if r in routings]
    return known + sorted(r for r in routings if r not in ROUTING_ORDER)


def _markdown(report: dict, forgetting_parsed, plots: dict[str, Path]) -> str:
    skills = report["skills"]
    routing = report["routing"]
    out: list[str] = ["# Adapter-Bot evaluation report", ""]

    settings = report.get("settings")
    if isinstance(settings, dict) and settings:
        out += ["## Settings", ""]
        out += [f"- **{esc(k)}**: {fmt(v, None)}" for k, v in settings.items()]
        out.append("")

    out += [
        "## Skills",
        "",
        "Perplexity of each skill's test responses with the skill's adapter and with the "
        "bare backbone (lower is better). BLEU is sacrebleu's corpus BLEU (0-100); F1 "
        "(unigram, ParlAI-style), ROUGE-L and distinct-n are on 0-1.",
        "",
    ]
    rows = []
    for name, m in skills.items():
        ppl, base = m["ppl"], m["ppl_backbone"]
        change = (
            f"{100.0 * (ppl - base) / base:+.1f}%"
            if ppl is not None and base not in (None, 0.0)
            else "–"
        )
        rows.append(
            [esc(name), fmt(m["n"]), fmt(ppl, 2), fmt(base, 2), change] + _text_cells(m)
        )
    out.append(
        table(["skill", "n", "ppl (adapter)", "ppl (backbone)", "change"] + _TEXT_HEADER, rows)
        if rows
        else "_No skills were evaluated._"
    )
    out += ["", f"![Perplexity per skill]({plots['ppl'].name})", ""]

    routings = report.get("routings")
    if isinstance(routings, dict) and routings:
        names = _routing_names(routings)
        out += [
            "## Responses by routing",
            "",
            "Each skill's test contexts answered by the bare backbone (`backbone`), by the "
            "gold skill's adapter (`oracle`) and by the skill the manager picks (`auto`).",
            "",
        ]
        all_skills = list(skills) + sorted(
            {s for r in names if isinstance(routings[r], dict) for s in routings[r]}
            - set(skills)
        )
        rows = []
        for skill in all_skills:
            for r in names:
                m = routings[r].get(skill) if isinstance(routings[r], dict) else None
                if not isinstance(m, dict):
                    continue
                rows.append(
                    [esc(skill), esc(r), fmt(m.get("n"))]
                    + _text_cells(m)
                    + [fmt(m.get("length"), 1)]
                )
        out.append(
            table(["skill", "routing", "n"] + _TEXT_HEADER + ["length"], rows, "ll" + "r" * 7)
        )
        out.append("")

    preds = report.get("predictions")
    if isinstance(preds, dict) and isinstance(preds.get("all"), dict):
        out += ["## Scored predictions file", ""]
        rows = [["**all**", fmt(preds["all"].get("n"))] + _text_cells(preds["all"])
                + [fmt(preds["all"].get("length"), 1)]]
        for skill, m in (preds.get("skills") or {}).items():
            rows.append([esc(skill), fmt(m.get("n"))] + _text_cells(m) + [fmt(m.get("length"), 1)])
        out += [table(["skill", "n"] + _TEXT_HEADER + ["length"], rows), ""]

    labels = routing["labels"]
    confusion = routing["confusion"]
    out += [
        "## Routing",
        "",
        f"Accuracy: **{fmt(routing['accuracy'])}** over "
        f"{sum(map(sum, confusion))} turns.",
        "",
    ]
    per_skill = routing["per_skill"]
    names = list(labels) + [n for n in per_skill if n not in labels]
    rows = []
    for name in names:
        m = per_skill.get(name)
        support = sum(confusion[labels.index(name)]) if name in labels else None
        if m is None:
            rows.append([esc(name), "–", "–", "–", fmt(support)])
        else:
            rows.append(
                [esc(name), fmt(m["precision"]), fmt(m["recall"]), fmt(m["f1"]),
                 fmt(support)]
            )
    if rows:
        out += [table(["skill", "precision", "recall", "F1", "support"], rows), ""]
    if labels:
        out += ["Confusion matrix (rows: true skill, columns: routed skill):", ""]
        rows = [[f"**{esc(t)}**"] + [str(c) for c in confusion[i]] for i, t in enumerate(labels)]
        out += [table(["true \\ routed"] + labels, rows), ""]
    out += [f"![Routing confusion matrix]({plots['confusion'].name})", ""]

    from .user_report import user_markdown

    out += user_markdown(report, plots.get("reliability"))

    if forgetting_parsed is not None:
        order, metric, methods = forgetting_parsed
        out += [
            "## Forgetting",
            "",
            f"{esc(metric)} of each skill after each training stage; skills were trained "
            "in the order " + " → ".join(f"`{esc(s)}`" for s in order) + ". *Δ* is the "
            "final value minus the value right after the skill's own training stage "
            "(positive = forgotten).",
            "",
        ]
        stage_hdr = [f"after {s}" for s in order]
        for method, per_skill_values in methods.items():
            rows = []
            for skill, values in per_skill_values.items():
                delta = "–"
                if skill in order:
                    own, last = values[order.index(skill)], values[-1]
                    if own is not None and last is not None:
                        delta = f"{last - own:+.2f}"
                rows.append([esc(skill)] + [fmt(v, 2) for v in values] + [delta])
            out += [f"**{esc(method)}**", "", table(["skill"] + stage_hdr + ["Δ"], rows), ""]
        out += [f"![Forgetting]({plots['forgetting'].name})", ""]

    return "\n".join(out).rstrip() + "\n"
