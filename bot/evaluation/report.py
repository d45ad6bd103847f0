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

The parts live beside this module: :mod:`.report_schema` (checking and normalising the report),
:mod:`.report_markdown` (``report.md`` and the table cells) and :mod:`.report_plots` (the PNGs);
files are written by :func:`skills.files.atomic_write`.
"""

from __future__ import annotations

import json
from pathlib import Path

from skills.files import atomic_write_text

from .report_markdown import _markdown
from .report_plots import _plot_confusion, _plot_forgetting, _plot_ppl
from .report_schema import (PER_SKILL_KEYS, ROUTING_KEYS, SKILL_KEYS, _jsonable, _validate_forgetting,
                            validate_report)

__all__ = ["write_report", "validate_report", "SKILL_KEYS", "ROUTING_KEYS", "PER_SKILL_KEYS"]


def print_and_save(text: str, out: Path | None) -> None:
    """Print a command's report and, given ``--out``, also write it there atomically (its folder made as needed)."""
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, text)
    print(text)


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
    atomic_write_text(json_path, text)
    _plot_ppl(data["skills"], plots["ppl"])
    routing = data["routing"]
    _plot_confusion(routing["labels"], routing["confusion"], routing["accuracy"],
                    plots["confusion"])
    if parsed is not None:
        _plot_forgetting(*parsed, plots["forgetting"])
    if "reliability" in plots:
        from .user_report import plot_reliability

        plot_reliability(data["conversations"]["calibration"], plots["reliability"])
    atomic_write_text(md_path, _markdown(data, parsed, plots))
    return [json_path, md_path, *plots.values()]
