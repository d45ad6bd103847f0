"""General first steps by topic: what a knowledge skill says to a problem its file doesn't hold.

A FAQ only holds the problems someone wrote down, and users bring the long tail: "instagram won't post my reel",
"icloud photos has said uploading for 4 days". A skill's first-steps file (``KnowledgeSpec.first_steps_file``) holds
one passage a topic, in the knowledge file's format: the topic's words on the first line (devices, apps and the
symptoms that name the topic), a line break, then the steps that help with most problems of that topic. A message is
matched on the topic lines only: the steps' own words ("restart", "phone", "update") would match every message.
A topic word written with underscores is a phrase ("galaxy_watch"): it names the topic when its words follow each
other in the message, and the words it takes name nothing else ("my galaxy watch..." is a watch, not a phone).
"""
from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path

from .files import MAX_BYTES
from .knowledge import WORD, answer_of, content_words, question_of, read_passages

Topic = tuple[set[str], dict[str, re.Pattern], str]

TROUBLE = re.compile(r"\b(won'?t|can'?t|cant|doesn'?t|doesnt|does not|isn'?t|isnt|not (working|loading|connecting|showing|"
                     r"turning|charging|responding)|keeps? \w+ing|error|stuck|broken|black|frozen|freez\w*|crash\w*|fail\w*|"
                     r"no (sound|picture|signal|internet|service|audio)|glitch\w*|lag\w*|stopped|dead|dies|died|slow|"
                     r"disconnect\w*|drops?|dropping|underwater|muffled|static|blank|flicker\w*|blinking|flashing|missing|"
                     r"damaged|corrupt\w*)\b", re.IGNORECASE)
"""Words of something not working ("cant hear me", "the picture is just black", "keeps dropping")."""

EVERYDAY = frozenset(content_words("word office game games story post page card pay call calls meeting sound video videos "
                                   "account charge"))
"""Topic words that small talk uses as often as a problem does: among the commonest of the topics' words in the Chit-Chat
corpus's messages that name no device or app ("do you have a favorite word?" is not about Office, and "the office is
split" over hot dogs got Office's steps in session 20's trial). Alone, without a word of trouble, they name no topic
(:meth:`FirstSteps.names_topic`)."""


class FirstSteps:
    """The topics of a first-steps file, read once when the skill loads.

    Attributes:
        path: the file.
        topics: each passage's topic words (the stems of its first line's content words), its phrases (as patterns)
            and its steps.
    """

    def __init__(self, path: Path | str, max_bytes: int = MAX_BYTES) -> None:
        self.path = Path(path)
        self.topics: list[Topic] = []
        for number, passage in enumerate(read_passages(self.path, max_bytes), 1):
            topic = question_of(passage)
            if topic is None:
                raise ValueError(f"{self.path}: passage {number}: expected the topic's words, a line break, then the steps")
            phrases = {p: re.compile(r"\b" + r"\W+".join(map(re.escape, p.split("_"))) + r"\b", re.IGNORECASE)
                       for p in topic.lower().split() if "_" in p}
            self.topics.append((content_words(" ".join(w for w in topic.split() if "_" not in w)), phrases, answer_of(passage)))
        df = Counter(w for words, phrases, _ in self.topics for w in [*words, *phrases])
        self._idf = {w: math.log((len(self.topics) + 1) / (c + 0.5)) for w, c in df.items()}
        self._all_steps = frozenset(answer for _, _, answer in self.topics)

    def steps_for(self, message: str) -> str | None:
        """The steps of the topic whose words in ``message`` are the rarest in the file (the sum of their IDF, a
        phrase's times its word count), or ``None`` when ``message`` names no topic. The words of a phrase found in
        ``message`` count for no single word. Of topics that score the same, the one the message names first wins
        ("laptop battery..." against "...just doing email" is the laptop's)."""
        found = {p: pattern.search(message) for _, phrases, _ in self.topics for p, pattern in phrases.items()}
        found = {p: match for p, match in found.items() if match}
        at: dict[str, int] = {}  # each content word's first place in the message, outside the phrases found
        for token in WORD.finditer(message.lower()):
            if not any(match.start() <= token.start() < match.end() for match in found.values()):
                for stem in content_words(token.group()):
                    at.setdefault(stem, token.start())
        best, steps = (0.0, 0), None
        for words, phrases, answer in self.topics:
            named, said = words & set(at), [p for p in phrases if p in found]
            score = sum(self._idf[w] for w in named) + sum(self._idf[p] * len(p.split("_")) for p in said)
            if score:
                first = min([at[w] for w in named] + [found[p].start() for p in said])
                if (score, -first) > best:
                    best, steps = (score, -first), answer
        return steps

    def names_topic(self, message: str) -> bool:
        """Whether ``message`` names one of the file's topics by a phrase or by a word outside :data:`EVERYDAY`."""
        if any(pattern.search(message) for _, phrases, _ in self.topics for pattern in phrases.values()):
            return True
        said = {stem for token in WORD.finditer(message.lower()) for stem in content_words(token.group())} - EVERYDAY
        return any(words & said for words, _, _ in self.topics)

    def fits_trouble(self, message: str) -> bool:
        """Whether ``message`` tells of something not working (:data:`TROUBLE`) and names one of the file's topics."""
        return TROUBLE.search(message) is not None and self.steps_for(message) is not None

    def says_steps(self, text: str) -> bool:
        """Whether ``text`` is one of the file's steps, word for word (a reply this file gave)."""
        return text.strip() in self._all_steps
