"""Choosing ``ANSWERED_FLOOR``: when a knowledge skill whose file answers the message takes a turn routed elsewhere.

``python -m bot.evaluation.answered_floor --split valid --out docs/reports/answered_floor.md`` routes the eval's sets
(:func:`~bot.evaluation.conversation_routing.routing_sets` of that split) in Auto mode without the rule (a floor above
1) and with each candidate floor, and counts, set by set, the turns that moved to a knowledge skill: to their own class
(right) or away from it (wrong). The candidate with the most right moves less wrong ones over all sets (the higher
floor on a tie) is the one to ship; ``--split test`` reports the shipped floor's effect on the held-out sets.
"""
from __future__ import annotations

import argparse
from pathlib import Path

FLOORS = (0.1, 0.2, 0.3, 0.4)
OFF = 1.01  # no score reaches it


def measure(bot, split: str, floors: tuple[float, ...] = FLOORS) -> dict:
    """``{floor: {set: {"n", "right", "wrong"}}}``: turns whose route the rule changes at ``floor``."""
    from .conversation_routing import routing_sets

    sets = {name: rows for name, rows in routing_sets(bot, split=split).items() if rows}
    shipped = bot.answered_floor
    try:
        bot.answered_floor = OFF
        before = {name: [d.skill for d in bot.route_batch([h for _, h in rows])] for name, rows in sets.items()}
        out = {}
        for floor in floors:
            bot.answered_floor = floor
            out[floor] = {}
            for name, rows in sets.items():
                after = [d.skill for d in bot.route_batch([h for _, h in rows])]
                moved = [(gold, a) for (gold, _), b, a in zip(rows, before[name], after) if a != b]
                out[floor][name] = {"n": len(rows), "right": sum(a == gold for gold, a in moved),
                                    "wrong": sum(a != gold for gold, a in moved)}
    finally:
        bot.answered_floor = shipped
    return out


def best(report: dict) -> float:
    """The floor with the most right moves less wrong ones over all sets (the higher one on a tie)."""
    def net(floor: float) -> int:
        return sum(r["right"] - r["wrong"] for r in report[floor].values())
    return max(report, key=lambda floor: (net(floor), floor))


def markdown(report: dict, split: str, command: str) -> str:
    names = list(next(iter(report.values())))
    lines = ["# When a knowledge skill whose file answers takes a turn routed elsewhere", "", f"`{command}`", "",
             f"Split: `{split}`. Each cell: turns moved to a knowledge skill by the rule, right (to their own class) / "
             "wrong, of the set's turns.", "",
             "| floor | " + " | ".join(names) + " | net |", "|---|" + "---|" * (len(names) + 1)]
    for floor, sets in report.items():
        cells = [f"{sets[n]['right']} / {sets[n]['wrong']} of {sets[n]['n']}" for n in names]
        lines.append(f"| {floor:.2f} | " + " | ".join(cells) + f" | {sum(s['right'] - s['wrong'] for s in sets.values())} |")
    return "\n".join(lines + ["", f"Most right moves less wrong ones: **{best(report):.2f}**.", ""])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--split", default="valid", choices=["valid", "test"])
    p.add_argument("--floors", type=float, nargs="+", default=list(FLOORS))
    p.add_argument("--backbone", default=None)
    p.add_argument("--skills-dir", type=Path, default=None)
    p.add_argument("--out", type=Path, default=None, help="also write the report (markdown) here")
    args = p.parse_args(argv)
    from bot import AdapterBot

    from .report import print_and_save

    bot = AdapterBot.from_pretrained(args.backbone, args.skills_dir)
    command = f"python -m bot.evaluation.answered_floor --split {args.split}" + (f" --out {args.out}" if args.out else "")
    print_and_save(markdown(measure(bot, args.split, tuple(args.floors)), args.split, command), args.out)


if __name__ == "__main__":
    main()
