"""Class-incremental routing: what adding skills one after another does to the manager's decisions.

``python -m bot.evaluation.incremental --data a.jsonl b.jsonl c.jsonl --name a b c`` copies the
skills folder, measures held-out routing, adds each new skill in turn exactly as ``adapterbot
skill add`` does (the manager learns it from its memories only), and measures again after each
one: accuracy on the classes there before the first addition, and the share of each new skill's
held-out histories (its test contexts, as they stand and after chit-chat) routed to it. Nothing in
the original skills folder changes.
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from manager import routing_report

EARLIER_DROP_MAX, NEW_RECALL_MIN = 2.0, 0.9


def earlier_accuracy(bot, data: dict[str, list[list[str]]]) -> float:
    """Top-1 routing accuracy over the given classes' held-out histories."""
    gold, predicted = [], []
    for label, histories in data.items():
        for d in bot.route_batch(histories):
            gold.append(label)
            predicted.append(d.skill or "none")
    return routing_report(gold, predicted, sorted(set(gold) | set(predicted)))["accuracy"]


def measure(backbone: str | None, skills_dir: Path | None, data: list[Path], names: list[str],
            limit: int | None = None) -> dict:
    """Add ``names[i]`` from ``data[i]`` in order; the figures after each addition and in total."""
    from bot import AdapterBot
    from bot.manager_training import routing_data
    from bot.skill_builder import add_skill
    from skills import default_skills_dir

    if len(data) != len(names):
        raise ValueError(f"--data names {len(data)} file(s) but --name {len(names)} skill(s); give one name per file")
    source = Path(skills_dir) if skills_dir else default_skills_dir()
    steps = []
    with tempfile.TemporaryDirectory(prefix="adapterbot-incremental-") as tmp:
        work = Path(tmp) / "skills"
        shutil.copytree(source, work)
        bot = AdapterBot.from_pretrained(backbone, work)
        if bot.manager is None:
            raise ValueError(f"no dialogue manager in {source}; run `adapterbot manager train` first")
        earlier = routing_data(bot, "test")  # measured again after each addition: the same histories
        before = earlier_accuracy(bot, earlier)
        for path, name in zip(data, names):
            result = add_skill(bot, name, path, description=f"incremental routing check: {name}", max_examples=limit)
            held_out = routing_data(bot, "test")
            routed = sum(d.skill == name for d in bot.route_batch(held_out[name]))
            steps.append({"skill": name, "examples": result.examples, "test_histories": len(held_out[name]),
                          "new_skill_recall": round(routed / len(held_out[name]), 4),
                          "earlier_accuracy": round(earlier_accuracy(bot, earlier), 4)})
    drop = 100 * (before - steps[-1]["earlier_accuracy"])
    return {
        "earlier_classes": list(earlier), "earlier_accuracy_before": round(before, 4), "steps": steps,
        "earlier_drop_points": round(drop, 2),
        "targets": {"earlier_drop_points_max": EARLIER_DROP_MAX, "new_skill_recall_min": NEW_RECALL_MIN},
        "holds": bool(drop <= EARLIER_DROP_MAX and all(s["new_skill_recall"] >= NEW_RECALL_MIN for s in steps)),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, nargs="+", required=True, help="the new skills' JSONL files, in the order they are added")
    p.add_argument("--name", nargs="+", required=True, help="the new skills' names, one per --data file")
    p.add_argument("--backbone", default=None)
    p.add_argument("--skills-dir", type=Path, default=None)
    p.add_argument("--limit", type=int, default=None, help="at most this many examples of each new skill")
    p.add_argument("--out", type=Path, default=None, help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    from .report import print_and_save

    result = measure(args.backbone, args.skills_dir, args.data, args.name, args.limit)
    print_and_save(json.dumps(result, indent=2) + "\n", args.out)


if __name__ == "__main__":
    main()
