"""General first steps by topic: what a knowledge skill says to a problem its file doesn't hold.

A FAQ only holds the problems someone wrote down, and users bring the long tail: "instagram won't post my reel",
"icloud photos has said uploading for 4 days". A skill's first-steps file (``KnowledgeSpec.first_steps_file``) holds
one passage a topic, in the knowledge file's format: the topic's words on the first line (devices, apps and the
symptoms that name the topic), a line break, then the steps that help with most problems of that topic. A message is
matched on the topic lines only: the steps' own words ("restart", "phone", "update") would match every message.
"""
from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

from .files import MAX_BYTES
from .knowledge import answer_of, content_words, question_of, read_passages


class FirstSteps:
    """The topics of a first-steps file, read once when the skill loads.

    Attributes:
        path: the file.
        topics: each passage's topic words (the stems of its first line's content words) and its steps.
    """

    def __init__(self, path: Path | str, max_bytes: int = MAX_BYTES) -> None:
        self.path = Path(path)
        self.topics: list[tuple[set[str], str]] = []
        for number, passage in enumerate(read_passages(self.path, max_bytes), 1):
            topic = question_of(passage)
            if topic is None:
                raise ValueError(f"{self.path}: passage {number}: expected the topic's words, a line break, then the steps")
            self.topics.append((content_words(topic), answer_of(passage)))
        df = Counter(w for words, _ in self.topics for w in words)
        self._idf = {w: math.log((len(self.topics) + 1) / (c + 0.5)) for w, c in df.items()}

    def steps_for(self, message: str) -> str | None:
        """The steps of the topic whose words in ``message`` are the rarest in the file (the sum of their IDF; ties
        go to the topic first in the file), or ``None`` when ``message`` names no topic."""
        said = content_words(message)
        best, steps = 0.0, None
        for words, answer in self.topics:
            score = sum(self._idf[w] for w in words & said)
            if score > best:
                best, steps = score, answer
        return steps

    def says_steps(self, text: str) -> bool:
        """Whether ``text`` is one of the file's steps, word for word (a reply this file gave)."""
        return text.strip() in {answer for _, answer in self.topics}
