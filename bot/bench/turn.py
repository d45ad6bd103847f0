"""Figures of the whole bot: the manager's share of a turn, and the wall time of adding a skill."""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import torch

from skills.data import Example, write_jsonl
from skills.readers import read_source
from skills.spec import AdapterTraining

from .measure import Figure, figure, paired, race

HISTORIES = [
    ["I failed my exam today."],
    ["Hi there!", "Hello, how are you?", "My laptop will not connect to the wifi any more."],
    ["Who wrote Hamlet?"],
    ["I feel so lonely since I moved to a new city."],
]


def routing_figure(bot, repeats: int, bar=None) -> tuple[Figure, dict[str, tuple[float, str]]]:
    """``manager.route(history)`` against a whole ``respond(history, skill="auto")``, summed over :data:`HISTORIES`."""
    name = "routing_share_of_turn"
    if bot.manager is None or not bot.skills:
        if bar is not None:
            bar.update(2 * (repeats + 1))
        return figure(name, None, "no dialogue manager or no skill installed"), {}

    def route() -> None:
        for h in HISTORIES:
            bot.manager.route(h)

    def turn() -> None:
        for h in HISTORIES:
            torch.manual_seed(0)  # a sampling skill then answers alike in every repeat
            bot.respond(h, skill="auto")

    t = race({"route": route, "turn": turn}, repeats, bar=bar)
    share = paired(t, lambda r: r["route"] / r["turn"])
    return figure(name, share), {"route_time": (paired(t, lambda r: r["route"] / len(HISTORIES)), "s"),
                                 "turn_time": (paired(t, lambda r: r["turn"] / len(HISTORIES)), "s")}


def synthetic_examples(n: int, chitchat: bool = True) -> list[Example]:
    """``n`` dialogue examples: held-out Chit-Chat exchanges, or templated ones where those are short."""
    if chitchat:
        try:
            examples = read_source("chitchat:valid", Path.cwd()).examples
            if len(examples) >= n:
                return examples[:n]
        except (ValueError, OSError, ImportError):
            pass
    things = ["computer", "printer", "router", "laptop", "screen", "phone", "keyboard", "mouse", "speaker", "camera"]
    faults = ["start", "connect", "charge", "print", "update", "boot", "respond", "sync", "turn on", "save"]
    times = ["today", "since monday", "after the update", "this morning", "again", "every night", "lately",
             "since the move", "after a crash", "all week"]
    rows = [(t, f, w) for w in times for f in faults for t in things][:n]
    return [Example([f"my {t} will not {f} {w}"], f"try restarting the {t}, then check that it can {f} again")
            for t, f, w in rows]


def skill_add_figure(backbone, skills_dir: Path | None, device: str, examples: int) -> tuple[Figure, dict[str, tuple[float, str]]]:
    """Time :func:`bot.skill_builder.add_skill` on ``examples`` examples, into a copy of ``skills_dir``."""
    from skills import default_skills_dir

    from ..chatbot import AdapterBot
    from ..skill_builder import add_skill

    source = Path(skills_dir) if skills_dir is not None else default_skills_dir()
    with tempfile.TemporaryDirectory(prefix="adapterbot-bench-") as tmp:
        root = Path(tmp) / "skills"
        if source.is_dir():
            shutil.copytree(source, root)
        else:
            root.mkdir()
        data = Path(tmp) / "bench_skill.jsonl"
        write_jsonl(synthetic_examples(examples, chitchat=examples > 100), data)
        bot = AdapterBot.from_pretrained(backbone, root, device=device)
        window = bot.model.backbone.config.n_positions
        training = AdapterTraining(max_length=min(AdapterTraining().max_length, window))
        start = time.perf_counter()
        result = add_skill(bot, "bench_skill", data, description="benchmark skill", replace=True, training=training)
        seconds = time.perf_counter() - start
        epochs = (bot.registry.describe("bench_skill").get("card") or {}).get("epochs", [])
    note = "" if examples == 1000 else f"{examples} examples (quick run), target set for 1,000"
    return figure("skill_add_time", seconds, note), {
        "skill_add_examples": (float(result.examples), "examples"), "skill_add_train_time": (result.train_seconds, "s"),
        "skill_add_epochs": (float(len(epochs)), "epochs")}
