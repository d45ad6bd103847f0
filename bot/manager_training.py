"""Training the dialogue manager on the installed skills plus open chit-chat (``none``).

Each skill's contexts come from the splits recorded in its folder at install time, shaped
into conversations by :mod:`bot.conversations` (after chit-chat openings and after other
skills' exchanges; chit-chat after the skill's exchanges goes to ``none``); ``none`` histories
of every length come from Chit-Chat. A skill added later (``skill add``) joins with its own
contexts only (no other skill's data is read then): as they stand and after chit-chat.
The skills' ``train`` splits and Chit-Chat's ``train`` conversations fill the training memory,
their ``valid`` counterparts the calibration memory and the threshold; nothing of ``test``.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import torch

from manager import NONE, DialogueManager, ManagerConfig, routing_report
from skills.corpora import Split
from skills.data import Example, read_source

from . import conversations
from .chatbot import MANAGER_DIR, AdapterBot
from .features import NGRAMS, BackboneFeatures

NONE_HISTORIES = {"train": 1200, "valid": 400}
THRESHOLDS = (0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def split_examples(bot: AdapterBot, split: str) -> dict[str, list[Example]]:
    """Each loaded skill's examples from its recorded ``split`` file; a skill without one (a PEFT import
    without ``--data``) is refused by name, with what to do."""
    missing = [name for name in bot.skills if not (bot.registry.path(name) / f"{split}.jsonl").is_file()]
    if missing:
        raise FileNotFoundError(
            f"skill(s) {', '.join(map(repr, missing))} have no recorded {split}.jsonl, so the manager cannot learn "
            "them (a PEFT import without --data): run `adapterbot skill import NAME --peft DIR --replace --data FILE`, "
            "or `adapterbot skill remove NAME`")
    return {name: read_source(str(bot.registry.path(name) / f"{split}.jsonl"), Path(".")).examples for name in bot.skills}


def class_histories(examples: list[Example], split: Split, seed: int = 0) -> list[list[str]]:
    """One skill's routing histories from its examples of ``split`` (see :func:`bot.conversations.skill_histories`)."""
    return conversations.skill_histories([e.context for e in examples], split, seed)


def routing_data(bot: AdapterBot, split: Split) -> dict[str, list[list[str]]]:
    """Histories per class, ``none`` first, from the skills' ``split`` and Chit-Chat's ``split``."""
    examples = split_examples(bot, split)
    n = NONE_HISTORIES.get(split, NONE_HISTORIES["valid"])
    after = [h for name in bot.skills for h in conversations.chitchat_after_skill(examples[name], split)]
    data = {NONE: conversations.chitchat_histories(split, n) + after + conversations.open_chitchat(split)}
    for name in bot.skills:
        others = [e for other in bot.skills if other != name for e in examples[other]]
        data[name] = class_histories(examples[name], split) + conversations.after_other_skills(
            [e.context for e in examples[name]], others, split)
    return data


def first_turn_data(bot: AdapterBot, split: Split, n_none: int = 300) -> dict[str, list[list[str]]]:
    """Histories per class as they stand, no chit-chat around them: each skill's contexts of ``split``,
    and ``n_none`` Chit-Chat histories of ``split`` (the single-turn routing figure)."""
    data = {NONE: conversations.chitchat_histories(split, n_none)}
    data.update({name: [e.context for e in rows] for name, rows in split_examples(bot, split).items()})
    return data


def balanced_recall(report: dict) -> float:
    """Mean per-class recall of a routing report: every class counts the same, however many turns it has."""
    return sum(r["recall"] for r in report["per_skill"].values()) / len(report["per_skill"])


def calibrate_threshold(manager: DialogueManager, data: dict[str, list[list[str]]]) -> float:
    """The threshold in THRESHOLDS with the best balanced recall on ``data`` (ties: the lowest).

    The histories' features are computed once and routed under every threshold."""
    gold = [name for name, histories in data.items() for _ in histories]
    features = manager.features([h for histories in data.values() for h in histories])
    best, best_score = manager.config.threshold, -1.0
    for threshold in THRESHOLDS:
        manager.config.threshold = threshold
        predicted = [d.skill or NONE for d in manager.route_features(features)]
        score = balanced_recall(routing_report(gold, predicted, manager.classes))
        if score > best_score:
            best, best_score = threshold, score
    manager.config.threshold = best
    return best


class _Remembered:
    """A feature function that computes each history's features once: the sweep's head widths, its threshold
    search and its validation all read the same histories."""

    def __init__(self, fn: BackboneFeatures) -> None:
        self.fn, self.name, self._seen = fn, fn.name, {}

    def __call__(self, histories: list[list[str]]) -> torch.Tensor:
        keys = [tuple(h) for h in histories]
        new = list(dict.fromkeys(k for k in keys if k not in self._seen))
        if new:
            self._seen.update(zip(new, self.fn([list(k) for k in new])))
        return torch.stack([self._seen[k] for k in keys])


def train_manager(bot: AdapterBot, threshold: float | None = None, config: ManagerConfig | None = None,
                  blocks: Sequence[int] = (), hidden: Sequence[int] = (), ngrams: Sequence[int] = (),
                  previous: Sequence[int] = ()) -> dict:
    """Fit a new manager on every loaded skill, save it beside the skills, load it into ``bot``.

    Without an explicit ``threshold`` it is chosen on validation histories (never the test ones).
    ``blocks`` (numbers of backbone blocks the features read), ``ngrams`` (widths of the newest
    message's hashed n-grams, 0 for none), ``previous`` (widths of the user's previous message's
    hashed n-grams, 0 for none) and ``hidden`` (head widths, 0 for linear) are
    candidates: every combination is fitted and the one with the best balanced recall on
    validation wins (defaults: the features ``bot`` has, and ``config.hidden``).

    Returns the routing report (accuracy, per-skill P/R/F1, confusion) on held-out single turns,
    plus ``"sweep"``: each candidate's validation balanced recall, keyed ``"blocks=N,ngrams=G,previous=P,hidden=H"``.
    """
    if not bot.skills:
        raise ValueError(f"no skills are installed in {bot.registry.root}; add one with `adapterbot skill add`")
    config = config or ManagerConfig()
    train, validation = routing_data(bot, "train"), routing_data(bot, "valid")
    features = [BackboneFeatures(bot.model, bot.tokenizer, layers=n, ngrams=g, previous=v)
                for n in blocks or [bot.features.layers] for g in ngrams or [NGRAMS] for v in previous or [0]
                ] if blocks or ngrams or previous else [bot.features]
    best, best_score, sweep = None, -1.0, {}
    for fn in features:
        remembered = _Remembered(fn)
        for width in hidden or [config.hidden]:
            manager = DialogueManager(dataclasses.replace(config, hidden=width), feature_fn=remembered)
            if threshold is not None:
                manager.config.threshold = threshold
            manager.fit(train, calibration=validation)
            if threshold is None:
                calibrate_threshold(manager, validation)
            score = balanced_recall(manager.evaluate(validation))
            sweep[f"blocks={fn.layers},ngrams={fn.ngrams.dim if fn.ngrams else 0},"
                  f"previous={fn.previous.dim if fn.previous else 0},hidden={width}"] = round(score, 4)
            if score > best_score:
                best, best_score = manager, score
                best.feature_fn = fn
    best.save(bot.registry.root / MANAGER_DIR)
    bot.manager, bot.features = best, best.feature_fn
    return {**best.evaluate(first_turn_data(bot, "test")), "sweep": sweep}
