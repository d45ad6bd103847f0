"""BM25 retrieval over a skill's knowledge file, kept in step with the file as it changes.

The file holds one passage a line (``.txt``, or any non-JSONL file) or JSONL objects with a
``text`` (or ``passage``) field. It is read again and re-indexed whenever its size or
modification time changes, so passages appended to it are found at the next search,
with no retraining and no restart.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .data import MAX_BYTES, read_text

TEXT_FIELDS = ("text", "passage")


@dataclass(frozen=True)
class Passage:
    """One retrieved passage.

    Attributes:
        text: the passage, as in the knowledge file.
        score: its BM25 score for the query (higher is better; always > 0 in results).
    """

    text: str
    score: float


def read_passages(path: Path, max_bytes: int = MAX_BYTES) -> list[str]:
    """Passages of a knowledge file, blank lines skipped; a bad JSONL line raises ValueError naming it."""
    path = Path(path)
    passages = []
    for number, line in enumerate(read_text(path, max_bytes).split("\n"), 1):
        line = line.strip()
        if not line:
            continue
        if path.suffix.lower() != ".jsonl":
            passages.append(line)
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: line {number}: invalid JSON ({e.msg} at column {e.colno})") from None
        except RecursionError:
            raise ValueError(f"{path}: line {number}: invalid JSON (nested too deeply)") from None
        text = next((row[f] for f in TEXT_FIELDS if isinstance(row, dict) and isinstance(row.get(f), str)), None)
        if text is None:
            raise ValueError(f"{path}: line {number}: expected a JSON object with a string field 'text' or 'passage'")
        if text.strip():
            passages.append(text.strip())
    return passages


@functools.cache
def _bm25s() -> Any:
    """The ``bm25s`` module, imported on first use; its logger is quieted, as bm25s sets it to DEBUG on import."""
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)
    return bm25s


def _tokenize(texts: list[str], ids: bool) -> Any:
    return _bm25s().tokenize(texts, lower=True, stopwords="en", return_ids=ids, show_progress=False)


@dataclass(frozen=True)
class _Index:
    stamp: tuple[int, int]  # (mtime_ns, size) of the file it was built from
    passages: list[str]
    bm25: Any  # bm25s.BM25, or None when there are no passages


class Retriever:
    """Finds the passages of a knowledge file that best match a query (BM25, English stopwords).

    Safe to share between threads: searches read one immutable index, and a re-index happens
    under a lock, once, however many threads notice the change.
    """

    def __init__(self, path: Path | str, max_bytes: int = MAX_BYTES) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._index: _Index | None = None

    @classmethod
    def from_file(cls, path: Path | str, max_bytes: int = MAX_BYTES) -> "Retriever":
        """A retriever over ``path``, indexed now so that a bad file fails here rather than at the first search."""
        retriever = cls(path, max_bytes)
        retriever.refresh()
        return retriever

    def _stamp(self) -> tuple[int, int]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.path}: knowledge file not found") from None
        return st.st_mtime_ns, st.st_size

    def refresh(self) -> list[str]:
        """Re-index if the file changed since the last index; return the passages."""
        stamp = self._stamp()
        index = self._index
        if index is None or index.stamp != stamp:
            with self._lock:
                index = self._index
                if index is None or index.stamp != stamp:
                    index = self._build(stamp)
                    self._index = index
        return index.passages

    def _build(self, stamp: tuple[int, int]) -> _Index:
        passages = read_passages(self.path, self.max_bytes)
        bm25 = None
        if passages:
            bm25 = _bm25s().BM25()
            bm25.index(_tokenize(passages, ids=True), show_progress=False)
        return _Index(stamp, passages, bm25)

    def search(self, query: str, k: int = 1) -> list[Passage]:
        """The ``k`` best passages for ``query``, best first; only passages sharing a word with it."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        self.refresh()
        index = self._index
        terms = _tokenize([query], ids=False)[0] if query.strip() else []
        if index is None or index.bm25 is None or not terms:
            return []
        scores = index.bm25.get_scores(terms)
        best = np.argsort(-scores, kind="stable")[:k]
        return [Passage(index.passages[i], float(scores[i])) for i in best if scores[i] > 0]
