"""Writing the offline evaluation report: ``report.json``, ``report.md`` and plots.

``write_report(report, out_dir, forgetting=None)`` writes into ``out_dir``:

* ``report.json`` (atomically: temporary file + ``os.replace``), with the keys of
  docs/DESIGN.md::

      {"skills": {NAME: {"n": int, "ppl": float, "ppl_backbone": float, "bleu": float,
                         "f1": float, "rougeL": float, "distinct1": float,
                         "distinct2": float}},
       "routing": {"accuracy": float, "labels": [str, ...], "confusion": [[int, ...], ...],
                   "per_skill": {NAME: {"precision": float, "recall": float, "f1": float}}}}

  ``bleu`` is on sacrebleu's 0-100 scale; the other text metrics are 0-1.
  ``confusion[i][j]`` counts turns whose true label is ``labels[i]`` and whose
  routed label is ``labels[j]``. Extra top-level keys are kept as given (they must
  be JSON-serialisable); the ones rendered in the Markdown are:

  * ``"routings"``: ``{ROUTING: {NAME: {"n"?, "bleu", "f1", "rougeL", "distinct1",
    "distinct2", "length"?}}}`` with ROUTING usually ``"backbone"`` (bare backbone),
    ``"oracle"`` (the gold skill's adapter) and ``"auto"`` (the manager's choice);
  * ``"predictions"``: the output of
    :func:`bot.evaluation.predictions.score_predictions`;
  * ``"forgetting"``: filled in from the ``forgetting`` argument when given;
  * ``"settings"``: any flat dict of run settings (backbone, limit, seed, ...).

  Non-finite floats (``inf``/``nan``) and ``None`` in the float fields are written
  as JSON ``null`` so that the file stays strict JSON.
* ``report.md``: Markdown tables, embedding the PNGs with relative links.
* ``ppl.png`` (perplexity with the skill's adapter vs the bare backbone),
  ``confusion.png`` (routing confusion matrix), and ``forgetting.png`` when
  ``forgetting`` is given.

The forgetting dict (a continual-learning comparison) is::

    {"order": [SKILL, ...],                 # skills in training order
     "metric": "ppl",                        # optional label for the values (default "ppl")
     METHOD: {SKILL: [v_0, v_1, ...]}, ...}  # any other key is a method

where ``v_i`` is SKILL's metric (perplexity: lower is better) measured after
training stage ``i``, i.e. after training ``order[i]``; every list has
``len(order)`` entries and ``None`` marks a value not measured. Typical methods
are ``"sequential"`` (one model fine-tuned on each skill in turn) and
``"adapters"`` (one adapter per skill, frozen backbone). Example::

    {"order": ["empathetic", "trivia"],
     "sequential": {"empathetic": [12.1, 30.5], "trivia": [80.2, 14.0]},
     "adapters":   {"empathetic": [12.3, 12.3], "trivia": [95.0, 14.2]}}

Plots use matplotlib's Agg canvas directly (no pyplot, no global backend change).
"""

from __future__ import annotations

import copy
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

__all__ = ["write_report", "validate_report", "SKILL_KEYS", "ROUTING_KEYS", "PER_SKILL_KEYS"]

SKILL_KEYS = ("n", "ppl", "ppl_backbone", "bleu", "f1", "rougeL", "distinct1", "distinct2")
ROUTING_KEYS = ("accuracy", "labels", "confusion", "per_skill")
PER_SKILL_KEYS = ("precision", "recall", "f1")
TEXT_KEYS = ("bleu", "f1", "rougeL", "distinct1", "distinct2")
ROUTING_ORDER = ("backbone", "oracle", "auto")
_FORGETTING_RESERVED = ("order", "metric")


# --------------------------------------------------------------------------- validation


