"""Fitting a fresh routing head on the exemplar memory: an explicit, seeded training loop."""
from __future__ import annotations

import time

import torch
from torch import nn

from .classifier import RoutingHead
from .config import ManagerConfig


def fit_head(features: torch.Tensor, labels: torch.Tensor, num_classes: int,
             config: ManagerConfig) -> tuple[RoutingHead, dict]:
    """Train a new :class:`RoutingHead` on ``features`` ``[N, D]`` with class indices ``labels`` ``[N]``.

    The cross-entropy is class-balanced (each class weighted by ``N / (C * n_class)``), so a class
    with fewer exemplars counts as much as the others. Everything random (initialisation,
    shuffling) is drawn from ``config.seed``: the same memory gives the same head.

    Returns the head (in eval mode) and stats: ``epochs``, ``steps``, ``loss`` (mean weighted loss
    over the memory at the end), ``train_accuracy`` (on the memory) and ``seconds``.
    """
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        head = RoutingHead(features.shape[1], num_classes, config.hidden)
    head.standardise_on(features)
    counts = torch.bincount(labels, minlength=num_classes).float()
    loss_fn = nn.CrossEntropyLoss(weight=counts.sum() / (num_classes * counts.clamp(min=1)))
    optimizer = torch.optim.AdamW(head.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(config.seed)

    head.train()
    steps = 0
    for _ in range(config.epochs):
        order = torch.randperm(features.shape[0], generator=generator)
        for batch in order.split(config.batch_size):
            loss = loss_fn(head(features[batch]), labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            steps += 1
    head.eval()

    with torch.no_grad():
        logits = head(features)
        stats = {
            "epochs": config.epochs,
            "steps": steps,
            "loss": float(loss_fn(logits, labels)),
            "train_accuracy": float((logits.argmax(1) == labels).float().mean()),
            "seconds": time.perf_counter() - start,
        }
    return head, stats


TEMPERATURES = torch.logspace(-2, 2, 161)  # 0.01 .. 100, log-spaced


def fit_temperature(head: RoutingHead, features: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature in ``TEMPERATURES`` with the lowest NLL of ``labels`` on held-out ``features``.

    A grid rather than an optimiser: deterministic, and the NLL is smooth in log-temperature,
    so 161 log-spaced points are within 3% of the optimum.
    """
    with torch.no_grad():
        logits = head(features)
        nll = torch.stack([nn.functional.cross_entropy(logits / t, labels) for t in TEMPERATURES])
    return float(TEMPERATURES[int(nll.argmin())])
