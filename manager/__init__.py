"""The dialogue manager: scores a conversation's newest turn against every installed skill.

It is handed a feature function (:class:`FeatureFn`) instead of a model, keeps a compact
exemplar memory per class, and routes to a skill or to ``"none"`` (the bare backbone)::

    manager = DialogueManager(ManagerConfig(threshold=0.5))
    manager.fit({"none": chit_chat, "empathetic": sad_talk}, feature_fn=features)
    manager.add_class("tech_support", tech_talk)      # refits from memory, old data not needed
    manager.route(["my laptop will not boot"])        # Decision(skill="tech_support", ...)
    manager.save("skills/_manager"); DialogueManager.load("skills/_manager", feature_fn=features)
"""
from .config import CONFIG_NAME, NONE, WEIGHTS_NAME, ManagerConfig, ManagerFileError
from .features import FeatureFn, FeatureMismatchError
from .metrics import calibration_report, routing_report
from .router import Decision, DialogueManager

__all__ = [
    "CONFIG_NAME", "NONE", "WEIGHTS_NAME", "Decision", "DialogueManager", "FeatureFn", "FeatureMismatchError",
    "ManagerConfig", "ManagerFileError", "calibration_report", "routing_report",
]
