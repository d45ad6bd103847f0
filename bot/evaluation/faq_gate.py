"""The gate of a skill added with ``--faq``: how its threshold decides, measured on FAQ files of several topics.

``python -m bot.evaluation.faq_gate --data docs/examples/shop.jsonl docs/examples/travel.jsonl
docs/examples/cooking.jsonl --out docs/reports/faq_gate.md``: each file becomes a FAQ (every exchange a passage, as
``skill add --faq`` writes it), and for each threshold the report gives

- ``own``: of the file's contexts, each searched without its own exchange (a fresh phrasing of a question in the
  FAQ), the share decided right: a passage of its own group passes the gate, another group's is turned away;
- ``away``: of questions the FAQ cannot answer (the other files' first turns, trivia's out-of-knowledge questions and
  written open chit-chat, validation splits), the share turned away;

and the threshold with the best mean of both, which ``skill add --faq`` uses (``FAQ_MIN_OVERLAP`` in
:mod:`bot.skill_builder`).

No model is loaded: the search and its gate alone decide. The files need ``group`` fields.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from skills.data import read_source
from skills.knowledge import Retriever, answer_of, exchange_passage, write_passages

THRESHOLDS = (0.0, *(round(0.30 + 0.05 * i, 2) for i in range(9)))  # no gate, then 0.30 .. 0.70


def outside_questions() -> list[str]:
    """Questions no topic FAQ answers: trivia's out-of-knowledge and written open chit-chat (validation splits)."""
    from bot.conversations import open_chitchat
    from bot.evaluation.knowledge_check import out_of_knowledge

    return list(out_of_knowledge("valid")) + [h[-1] for h in open_chitchat("valid")]


def measure(paths: list[Path]) -> dict:
    """``{file name: {"own": {t: share}, "away": {t: share}, "contexts", "questions"}}``."""
    examples = {p.stem: read_source(str(p), Path.cwd()).examples for p in paths}
    missing = [name for name, rows in examples.items() if any(e.group is None for e in rows)]
    if missing:
        raise ValueError(f"every example needs a 'group' to tell its own problem's passages: {', '.join(missing)}")
    outside = outside_questions()
    out = {}
    with tempfile.TemporaryDirectory(prefix="adapterbot-faq-gate-") as tmp:
        for name, rows in examples.items():
            path = write_passages([exchange_passage(e.context, e.response) for e in rows], Path(tmp) / f"{name}.jsonl")
            retriever, group = Retriever.from_file(path), {e.response.strip(): e.group for e in rows}
            own = []
            for e in rows:
                found = retriever.lookup_conversation(e.context, 0.0, 1, avoid=[e.response])
                own.append((found.coverage, found.text is not None and group.get(answer_of(found.text)) == e.group))
            away = [retriever.lookup(q) for q in [e.context[0] for other, o in examples.items() if other != name for e in o]
                    + outside]
            out[name] = {"contexts": len(own), "questions": len(away),
                         "own": {t: sum((c >= t) == hit for c, hit in own) / len(own) for t in THRESHOLDS},
                         "away": {t: sum(f.passage is None or f.coverage < t for f in away) / len(away) for t in THRESHOLDS}}
    return out


def chosen(report: dict) -> float:
    """The threshold with the best mean of ``own`` and ``away`` over the files (the lower one on a tie)."""
    def score(t: float) -> float:
        return round(sum(r["own"][t] + r["away"][t] for r in report.values()) / (2 * len(report)), 3)
    return max(THRESHOLDS, key=lambda t: (score(t), -t))


def markdown(report: dict, command: str) -> str:
    lines = ["# The gate of a `--faq` skill", "", f"`{command}`", "",
             "`own`: a fresh phrasing of a question in the FAQ (its context searched without its own exchange) decided "
             "right (its own problem's passage used, another's turned away). `away`: questions the FAQ cannot answer "
             "turned away.", "",
             "| threshold | " + " | ".join(f"{n}: own | {n}: away" for n in report) + " |",
             "|---|" + "---|---|" * len(report)]
    for t in THRESHOLDS:
        lines.append(f"| {t:.2f}{' (no gate)' if t == 0 else ''} | "
                     + " | ".join(f"{r['own'][t]:.2f} | {r['away'][t]:.2f}" for r in report.values()) + " |")
    sizes = "; ".join(f"{n}: {r['contexts']} contexts, {r['questions']} questions" for n, r in report.items())
    return "\n".join(lines + ["", f"Best mean of both: **{chosen(report):.2f}**. Sizes: {sizes}.", ""])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, nargs="+", required=True, help="FAQ files (JSONL or CSV with group fields)")
    p.add_argument("--out", type=Path, default=None, help="also write the report (markdown) here")
    args = p.parse_args(argv)
    command = "python -m bot.evaluation.faq_gate --data " + " ".join(str(d) for d in args.data)
    from .report import print_and_save

    print_and_save(markdown(measure(args.data), command + (f" --out {args.out}" if args.out else "")), args.out)


if __name__ == "__main__":
    main()
