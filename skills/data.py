"""A skill's dialogue data: examples, deduplication, splits, and writing them as JSONL.

The readers of every source a spec may name live in :mod:`skills.readers`; their names are still
importable from here (``from skills.data import read_source``).
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from .files import MAX_BYTES, atomic_write_text, read_text  # noqa: F401 - MAX_BYTES and read_text: imported from here too

SPLITS = ("train", "valid", "test")


@dataclass
class Example:
    """One training example: the turns so far and the reply to learn.

    Attributes:
        context: the conversation's turns before the reply, oldest first (at least one).
        response: the reply to the last turn of ``context``.
        knowledge: a passage the reply is grounded on (a fact, a persona), if any.
        group: examples that share a group (one problem, one conversation, one question asked
            several ways) always land in the same split, so a test split holds unseen groups.
    """

    context: list[str]
    response: str
    knowledge: str | None = None
    group: str | None = None

    def to_dict(self) -> dict[str, Any]:
        row: dict[str, Any] = {"context": self.context, "response": self.response}
        if self.knowledge is not None:
            row["knowledge"] = self.knowledge
        if self.group is not None:
            row["group"] = self.group
        return row

    def key(self) -> str:
        """Text identifying the (context, response) pair: equal for duplicates, hashed for splits."""
        return "\x1f".join(self.context) + "\x1e" + self.response


@dataclass
class ReadResult:
    """What a reader got from one source.

    Attributes:
        examples: the usable examples, in the source's order, exact duplicates removed.
        skipped: how many bad rows were skipped.
        skipped_lines: 1-based line (or row) numbers of the first few skipped rows.
        source: the source as named, e.g. ``data.jsonl`` or ``hf:empathetic_dialogues:train``.
        duplicates: how many exact duplicate (context, response) pairs were dropped.
        problems: what was wrong with each row of ``skipped_lines``.
    """

    examples: list[Example]
    skipped: int
    skipped_lines: list[int]
    source: str
    duplicates: int = 0
    problems: list[str] = field(default_factory=list)

    def skipped_note(self) -> str:
        """``""`` if no row was skipped, else each shown row's line and problem, e.g. ``2 bad row(s) skipped: line 4:
        missing 'response'; line 9: invalid JSON (...)`` (``; ...`` after the first few)."""
        if not self.skipped:
            return ""
        more = "; ..." if self.skipped > len(self.skipped_lines) else ""
        rows = "; ".join(f"line {line}: {problem}" for line, problem in zip(self.skipped_lines, self.problems))
        return f"{self.skipped} bad row(s) skipped: {rows}{more}"


def dedupe(examples: Iterable[Example]) -> tuple[list[Example], int]:
    """``examples`` with exact duplicate (context, response) pairs kept once, and how many were dropped."""
    kept, seen, dropped = [], set(), 0
    for ex in examples:
        if ex.key() in seen:
            dropped += 1
        else:
            seen.add(ex.key())
            kept.append(ex)
    return kept, dropped


# ---- splits ------------------------------------------------------------------------------


def _unit_interval(example: Example) -> float:
    key = f"group\x1d{example.group}" if example.group is not None else example.key()
    return int(hashlib.sha1(key.encode("utf-8")).hexdigest(), 16) / 2**160


def split_examples(examples: Sequence[Example], valid_frac: float = 0.1, test_frac: float = 0.1) -> dict[str, list[Example]]:
    """Deterministic train / valid / test split, by the SHA-1 of each example's text (or its group).

    An example's split is decided by the hash of its own text, or of its ``group`` when it has
    one (so a group never straddles splits once every split fills on its own), not by its position or a random
    draw, so the same data gives the same split on every run and machine, and (once every split
    fills on its own) adding examples moves no old one between splits. With few examples each
    split still gets at least one (hence ``n >= 3``), taken from the examples whose hash is
    nearest the split's range; and with few groups, a test or valid split of more than twice its share of the rows
    gives back whole groups (a new user's 33 plant-care exchanges in 15 groups had split 20 / 1 / 12, another's 38 in
    14 groups 23 / 12 / 3). Each split keeps the input's order.
    """
    n = len(examples)
    if n < 3:
        raise ValueError(f"need at least 3 examples to make train, valid and test splits, got {n}")
    if not (0 < valid_frac < 1 and 0 < test_frac < 1 and valid_frac + test_frac < 1):
        raise ValueError(f"valid_frac and test_frac must be in (0, 1) with a sum below 1, got {valid_frac} and {test_frac}")
    position = [_unit_interval(ex) for ex in examples]
    order = sorted(range(n), key=lambda i: (position[i], i))
    n_test = max(1, sum(p < test_frac for p in position))
    n_valid = max(1, sum(test_frac <= p < test_frac + valid_frac for p in position))
    while n_test + n_valid > n - 1:  # leave train at least one
        if n_valid >= n_test:
            n_valid -= 1
        else:
            n_test -= 1
    most = math.ceil(2 * test_frac * n)
    if (n_test > most or n_valid > math.ceil(2 * valid_frac * n)) and len(set(position)) >= 3:
        # few groups, and the hash put too many under the test or the valid fraction
        n_test, n_valid = _held_out_by_groups([position[i] for i in order], most, math.ceil(valid_frac * n))
    label = {i: "test" for i in order[:n_test]} | {i: "valid" for i in order[n_test : n_test + n_valid]}
    out: dict[str, list[Example]] = {split: [] for split in SPLITS}
    for i, ex in enumerate(examples):
        out[label.get(i, "train")].append(ex)
    return out


def _held_out_by_groups(positions: list[float], most_test: int, want_valid: int) -> tuple[int, int]:
    """Sizes of the test and valid splits, taken in hash order (``positions``, sorted) and ending on a group's end: test
    the most whole groups that fit in ``most_test`` rows (at least one group), valid the next groups until they hold
    ``want_valid`` rows, train the rest (at least one row)."""
    n = len(positions)
    ends = [k for k in range(1, n + 1) if k == n or positions[k] != positions[k - 1]]  # after each group
    n_test = max([e for e in ends if e <= most_test] or ends[:1])
    after = [e for e in ends if n_test < e < n] or [min(n_test + 1, n - 1)]  # train keeps at least one row
    n_valid = next((e for e in after if e - n_test >= want_valid), after[-1]) - n_test
    return n_test, n_valid


def write_jsonl(examples: Iterable[Example], path: Path) -> None:
    """Write examples as JSONL (the format :func:`read_jsonl` reads), atomically."""
    atomic_write_text(Path(path), "".join(json.dumps(ex.to_dict(), ensure_ascii=False) + "\n" for ex in examples))


def __getattr__(name: str):
    # The readers moved to skills.readers; ``from skills.data import read_source`` keeps working.
    from . import readers

    if name in readers.__all__:
        return getattr(readers, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
