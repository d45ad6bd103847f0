"""The dialogue manager's settings, saved as ``manager_config.json``."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from skills.fields import FieldError, check_types, from_mapping

CONFIG_NAME = "manager_config.json"
WEIGHTS_NAME = "manager_model.safetensors"
NONE = "none"
"""The class that routes a turn to the bare backbone (open chit-chat); always class index 0."""


class ManagerConfigError(FieldError):
    """A field of the manager's config is unknown or holds a bad value."""

    what = "manager config "


class ManagerFileError(ValueError):
    """A saved manager's file is missing, unreadable, or inconsistent with its other file."""


@dataclass
class ManagerConfig:
    """How the manager's head is trained and used, and what it was trained on.

    Attributes:
        threshold: the top class's probability must reach this for its skill to be chosen;
            below it the turn goes to ``none`` (the bare backbone). In ``[0, 1]``; 0 always
            takes the top class, values near 1 route only the clearest turns to a skill.
        hidden: width of the head's hidden layer; 0 means a linear head (logistic regression
            over the standardised features), otherwise Linear -> ReLU -> Linear.
        epochs: passes over the exemplar memory when the head is (re)fitted.
        learning_rate: AdamW learning rate of the head.
        weight_decay: AdamW weight decay of the head; keeps a head fitted on a few hundred
            exemplars from overfitting them.
        batch_size: exemplars per optimisation step.
        feature_batch_size: histories per call of the feature function (each call is a
            forward pass of the backbone when the default feature function is used).
        exemplars_per_class: the most feature vectors kept per class in the memory (chosen by
            herding); all that adding or removing a class later needs of the old classes.
        seed: seeds the head's initialisation and the shuffling of exemplars, so fitting the
            same data twice gives the same head.
        feature_dim: recorded by ``fit``: width ``D`` of the feature vectors; every later batch
            of features must have it.
        feature_name: recorded by ``fit``: the feature function's ``name`` (for example
            ``"backbone-lastprev:bundled:blocks=1:tokens=64"``); a manager is refused with a feature function of
            another name, since its head would read features it was not trained on.
        classes: recorded by ``fit``/``add_class``/``remove_class``: the class names in head
            order, ``"none"`` first. A value passed to a new ``DialogueManager`` is ignored.
        temperature: recorded at every (re)fit: the head's logits are divided by it before the
            softmax (temperature scaling), fitted on the held-out calibration memory so that a
            probability of 0.8 is right about 80% of the time. 1.0 when there is no calibration memory.
    """

    threshold: float = 0.5
    hidden: int = 0
    epochs: int = 60
    learning_rate: float = 1e-2
    weight_decay: float = 1e-2
    batch_size: int = 64
    feature_batch_size: int = 16
    exemplars_per_class: int = 200
    seed: int = 0
    feature_dim: int = 0
    feature_name: str = ""
    classes: list[str] = field(default_factory=list)
    temperature: float = 1.0

    def __post_init__(self) -> None:
        check_types(self, ManagerConfigError)
        if not all(self.classes) or len(set(self.classes)) != len(self.classes) or (self.classes and self.classes[0] != NONE):
            raise ManagerConfigError("classes", f"must be unique non-empty names starting with {NONE!r}, got {self.classes!r}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"manager config field 'threshold' must be in [0, 1], got {self.threshold}")
        if self.temperature <= 0:
            raise ValueError(f"manager config field 'temperature' must be > 0, got {self.temperature}")
        if self.learning_rate <= 0 or self.weight_decay < 0:
            raise ValueError("manager config fields 'learning_rate' must be > 0 and 'weight_decay' >= 0, "
                             f"got {self.learning_rate} and {self.weight_decay}")
        for name in ("epochs", "batch_size", "feature_batch_size", "exemplars_per_class"):
            if getattr(self, name) < 1:
                raise ValueError(f"manager config field {name!r} must be at least 1, got {getattr(self, name)}")
        for name in ("hidden", "feature_dim"):
            if getattr(self, name) < 0:
                raise ValueError(f"manager config field {name!r} must be at least 0, got {getattr(self, name)}")

    def save(self, folder: Path) -> None:
        (Path(folder) / CONFIG_NAME).write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> "ManagerConfig":
        """Read ``manager_config.json``; any problem is a :class:`ManagerFileError` naming the file."""
        path = Path(folder) / CONFIG_NAME
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ManagerFileError(f"{path}: missing manager config") from None
        except (OSError, json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
            raise ManagerFileError(f"{path}: not a readable JSON file ({e})") from None
        if not isinstance(data, dict):
            raise ManagerFileError(f"{path}: expected a JSON object")
        try:
            config = from_mapping(cls, data, ManagerConfigError)
        except ValueError as e:
            raise ManagerFileError(f"{path}: {e}") from None
        if not config.classes or not config.feature_name or config.feature_dim < 1:
            raise ManagerFileError(f"{path}: not a trained manager "
                                   "(fields 'classes', 'feature_name', 'feature_dim' are unset)")
        return config
