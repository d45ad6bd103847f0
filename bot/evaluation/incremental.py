"""Class-incremental routing: what adding one skill does to the manager's earlier decisions.

``python -m bot.evaluation.incremental --data new.jsonl --name NAME`` copies the skills folder,
measures held-out routing, adds the new skill exactly as ``adapterbot skill add`` does (the
manager learns it from its exemplar memory only), and measures again: accuracy on the earlier
classes before and after, and the share of the new skill's held-out contexts routed to it.
Nothing in the original skills folder changes.
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from manager import routing_report


def earlier_accuracy(bot, data: dict[str, list[list[str]]]) -> float:
    """Top-1 routing accuracy over the given classes' held-out histories."""
    gold, predicted = [], []
    for label, histories in data.items():
        for d in bot.manager.route_batch(histories):
            gold.append(label)
            predicted.append(d.skill or "none")
    return routing_report(gold, predicted, sorted(set(gold) | set(predicted)))["accuracy"]


def measure(backbone: str | None, skills_dir: Path | None, data: Path, name: str, limit: int | None = None) -> dict:
    from bot import AdapterBot
    from bot.manager_training import routing_data
    from bot.skill_builder import add_skill
    from skills import default_skills_dir

    source = Path(skills_dir) if skills_dir else default_skills_dir()
    with tempfile.TemporaryDirectory(prefix="adapterbot-incremental-") as tmp:
        work = Path(tmp) / "skills"
        shutil.copytree(source, work)
        bot = AdapterBot.from_pretrained(backbone, work)
        if bot.manager is None:
            raise ValueError(f"no dialogue manager in {source}; run `adapterbot manager train` first")
        held_out = routing_data(bot, "test")
        before = earlier_accuracy(bot, held_out)
        result = add_skill(bot, name, data, description=f"incremental routing check: {name}", max_examples=limit)
        after_all = routing_data(bot, "test")
        after = earlier_accuracy(bot, {k: v for k, v in after_all.items() if k != name})
        new = after_all[name]
        routed = sum(d.skill == name for d in bot.manager.route_batch(new))
    return {
        "earlier_classes": list(held_out), "new_skill": name, "new_examples": result.examples,
        "earlier_accuracy_before": round(before, 4), "earlier_accuracy_after": round(after, 4),
        "earlier_drop_points": round(100 * (before - after), 2),
        "new_skill_recall": round(routed / len(new), 4), "new_skill_test_contexts": len(new),
        "targets": {"earlier_drop_points_max": 2.0, "new_skill_recall_min": 0.9},
        "holds": bool(100 * (before - after) <= 2.0 and routed / len(new) >= 0.9),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="the new skill's JSONL (the manager has never seen it)")
    p.add_argument("--name", required=True, help="the new skill's name")
    p.add_argument("--backbone", default=None)
    p.add_argument("--skills-dir", type=Path, default=None)
    p.add_argument("--limit", type=int, default=None)
    args = p.parse_args(argv)
    print(json.dumps(measure(args.backbone, args.skills_dir, args.data, args.name, args.limit), indent=2))


if __name__ == "__main__":
    main()
