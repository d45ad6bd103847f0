"""The dialogue manager: route each turn to a skill, or to ``none`` (the bare backbone)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from . import storage
from .classifier import RoutingHead
from .config import NONE, ManagerConfig
from .features import FeatureFn, FeatureMismatchError, check_features, check_histories, feature_name
from .memory import ExemplarMemory
from .metrics import routing_report
from .training import fit_head, fit_temperature


@dataclass(frozen=True)
class Decision:
    """Where one turn goes.

    Attributes:
        skill: the chosen skill, or ``None`` for the bare backbone (class ``"none"``).
        probability: the probability of the class actually chosen, so always
            ``scores[skill or "none"]``. When the top class is a skill below the threshold, the
            turn falls back to ``none`` and this is ``scores["none"]`` (lower than the top skill's
            score, which stays readable in ``scores``).
        scores: the probability of every class, ``"none"`` included, in class order; sums to 1.
    """

    skill: str | None
    probability: float
    scores: dict[str, float]


class DialogueManager:
    """A classifier over ``["none", *skills]`` on features from a :class:`FeatureFn`.

    The head is always fitted from a compact exemplar memory (at most
    ``config.exemplars_per_class`` feature vectors per class), so :meth:`add_class` and
    :meth:`remove_class` refit in seconds without the other classes' dialogues, and
    ``fit({"none": a, "x": b})`` followed by ``add_class("y", c)`` gives exactly the head of
    ``fit({"none": a, "x": b, "y": c})``. A second, held-out memory of the same size (the
    ``calibration`` histories) fits the temperature after every refit, so the scores stay
    calibrated after a class is added or removed.
    """

    def __init__(self, config: ManagerConfig | None = None, feature_fn: FeatureFn | None = None) -> None:
        self.config = dataclasses.replace(config or ManagerConfig(), classes=[])
        self.memory = ExemplarMemory()
        self.calibration = ExemplarMemory()
        self.head: RoutingHead | None = None
        self._feature_fn: FeatureFn | None = None
        if feature_fn is not None:
            self.feature_fn = feature_fn

    # ---- state ------------------------------------------------------------------
    @property
    def classes(self) -> list[str]:
        """Class names in head order: ``"none"`` first, then the skills."""
        return self.memory.classes

    @property
    def skills(self) -> list[str]:
        return [c for c in self.classes if c != NONE]

    @property
    def trained(self) -> bool:
        return self.head is not None

    @property
    def feature_fn(self) -> FeatureFn | None:
        return self._feature_fn

    @feature_fn.setter
    def feature_fn(self, fn: FeatureFn | None) -> None:
        """Once trained, only a feature function of the recorded ``feature_name`` is accepted."""
        if fn is not None:
            name = feature_name(fn)
            if self.trained and name != self.config.feature_name:
                raise FeatureMismatchError(
                    f"the manager was trained on features {self.config.feature_name!r}, not {name!r}; "
                    "retrain it with this feature function")
        self._feature_fn = fn

    # ---- features ---------------------------------------------------------------
    def features(self, histories: list[list[str]]) -> torch.Tensor:
        """``[len(histories), D]`` features from the manager's feature function (checked against a trained head)."""
        return _encode(self._require_feature_fn(), histories, self.config.feature_dim if self.trained else 0,
                       self.config.feature_batch_size, "routing")

    # ---- training ---------------------------------------------------------------
    def fit(self, examples: dict[str, list[list[str]]], feature_fn: FeatureFn | None = None,
            calibration: dict[str, list[list[str]]] | None = None) -> dict:
        """Train from scratch on histories per class (``"none"`` required); returns training stats.

        Classes are ``"none"`` then the other keys of ``examples`` in order. ``calibration`` holds
        held-out histories of the same classes (never trained on) for the temperature. Stats:
        ``classes``, ``examples`` and ``exemplars`` (counts per class), ``temperature``, and the
        loop's ``epochs``, ``steps``, ``loss``, ``train_accuracy``, ``seconds``. The manager is
        unchanged if this raises.
        """
        if not isinstance(examples, dict) or NONE not in examples:
            raise ValueError(f"examples must be a dict of histories per class that includes {NONE!r}")
        calibration = calibration or {}
        for name, histories in [*examples.items(), *calibration.items()]:
            _check_class(name, histories)
        stray = sorted(set(calibration) - set(examples))
        if stray:
            raise ValueError(f"calibration histories for class(es) {stray} that have no training examples")
        fn = feature_fn if feature_fn is not None else self._feature_fn
        if fn is None:
            raise RuntimeError("fit() needs a feature function: pass feature_fn=")
        memory, held_out, dim = ExemplarMemory(), ExemplarMemory(), 0
        for name in [NONE, *(c for c in examples if c != NONE)]:
            f = _encode(fn, examples[name], dim, self.config.feature_batch_size, f"features {name}")
            dim = f.shape[1]
            memory.set(name, f, self.config.exemplars_per_class)
            if name in calibration:
                held_out.set(name, _encode(fn, calibration[name], dim, self.config.feature_batch_size,
                                           f"calibration {name}"), self.config.exemplars_per_class)
        self.memory, self.calibration, self._feature_fn = memory, held_out, fn
        self.config.feature_dim, self.config.feature_name = dim, feature_name(fn)
        return {"examples": {c: len(h) for c, h in examples.items()}, **self._refit()}

    def add_class(self, name: str, histories: list[list[str]], feature_fn: FeatureFn | None = None,
                  replace: bool = False, calibration: list[list[str]] | None = None) -> dict:
        """Add (or with ``replace=True`` replace) one class from its histories, then refit from memory.

        ``calibration``: held-out histories of the class, kept in the calibration memory.
        """
        self._check_trained()
        _check_class(name, histories)
        if calibration:
            _check_class(name, calibration)
        if name in self.classes and not replace:
            raise ValueError(f"class {name!r} already exists; pass replace=True to replace its exemplars")
        if feature_fn is not None:
            self.feature_fn = feature_fn
        fn, dim, batch = self._require_feature_fn(), self.config.feature_dim, self.config.feature_batch_size
        features = _encode(fn, histories, dim, batch, f"features {name}")
        held_out = _encode(fn, calibration, dim, batch, f"calibration {name}") if calibration else None
        self.memory.set(name, features, self.config.exemplars_per_class)
        if held_out is not None:
            self.calibration.set(name, held_out, self.config.exemplars_per_class)
        elif name in self.calibration.classes:
            self.calibration.remove(name)
        return {"examples": {name: len(histories)}, **self._refit()}

    def remove_class(self, name: str) -> dict:
        """Drop one skill's exemplars and refit the head on the others'."""
        self._check_trained()
        if name == NONE:
            raise ValueError(f"class {NONE!r} cannot be removed: it is the bare backbone's route")
        if name not in self.classes:
            raise KeyError(f"no class named {name!r}; classes: {', '.join(self.classes)}")
        self.memory.remove(name)
        if name in self.calibration.classes:
            self.calibration.remove(name)
        return self._refit()

    def _refit(self) -> dict:
        features, labels = self.memory.tensors()
        self.head, stats = fit_head(features, labels, len(self.classes), self.config)
        self.config.classes = self.classes
        self.config.temperature = 1.0
        if len(self.calibration):
            held_out, held_labels = self.calibration.tensors(self.classes)
            self.config.temperature = fit_temperature(self.head, held_out, held_labels)
        return {"classes": self.classes, "exemplars": self.memory.counts(), "temperature": self.config.temperature, **stats}

    # ---- routing ----------------------------------------------------------------
    def probabilities(self, features: torch.Tensor) -> torch.Tensor:
        """Softmax over classes ``[B, C]`` for features ``[B, D]``."""
        self._check_trained()
        features = check_features(features, None, self.config.feature_dim, "route_features")
        with torch.no_grad():
            return torch.softmax(self.head(features) / self.config.temperature, dim=-1)

    def scores(self, histories: list[list[str]]) -> list[dict[str, float]]:
        """Probability of every class (``"none"`` included) for each history."""
        probs = self.probabilities(self._features_for_routing(histories))
        return [dict(zip(self.classes, row)) for row in probs.tolist()]

    def route_features(self, features: torch.Tensor) -> list[Decision]:
        """Decisions for precomputed features ``[B, D]`` (from this manager's feature function).

        The top class wins if it is a skill and its probability is at least ``config.threshold``;
        otherwise the turn goes to ``none`` (see :class:`Decision` for the probability reported).
        """
        decisions = []
        for row in self.probabilities(features).tolist():
            scores = dict(zip(self.classes, row))
            top = max(range(len(row)), key=row.__getitem__)
            skill = self.classes[top] if top != 0 and row[top] >= self.config.threshold else None
            decisions.append(Decision(skill, scores[skill or NONE], scores))
        return decisions

    def route_batch(self, histories: list[list[str]]) -> list[Decision]:
        return self.route_features(self._features_for_routing(histories))

    def route(self, history: list[str]) -> Decision:
        """Where the newest turn of ``history`` (turns oldest first) goes."""
        return self.route_batch([history])[0]

    def evaluate(self, histories_by_class: dict[str, list[list[str]]]) -> dict:
        """Route held-out histories of known classes; :func:`~manager.metrics.routing_report` over ``classes``."""
        self._check_trained()
        unknown = sorted(set(histories_by_class) - set(self.classes))
        if unknown:
            raise ValueError(f"cannot evaluate unknown class(es) {unknown}; classes: {', '.join(self.classes)}")
        gold = [name for name, histories in histories_by_class.items() for _ in histories]
        histories = [h for hs in histories_by_class.values() for h in hs]
        predicted = [d.skill or NONE for d in self.route_batch(histories)]
        return routing_report(gold, predicted, self.classes)

    # ---- files ------------------------------------------------------------------
    def save(self, folder: str | Path) -> None:
        """Write ``manager_config.json`` and ``manager_model.safetensors`` atomically into ``folder``."""
        self._check_trained()
        storage.save_state(Path(folder), self.config, self.head, self.memory, self.calibration)

    @classmethod
    def load(cls, folder: str | Path, feature_fn: FeatureFn | None = None) -> "DialogueManager":
        """Read a saved manager; a damaged folder is a ``ManagerFileError`` naming the file, and a
        feature function of another name than the recorded one a ``FeatureMismatchError``."""
        config, head, memory, calibration = storage.load_state(Path(folder))
        manager = cls()
        manager.config, manager.head, manager.memory, manager.calibration = config, head, memory, calibration
        try:
            manager.feature_fn = feature_fn
        except FeatureMismatchError as e:
            raise FeatureMismatchError(f"{Path(folder)}: {e}") from None
        return manager

    def _features_for_routing(self, histories: list[list[str]]) -> torch.Tensor:
        self._check_trained()
        return self.features(histories)

    def _require_feature_fn(self) -> FeatureFn:
        if self._feature_fn is None:
            raise RuntimeError("the manager has no feature function: pass feature_fn= to the constructor, fit(), "
                               "add_class() or load()")
        return self._feature_fn

    def _check_trained(self) -> None:
        if not self.trained:
            raise RuntimeError("the manager is not trained: call fit() or DialogueManager.load()")


def _encode(fn: FeatureFn, histories: list[list[str]], dim: int, batch_size: int, desc: str) -> torch.Tensor:
    """Features ``[len(histories), D]`` in batches of ``batch_size``; ``dim`` 0 accepts any width ``D``."""
    check_histories(histories)
    source = f"feature function {feature_name(fn)!r}"
    out = []
    with torch.no_grad(), tqdm(total=len(histories), desc=desc, unit="history", disable=None, leave=False) as bar:
        for start in range(0, len(histories), batch_size):
            batch = histories[start:start + batch_size]
            out.append(check_features(fn(batch), len(batch), dim, source))
            dim = out[-1].shape[1]
            bar.update(len(batch))
    return torch.cat(out) if out else torch.zeros(0, dim)


def _check_class(name: str, histories: list[list[str]]) -> None:
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise ValueError(f"class name must be a non-empty string without surrounding spaces, got {name!r}")
    check_histories(histories)
    if not histories:
        raise ValueError(f"class {name!r} has no histories")
