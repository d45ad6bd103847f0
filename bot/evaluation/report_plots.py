"""The evaluation report's plots: ``ppl.png``, ``confusion.png``, ``forgetting.png``.

Plots use matplotlib's Agg canvas directly (no pyplot, no global backend change), and each PNG is
written atomically.
"""
from __future__ import annotations

import math
from pathlib import Path

from skills.files import atomic_write


def _new_figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _save_figure(fig, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=120, bbox_inches="tight"))


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
