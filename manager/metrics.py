"""Routing accuracy, confusion matrix and per-class precision/recall/F1 (the ``routing`` object of report.json)."""
from __future__ import annotations


def routing_report(gold: list[str], predicted: list[str], labels: list[str]) -> dict:
    """Compare gold and predicted class names.

    Returns ``{"accuracy": float, "labels": labels, "confusion": [[int]], "per_skill": {NAME:
    {"precision", "recall", "f1"}}}``; ``confusion[i][j]`` counts turns of gold ``labels[i]``
    predicted as ``labels[j]``, and ``per_skill`` has every label, ``"none"`` included. A ratio
    whose denominator is zero (no turns, nothing predicted as a class, no gold turns of it) is 0.0.
    """
    if len(gold) != len(predicted):
        raise ValueError(f"gold and predicted differ in length ({len(gold)} != {len(predicted)})")
    if len(set(labels)) != len(labels):
        raise ValueError(f"labels must be unique, got {labels!r}")
    index = {name: i for i, name in enumerate(labels)}
    for name in (*gold, *predicted):
        if name not in index:
            raise ValueError(f"label {name!r} is not one of labels {labels!r}")
    confusion = [[0] * len(labels) for _ in labels]
    for g, p in zip(gold, predicted):
        confusion[index[g]][index[p]] += 1

    def ratio(a: float, b: float) -> float:
        return a / b if b else 0.0

    per_skill = {}
    for i, name in enumerate(labels):
        hits = confusion[i][i]
        precision = ratio(hits, sum(row[i] for row in confusion))
        recall = ratio(hits, sum(confusion[i]))
        f1 = ratio(2 * precision * recall, precision + recall)
        per_skill[name] = {"precision": precision, "recall": recall, "f1": f1}
    return {
        "accuracy": ratio(sum(confusion[i][i] for i in range(len(labels))), len(gold)),
        "labels": list(labels),
        "confusion": confusion,
        "per_skill": per_skill,
    }


def calibration_report(confidences: list[float], correct: list[bool], bins: int = 10) -> dict:
    """Expected calibration error over ``bins`` equal-width confidence bins, and the bins themselves.

    ``confidences`` are the probabilities of the classes chosen, ``correct`` whether each choice was
    right. Returns ``{"ece": float, "n": int, "bins": [{"lo", "hi", "count", "confidence",
    "accuracy"}]}``; ECE is the count-weighted mean of ``|accuracy - confidence|`` over the bins
    (an empty bin counts nothing and reports 0.0 for both).
    """
    if len(confidences) != len(correct):
        raise ValueError(f"confidences and correct differ in length ({len(confidences)} != {len(correct)})")
    table = []
    ece = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        rows = [(c, ok) for c, ok in zip(confidences, correct) if lo < c <= hi or (b == 0 and c == 0.0)]
        confidence = sum(c for c, _ in rows) / len(rows) if rows else 0.0
        accuracy = sum(ok for _, ok in rows) / len(rows) if rows else 0.0
        ece += len(rows) * abs(accuracy - confidence)
        table.append({"lo": lo, "hi": hi, "count": len(rows), "confidence": confidence, "accuracy": accuracy})
    return {"ece": ece / len(confidences) if confidences else 0.0, "n": len(confidences), "bins": table}
