"""Training the dialogue manager on the installed skills plus open chit-chat (``none``).

Each skill's contexts come from the splits recorded in its folder at install time;
``none`` contexts come from the Chit-Chat dataset's held-out conversations (the backbone
never trained on them). Routing is measured on the skills' test splits and Chit-Chat's
test conversations.
"""
from __future__ import annotations

from pathlib import Path

from manager import NONE, DialogueManager, ManagerConfig
from skills.corpora import chitchat_conversations
from skills.data import read_source

from .chatbot import MANAGER_DIR, AdapterBot

NONE_TRAIN, NONE_TEST = 800, 300
THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


def chitchat_histories(split: str, limit: int, turns: int = 3, offset: int = 0) -> list[list[str]]:
    """Up to ``limit`` evenly spaced histories (the last ``turns`` turns before each reply) from Chit-Chat's ``split``.

    ``offset`` shifts the spacing, so ``offset=1`` gives histories disjoint from ``offset=0``'s.
    """
    out = []
    for conv in chitchat_conversations(split):
        for i in range(len(conv.turns)):
            out.append(conv.turns[max(0, i - turns + 1) : i + 1])
    step = max(2, len(out) // limit)
    return out[offset % step :: step][:limit]


def skill_histories(bot: AdapterBot, split: str) -> dict[str, list[list[str]]]:
    """Each loaded skill's contexts from its recorded ``split`` file."""
    out = {}
    for name in bot.skills:
        path = bot.registry.path(name) / f"{split}.jsonl"
        out[name] = [e.context for e in read_source(str(path), Path(".")).examples]
    return out


def routing_data(bot: AdapterBot, held_out: bool) -> dict[str, list[list[str]]]:
    """Histories per class, ``none`` included: training data, or the held-out test contexts."""
    data = {NONE: chitchat_histories("test" if held_out else "valid", NONE_TEST if held_out else NONE_TRAIN)}
    data.update(skill_histories(bot, "test" if held_out else "train"))
    return data


def validation_data(bot: AdapterBot) -> dict[str, list[list[str]]]:
    """Histories per class for choosing the threshold: the skills' valid splits, unseen Chit-Chat turns."""
    data = {NONE: chitchat_histories("valid", NONE_TEST, offset=1)}
    data.update(skill_histories(bot, "valid"))
    return data


def calibrate_threshold(manager: DialogueManager, data: dict[str, list[list[str]]]) -> float:
    """The threshold in THRESHOLDS with the best routing accuracy on ``data`` (ties: the lowest)."""
    best, best_accuracy = manager.config.threshold, -1.0
    for threshold in THRESHOLDS:
        manager.config.threshold = threshold
        accuracy = manager.evaluate(data)["accuracy"]
        if accuracy > best_accuracy:
            best, best_accuracy = threshold, accuracy
    manager.config.threshold = best
    return best


def train_manager(bot: AdapterBot, threshold: float | None = None) -> dict:
    """Fit a new manager on every loaded skill, save it beside the skills, load it into ``bot``.

    Without an explicit ``threshold`` it is chosen on validation histories (never the test ones).

    Returns the routing report (accuracy, per-skill P/R/F1, confusion) on held-out contexts.
    """
    if not bot.skills:
        raise ValueError(f"no skills are installed in {bot.registry.root}; add one with `adapterbot skill add`")
    config = ManagerConfig() if threshold is None else ManagerConfig(threshold=threshold)
    manager = DialogueManager(config, feature_fn=bot.features)
    manager.fit(routing_data(bot, held_out=False))
    if threshold is None:
        calibrate_threshold(manager, validation_data(bot))
    manager.save(bot.registry.root / MANAGER_DIR)
    bot.manager = manager
    return manager.evaluate(routing_data(bot, held_out=True))