def _as_float(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        # numpy / torch scalars
        if hasattr(value, "item"):
            return _as_float(value.item(), where)
        raise ValueError(f"report: {where} must be a number, got {type(value).__name__}")
    value = float(value)
    return value if math.isfinite(value) else None


def _as_int(value: Any, where: str) -> int:
    if hasattr(value, "item") and not isinstance(value, (int, float)):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise ValueError(f"report: {where} must be an integer, got {value!r}")
    return int(value)


def _require(d: Any, keys: tuple[str, ...], where: str) -> None:
    if not isinstance(d, dict):
        raise ValueError(f"report: {where} must be a dict, got {type(d).__name__}")
    missing = [k for k in keys if k not in d]
    if missing:
        raise ValueError(f"report: {where} is missing {', '.join(repr(k) for k in missing)}")


def validate_report(report: dict) -> dict:
    """Check ``report`` against the docs/DESIGN.md contract; return a normalised deep copy.

    Required keys must be present (extra keys inside a skill or routing entry are
    kept); ``n`` and confusion counts become ``int``, metrics become ``float`` (or
    ``None`` when missing/non-finite), labels become ``str``. The confusion matrix
    must be ``len(labels)`` x ``len(labels)``. Raises ``ValueError`` naming the key.
    """
    _require(report, ("skills", "routing"), "top level")
    out = copy.deepcopy(report)

    skills = out["skills"]
    if not isinstance(skills, dict):
        raise ValueError("report: 'skills' must be a dict of skill name -> metrics")
    for name, entry in skills.items():
        where = f"skills[{name!r}]"
        _require(entry, SKILL_KEYS, where)
        entry["n"] = _as_int(entry["n"], f"{where}['n']")
        for key in SKILL_KEYS[1:]:
            entry[key] = _as_float(entry[key], f"{where}[{key!r}]")

    routing = out["routing"]
    _require(routing, ROUTING_KEYS, "routing")
    routing["accuracy"] = _as_float(routing["accuracy"], "routing['accuracy']")
    if not isinstance(routing["labels"], (list, tuple)):
        raise ValueError("report: routing['labels'] must be a list")
    labels = [str(x) for x in routing["labels"]]
    routing["labels"] = labels
    confusion = routing["confusion"]
    if hasattr(confusion, "tolist"):
        confusion = confusion.tolist()
    if not isinstance(confusion, (list, tuple)) or len(confusion) != len(labels):
        raise ValueError(
            f"report: routing['confusion'] must have one row per label ({len(labels)})"
        )
    rows = []
    for i, row in enumerate(confusion):
        if not isinstance(row, (list, tuple)) or len(row) != len(labels):
            raise ValueError(
                f"report: routing['confusion'][{i}] must have {len(labels)} columns"
            )
        rows.append([_as_int(c, f"routing['confusion'][{i}]") for c in row])
    routing["confusion"] = rows
    per_skill = routing["per_skill"]
    if not isinstance(per_skill, dict):
        raise ValueError("report: routing['per_skill'] must be a dict")
    for name, entry in per_skill.items():
        where = f"routing['per_skill'][{name!r}]"
        _require(entry, PER_SKILL_KEYS, where)
        for key in PER_SKILL_KEYS:
            entry[key] = _as_float(entry[key], f"{where}[{key!r}]")
    return out


def _validate_forgetting(forgetting: dict) -> tuple[list[str], str, dict[str, dict[str, list]]]:
    _require(forgetting, ("order",), "forgetting")
    order = [str(s) for s in forgetting["order"]]
    if not order:
        raise ValueError("report: forgetting['order'] is empty")
    metric = str(forgetting.get("metric", "ppl"))
    methods: dict[str, dict[str, list]] = {}
    for method, per_skill in forgetting.items():
        if method in _FORGETTING_RESERVED:
            continue
        if not isinstance(per_skill, dict):
            raise ValueError(f"report: forgetting[{method!r}] must be a dict skill -> list")
        methods[method] = {}
        for skill, values in per_skill.items():
            where = f"forgetting[{method!r}][{skill!r}]"
            if not isinstance(values, (list, tuple)) or len(values) != len(order):
                raise ValueError(f"report: {where} must be a list of {len(order)} values")
            methods[method][skill] = [_as_float(v, where) for v in values]
    if not methods:
        raise ValueError("report: forgetting has no method (e.g. 'sequential', 'adapters')")
    return order, metric, methods


def _jsonable(obj: Any) -> Any:
    """Plain-JSON copy: numpy/torch scalars and arrays unwrapped, non-finite floats -> None."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):
        return _jsonable(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


# --------------------------------------------------------------------------- writing helpers


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _write_text(path: Path, text: str) -> None:
    _atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def _save_figure(fig, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    _atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=120, bbox_inches="tight"))


def _new_figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


# --------------------------------------------------------------------------- markdown


def _esc(s: Any) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def _fmt(value: Any, digits: int | None = 3) -> str:
    """A table cell: floats to ``digits`` decimals (``None``: as short as exact, e.g. ``3.3``)."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "–"
        return f"{value:g}" if digits is None else f"{value:.{digits}f}"
    return _esc(value)


def _table(header: list[str], rows: list[list[str]], align: str | None = None) -> str:
    align = align or ("l" + "r" * (len(header) - 1))
    marks = {"l": ":---", "r": "---:", "c": ":---:"}
    lines = [
        "| " + " | ".join(_esc(h) for h in header) + " |",
        "| " + " | ".join(marks[a] for a in align) + " |",
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _text_cells(m: dict) -> list[str]:
    return [
        _fmt(m.get("bleu"), 2),
        _fmt(m.get("f1")),
        _fmt(m.get("rougeL")),
        _fmt(m.get("distinct1")),
        _fmt(m.get("distinct2")),
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
        out += [f"- **{_esc(k)}**: {_fmt(v, None)}" for k, v in settings.items()]
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
            [_esc(name), _fmt(m["n"]), _fmt(ppl, 2), _fmt(base, 2), change] + _text_cells(m)
        )
    out.append(
        _table(["skill", "n", "ppl (adapter)", "ppl (backbone)", "change"] + _TEXT_HEADER, rows)
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
                    [_esc(skill), _esc(r), _fmt(m.get("n"))]
                    + _text_cells(m)
                    + [_fmt(m.get("length"), 1)]
                )
        out.append(
            _table(["skill", "routing", "n"] + _TEXT_HEADER + ["length"], rows, "ll" + "r" * 7)
        )
        out.append("")

    preds = report.get("predictions")
    if isinstance(preds, dict) and isinstance(preds.get("all"), dict):
        out += ["## Scored predictions file", ""]
        rows = [["**all**", _fmt(preds["all"].get("n"))] + _text_cells(preds["all"])
                + [_fmt(preds["all"].get("length"), 1)]]
        for skill, m in (preds.get("skills") or {}).items():
            rows.append([_esc(skill), _fmt(m.get("n"))] + _text_cells(m) + [_fmt(m.get("length"), 1)])
        out += [_table(["skill", "n"] + _TEXT_HEADER + ["length"], rows), ""]

    labels = routing["labels"]
    confusion = routing["confusion"]
    out += [
        "## Routing",
        "",
        f"Accuracy: **{_fmt(routing['accuracy'])}** over "
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
            rows.append([_esc(name), "–", "–", "–", _fmt(support)])
        else:
            rows.append(
                [_esc(name), _fmt(m["precision"]), _fmt(m["recall"]), _fmt(m["f1"]),
                 _fmt(support)]
            )
    if rows:
        out += [_table(["skill", "precision", "recall", "F1", "support"], rows), ""]
    if labels:
        out += ["Confusion matrix (rows: true skill, columns: routed skill):", ""]
        rows = [[f"**{_esc(t)}**"] + [str(c) for c in confusion[i]] for i, t in enumerate(labels)]
        out += [_table(["true \\ routed"] + labels, rows), ""]
    out += [f"![Routing confusion matrix]({plots['confusion'].name})", ""]

    from .user_report import user_markdown

    out += user_markdown(report, plots.get("reliability"))

    if forgetting_parsed is not None:
        order, metric, methods = forgetting_parsed
        out += [
            "## Forgetting",
            "",
            f"{_esc(metric)} of each skill after each training stage; skills were trained "
            "in the order " + " → ".join(f"`{_esc(s)}`" for s in order) + ". *Δ* is the "
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
                rows.append([_esc(skill)] + [_fmt(v, 2) for v in values] + [delta])
            out += [f"**{_esc(method)}**", "", _table(["skill"] + stage_hdr + ["Δ"], rows), ""]
        out += [f"![Forgetting]({plots['forgetting'].name})", ""]

    return "\n".join(out).rstrip() + "\n"


# --------------------------------------------------------------------------- plots


def _no_data(ax, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what}", ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _plot_ppl(skills: dict, path: Path) -> None:
    names = list(skills)
    fig = _new_figure(max(5.0, 1.4 * len(names) + 2.0), 4.2)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_title("Perplexity per skill: adapter vs bare backbone (lower is better)")
    if not names:
        _no_data(ax, "skills")
    else:
        import numpy as np

        x = np.arange(len(names))
        width = 0.38
        nan = float("nan")
        adapter = [skills[n]["ppl"] if skills[n]["ppl"] is not None else nan for n in names]
        base = [
            skills[n]["ppl_backbone"] if skills[n]["ppl_backbone"] is not None else nan
            for n in names
        ]
        b1 = ax.bar(x - width / 2, adapter, width, label="with adapter", color="#1f77b4")
        b2 = ax.bar(x + width / 2, base, width, label="bare backbone", color="#aaaaaa")
        for bars in (b1, b2):
            ax.bar_label(bars, fmt="%.1f", padding=2, fontsize=8)
        ax.set_xticks(x, names, rotation=20 if len(names) > 4 else 0)
        ax.set_xlabel("skill")
        ax.set_ylabel("perplexity")
        finite = [v for v in adapter + base if math.isfinite(v)]
        if finite:
            ax.set_ylim(0, max(finite) * 1.12)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2, frameon=False)
    _save_figure(fig, path)


def _plot_confusion(labels: list[str], confusion: list[list[int]], accuracy, path: Path) -> None:
    k = len(labels)
    side = max(4.0, 0.7 * k + 2.5)
    fig = _new_figure(side + 1.0, side)
    ax = fig.add_subplot(1, 1, 1)
    title = "Routing confusion matrix"
    if accuracy is not None:
        title += f" (accuracy {accuracy:.3f})"
    ax.set_title(title)
    if not k:
        _no_data(ax, "routing labels")
    else:
        import numpy as np

        mat = np.asarray(confusion, dtype=float)
        im = ax.imshow(mat, cmap="Blues", vmin=0)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="turns")
        vmax = mat.max() if mat.size else 0
        for i in range(k):
            for j in range(k):
                c = int(mat[i, j])
                ax.text(j, i, str(c), ha="center", va="center", fontsize=9,
                        color="white" if vmax and c > 0.6 * vmax else "black")
        ax.set_xticks(range(k), labels, rotation=45 if k > 3 else 0,
                      ha="right" if k > 3 else "center")
        ax.set_yticks(range(k), labels)
        ax.set_xlabel("routed skill")
        ax.set_ylabel("true skill")
    _save_figure(fig, path)


def _plot_forgetting(order, metric, methods, path: Path) -> None:
    n = len(methods)
    fig = _new_figure(max(5.0, 4.5 * n), 4.2)
    skills = sorted({s for per in methods.values() for s in per},
                    key=lambda s: (order.index(s) if s in order else len(order), s))
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    colors = {s: cmap(i % 10) for i, s in enumerate(skills)}
    x = list(range(len(order)))
    ax0 = None
    for idx, (method, per) in enumerate(methods.items()):
        ax = fig.add_subplot(1, n, idx + 1, sharey=ax0)
        ax0 = ax0 or ax
        for skill, values in per.items():
            ys = [v if v is not None else float("nan") for v in values]
            ax.plot(x, ys, marker="o", label=skill, color=colors[skill])
        ax.set_title(method)
        ax.set_xticks(x, [f"after\n{s}" for s in order])
        ax.set_xlim(-0.4, len(order) - 0.6)
        ax.set_xlabel("training stage")
        ax.set_ylabel(metric)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    fig.suptitle(f"Forgetting: {metric} of each skill as later skills are trained")
    _save_figure(fig, path)


# --------------------------------------------------------------------------- entry point


def write_report(report: dict, out_dir: Path, forgetting: dict | None = None) -> list[Path]:
    """Write report.json, report.md, ppl.png, confusion.png (and forgetting.png).

    ``report`` follows the module docstring (docs/DESIGN.md keys plus optional extra
    top-level keys); ``forgetting`` is the optional forgetting dict described
    there and is also stored under ``report.json["forgetting"]``. ``out_dir`` is
    created if needed. Returns the written paths, JSON first then Markdown then
    the PNGs. Raises ``ValueError`` when a required key is missing or mistyped,
    before anything is written.
    """
    out_dir = Path(out_dir)
    data = validate_report(report)
    parsed = None
    if forgetting is not None:
        parsed = _validate_forgetting(forgetting)
        order, metric, methods = parsed
        data["forgetting"] = {"order": order, "metric": metric, **methods}
    data = _jsonable(data)
    try:
        text = json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    except (TypeError, ValueError) as exc:
        raise ValueError(f"report: not JSON-serialisable: {exc}") from None

    out_dir.mkdir(parents=True, exist_ok=True)
    plots = {"ppl": out_dir / "ppl.png", "confusion": out_dir / "confusion.png"}
    if parsed is not None:
        plots["forgetting"] = out_dir / "forgetting.png"
    if data.get("conversations"):
        plots["reliability"] = out_dir / "reliability.png"

    json_path = out_dir / "report.json"
    md_path = out_dir / "report.md"
    _write_text(json_path, text)
    _plot_ppl(data["skills"], plots["ppl"])
    routing = data["routing"]
    _plot_confusion(routing["labels"], routing["confusion"], routing["accuracy"],
                    plots["confusion"])
    if parsed is not None:
        _plot_forgetting(*parsed, plots["forgetting"])
    if "reliability" in plots:
        from .user_report import plot_reliability

        plot_reliability(data["conversations"]["calibration"], plots["reliability"])
    _write_text(md_path, _markdown(data, parsed, plots))
    return [json_path, md_path, *plots.values()]
