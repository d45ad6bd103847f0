"""The feature-function interface: how the manager turns conversations into vectors.

The manager never sees a model. It is handed a :class:`FeatureFn`, any callable with a ``name``
that maps a batch of histories to a ``[B, D]`` float tensor. The bot's default pools the frozen
backbone's hidden states; a sentence encoder, TF-IDF, or a hashing trick plug in the same way::

    class MyFeatures:
        name = "my-encoder:v1"          # recorded with the manager; checked on load
        def __call__(self, histories: list[list[str]]) -> torch.Tensor:
            return encode([h[-1] for h in histories])  # [len(histories), D]
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


class FeatureMismatchError(ValueError):
    """A manager trained on one feature function was given features from another."""


@runtime_checkable
class FeatureFn(Protocol):
    """Maps histories to features.

    Attributes:
        name: identifies the features (encoder and its weights, e.g.
            ``"backbone-lastprev:bundled:blocks=1:tokens=64"``). Two functions with the same name must give the same
            features: a trained manager only accepts a function of the name it was trained on.

    Calling it with ``histories`` (a batch; each history is a list of turns, oldest first, the
    last one the user's new message) returns a float tensor ``[len(histories), D]`` with the same
    ``D`` on every call. It is called under ``torch.no_grad()``.
    """

    name: str

    def __call__(self, histories: list[list[str]]) -> torch.Tensor: ...


def feature_name(fn: FeatureFn) -> str:
    """The ``name`` of a feature function; a ``TypeError`` says how to give one if it is missing."""
    name = getattr(fn, "name", None)
    if not callable(fn) or not isinstance(name, str) or not name:
        raise TypeError(f"feature function {fn!r} must be callable and have a non-empty str attribute "
                        "'name' (see manager.features.FeatureFn)")
    return name


def check_histories(histories: list[list[str]]) -> None:
    """Raise ``ValueError`` unless ``histories`` is a list of non-empty lists of strings."""
    if not isinstance(histories, list):
        raise ValueError(f"histories must be a list of histories (lists of turns), got {type(histories).__name__}")
    for i, history in enumerate(histories):
        if not isinstance(history, list) or not history or not all(isinstance(t, str) for t in history):
            raise ValueError(f"history {i} must be a non-empty list of str turns, got {history!r:.80}")


def check_features(features: torch.Tensor, rows: int | None, dim: int, source: str) -> torch.Tensor:
    """Validate a ``[rows, dim]`` batch of features (``None``/0: any) and return it as CPU float32."""
    if not isinstance(features, torch.Tensor) or features.dim() != 2 or rows not in (None, features.shape[0]):
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        raise ValueError(f"{source}: expected a [{rows or 'B'}, D] tensor of features, got {shape}")
    if dim and features.shape[1] != dim:
        raise FeatureMismatchError(f"{source}: features have width {features.shape[1]}, expected {dim} "
                                   "(the width the manager's features had so far)")
    if not features.is_floating_point() or not torch.isfinite(features).all():
        raise ValueError(f"{source}: features must be finite floating-point values")
    return features.detach().to("cpu", torch.float32)
