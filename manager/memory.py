"""A compact per-class memory of feature vectors (exemplars), as in iCaRL.

Each class keeps at most ``k`` cached feature vectors, chosen by herding. The head is always
fitted from this memory alone, so adding or removing a class later needs only the new class's
data: the old classes' raw dialogues are never read again.
"""
from __future__ import annotations

import torch


def herding(features: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of ``k`` rows of ``features`` ``[N, D]`` whose mean tracks the class mean (iCaRL).

    Each step picks the unused row that brings the running mean of the picked rows closest to the
    mean of all rows, on L2-normalised features. Deterministic; all rows, in order, when ``N <= k``.
    """
    n = features.shape[0]
    if n <= k:
        return torch.arange(n)
    unit = torch.nn.functional.normalize(features, dim=1)
    target = unit.mean(0)
    squared = (unit * unit).sum(1)
    picked: list[int] = []
    total = torch.zeros_like(target)
    available = torch.ones(n, dtype=torch.bool)
    for step in range(1, k + 1):
        # ||target - (total + u)/step||^2 = (||w - u||^2) / step^2 with w = step * target - total:
        # the row closest is the one with the least ||u||^2 - 2 w.u, one matrix-vector product a step.
        distance = squared - 2 * (unit @ (step * target - total))
        distance[~available] = float("inf")
        i = int(distance.argmin())
        picked.append(i)
        total += unit[i]
        available[i] = False
    return torch.tensor(picked)


class ExemplarMemory:
    """Exemplar feature vectors per class, in class order (the head's order)."""

    def __init__(self) -> None:
        self._store: dict[str, torch.Tensor] = {}

    @property
    def classes(self) -> list[str]:
        return list(self._store)

    def __len__(self) -> int:
        return sum(t.shape[0] for t in self._store.values())

    def counts(self) -> dict[str, int]:
        return {name: t.shape[0] for name, t in self._store.items()}

    def set(self, name: str, features: torch.Tensor, k: int) -> None:
        """Keep ``k`` herded rows of ``features`` ``[N, D]`` for ``name`` (a replaced class keeps its place)."""
        self._store[name] = features[herding(features, k)].clone()

    def remove(self, name: str) -> None:
        del self._store[name]

    def tensors(self, classes: list[str] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """All exemplars ``[N, D]`` and their class indices ``[N]`` (int64) into ``classes``
        (default: this memory's own classes, in order)."""
        classes = self.classes if classes is None else classes
        features = torch.cat(list(self._store.values()))
        labels = torch.cat([torch.full((t.shape[0],), classes.index(name), dtype=torch.long)
                            for name, t in self._store.items()])
        return features, labels

    @classmethod
    def from_tensors(cls, classes: list[str], features: torch.Tensor, labels: torch.Tensor) -> "ExemplarMemory":
        """The inverse of :meth:`tensors`: row ``j`` belongs to ``classes[labels[j]]`` (classes without rows are left out)."""
        memory = cls()
        for i, name in enumerate(classes):
            if (labels == i).any():
                memory._store[name] = features[labels == i].clone()
        return memory
