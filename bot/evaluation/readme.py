"""The README's figure tables, rendered from the committed reports under ``docs/reports/``.

``python -m bot.evaluation.readme`` rewrites every block between ``<!-- figures:NAME -->`` and
``<!-- /figures:NAME -->`` in README.md; ``--check`` changes nothing and exits 1 when a block
differs from what the reports say (the test suite runs that check). The reports come from commands:

- ``docs/reports/eval/report.json``: ``adapterbot eval --out docs/reports/eval``;
- ``docs/reports/incremental.json``: ``python -m bot.evaluation.incremental --data ... --out docs/reports/incremental.json``;
- ``docs/reports/bench/bench.md``: ``adapterbot bench --out docs/reports/bench``;
- ``docs/reports/compare/compare.json``: ``adapterbot compare --out docs/reports/compare``;
- the skills' splits and sizes: their ``skill.yaml`` in ``skills/bundled/``.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from skills import BUNDLED_DIR
from skills.spec import SkillSpec

from .user_report import targets

ROOT = Path(__file__).resolve().parents[2]
REPORTS = ROOT / "docs" / "reports"
BLOCK = re.compile(r"(<!-- figures:(?P<name>[a-z_]+) -->\n)(?P<body>.*?)(<!-- /figures:(?P=name) -->)", re.DOTALL)


def _skills_table(report: dict) -> str:
    lines = ["| skill | train / valid / test | adapter | test ppl, adapter | test ppl, bare | ratio | F1 | F1, bare |",
             "|---|---|---|---|---|---|---|---|"]
    for name, m in report["skills"].items():
        spec = SkillSpec.load(BUNDLED_DIR / name)
        s = spec.splits
        bare = report["routings"]["backbone"][name]["f1"]
        lines.append(f"| {name} | {s['train']} / {s['valid']} / {s['test']} | {100 * spec.card['trainable_fraction']:.2f}% | "
                     f"{m['ppl']:.2f} | {m['ppl_backbone']:.2f} | {m['ppl'] / m['ppl_backbone']:.2f} | {m['f1']:.3f} | {bare:.3f} |")
    return "\n".join(lines)


def _user_table(report: dict, incremental: dict | None) -> str:
    lines = ["| figure | value | target | holds |", "|---|---|---|---|"]
    for figure, value, target, holds in targets(report):
        lines.append(f"| {figure} | {'–' if value is None else f'{value:.3f}'} | {target} | {'yes' if holds else '**no**'} |")
    if incremental:
        names = ", ".join(s["skill"] for s in incremental["steps"])
        lines.append(f"| after adding {names} in sequence: earlier classes' accuracy, change in points "
                     f"({100 * incremental['earlier_accuracy_before']:.1f}% before) | "
                     f"{-incremental['earlier_drop_points']:+.2f} | >= -{incremental['targets']['earlier_drop_points_max']:g} | "
                     f"{'yes' if incremental['earlier_drop_points'] <= incremental['targets']['earlier_drop_points_max'] else '**no**'} |")
        for s in incremental["steps"]:
            ok = s["new_skill_recall"] >= incremental["targets"]["new_skill_recall_min"]
            lines.append(f"| new skill {s['skill']} ({s['examples']} examples): its held-out histories routed to it | "
                         f"{s['new_skill_recall']:.3f} | >= {incremental['targets']['new_skill_recall_min']:g} | "
                         f"{'yes' if ok else '**no**'} |")
    return "\n".join(lines)


def _bench_table(bench_md: str) -> str:
    lines = bench_md.splitlines()
    machine = next(line for line in lines if line.startswith("Machine:"))
    start = lines.index("| figure | value | target | holds |")
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("|"))
    return "\n".join([machine, "", *lines[start:end]])


def _compare_block(compare: dict) -> str:
    from .compare import compare_table, settings_line

    return "\n".join([settings_line(compare), "", compare_table(compare)])


def render(reports: Path = REPORTS) -> dict[str, str]:
    """Every block's text, from the reports in ``reports``."""
    report = json.loads((reports / "eval" / "report.json").read_text(encoding="utf-8"))
    incremental_path = reports / "incremental.json"
    incremental = json.loads(incremental_path.read_text(encoding="utf-8")) if incremental_path.exists() else None
    blocks = {"skills": _skills_table(report), "user": _user_table(report, incremental)}
    bench = reports / "bench" / "bench.md"
    if bench.exists():
        blocks["bench"] = _bench_table(bench.read_text(encoding="utf-8"))
    compare = reports / "compare" / "compare.json"
    if compare.exists():
        blocks["compare"] = _compare_block(json.loads(compare.read_text(encoding="utf-8")))
    return blocks


def update(readme: Path, blocks: dict[str, str]) -> tuple[str, list[str]]:
    """README text with every known block replaced, and the names of the blocks that changed."""
    text = readme.read_text(encoding="utf-8")
    changed: list[str] = []

    def swap(m: re.Match) -> str:
        name = m.group("name")
        if name not in blocks:
            return m.group(0)
        body = blocks[name].rstrip("\n") + "\n"
        if body != m.group("body"):
            changed.append(name)
        return m.group(1) + body + m.group(4)

    return BLOCK.sub(swap, text), changed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--readme", type=Path, default=ROOT / "README.md")
    p.add_argument("--reports", type=Path, default=REPORTS)
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if a block differs from the reports")
    args = p.parse_args(argv)
    text, changed = update(args.readme, render(args.reports))
    if args.check:
        if changed:
            print(f"{args.readme}: figures out of date with {args.reports}: {', '.join(changed)}; "
                  "run `python -m bot.evaluation.readme`", file=sys.stderr)
            return 1
        return 0
    args.readme.write_text(text, encoding="utf-8")
    print(f"{args.readme}: updated {', '.join(changed) or 'nothing'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
