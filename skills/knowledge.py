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
import math
import os
import re
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection, Iterable, Sequence

import numpy as np

from .chat_words import topicality
from .files import MAX_BYTES, atomic_write_text, read_text

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


def write_passages(passages: Iterable[str], path: Path) -> Path:
    """A JSONL knowledge file at ``path``, one ``{"text": passage}`` a line, as :func:`read_passages` reads it back."""
    atomic_write_text(Path(path), "".join(json.dumps({"text": p}, ensure_ascii=False) + "\n" for p in passages))
    return Path(path)


@functools.cache
def _bm25s() -> Any:
    """The ``bm25s`` module, imported on first use; its logger is quieted, as bm25s sets it to DEBUG on import."""
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)
    return bm25s


@functools.cache
def _stemmer() -> Any:
    """Snowball's English stemmer: "originally" and "originate" both become "origin"."""
    import Stemmer

    return Stemmer.Stemmer("english")


# Words a question and its passage use for the same thing, one set a line, each word read as the line's first.
# A stemmer leaves them apart ("biggest" and "largest", "author" and "wrote", "gave" and "given"): with
# "biggest", "which planet is the hottest in the solar system" outranked "the largest planet in our solar system".
SYNONYMS = """
large big bigger biggest huge larger largest
small tiny tinier tiniest smaller smallest little
high tall taller tallest higher highest
write wrote written writer author authored
give gave given
paint painted painter
invent invented inventor
discover discovered discoverer
begin began begun
win won winner
fall fell fallen
sink sank sunk
build built builder
die died death
fast quick faster quicker fastest quickest
film movie films movies
male males boy boys
female females girl girls
type types kind kinds sort sorts
produce produces produced producer producers grow grows grown
"""
_CANONICAL = {word: line.split()[0] for line in SYNONYMS.split("\n") for word in line.split()}


def _stem(words: list[str]) -> list[str]:
    """Stems of ``words``, each synonym (:data:`SYNONYMS`) read as its set's first word."""
    return _stemmer().stemWords([_CANONICAL.get(w, w) for w in words])


def _tokenize(texts: list[str], ids: bool) -> Any:
    return _bm25s().tokenize(texts, lower=True, stopwords="en", stemmer=_stem, return_ids=ids, show_progress=False)


@dataclass(frozen=True)
class Lookup:
    """A turn's knowledge: the best passage for the message, and whether it is used.

    Attributes:
        passage: the best BM25 passage, or ``None`` when no passage shares a word with the message.
        coverage: how much of the message the passage covers (see :func:`coverage`), in ``[0, 1]``.
        used: whether the passage goes into the context (``coverage >= min_overlap``, and its answer
            is more than the message's own words: :func:`answer_echoes`). An unused
            passage is still shown to the user, marked as not used, and the skill answers without it.
    """

    passage: Passage | None
    coverage: float
    used: bool

    @property
    def text(self) -> str | None:
        return self.passage.text if self.passage else None


# The passage used is the best of BM25's RERANK best by its coverage of the query plus BM25_WEIGHT times its share of
# the best BM25 score: BM25 alone counts words such as "does" and "have" ("how many ribs does a person have" found
# "How many eyes does a bee have?" first and the ribs fifth), coverage alone favours a passage that holds the
# query's words but asks another question (docs/DESIGN.md, "Knowledge", session 18).
RERANK, BM25_WEIGHT = 5, 2.0
OUTCOME_SKIPS = 2  # most passages passed over for telling another outcome before the best one left is taken

# Words that carry no topic in a question as people type it: BM25's English stop list plus chat filler.
_FILLER = {"whats", "what's", "who's", "whos", "where's", "know", "tell", "hey", "hi", "please", "pls", "wondering",
           "anyone", "remind", "name", "called", "actually", "guess", "think", "u", "ya", "im", "i'm", "wanna",
           "quick", "question", "ok", "okay", "so", "um", "uh", "hmm", "curious", "like", "really", "thanks", "thank",
           "thx", "ty", "cool", "great", "nice", "lol", "haha", "anyway", "anyways", "btw", "oh", "ah", "yeah", "yes",
           "alright", "wait", "whatever", "honestly"}
WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
"""A word of lower-cased text, as the knowledge files and the first steps read it ("don't" is one word)."""


def content_words(text: str) -> set[str]:
    """Stems of the lower-cased words of ``text``, stop words and chat filler left out."""
    stop = _bm25s().stopwords.STOPWORDS_EN_PLUS
    return set(_stem([w for w in WORD.findall(text.lower()) if w not in stop and w not in _FILLER]))


def coverage(query: str, passage: str, idf: "dict[str, float]", unseen_idf: float) -> float:
    """How much the query and the passage cover each other, in ``[0, 1]``.

    For a question-and-answer passage (its answer on its last line), the mean of two shares: of the
    query's content words found in the passage, and of the passage question's content words found in
    the query. The second keeps a chatty message ("someone told me polar bears aren't white underneath,
    what colour is their skin") from being turned away for its extra words when it asks everything the
    passage's question asks. For a one-line passage, only the first share. (Why the mean: docs/DESIGN.md,
    "Knowledge".)

    Each word weighs its IDF in the file times its :func:`~skills.chat_words.topicality`: a rare word
    of the question missing from the passage (``Sistine`` against a Guernica passage) weighs more than
    a common one, a word in no passage at all weighs ``unseen_idf``, the most, and a word common in
    casual chat ("already", "told") weighs less, whatever the file holds.
    """
    asked, found = content_words(query), content_words(passage)
    of_query = _share(asked, found, idf, unseen_idf)
    question = question_of(passage)
    if question is None:
        return of_query
    return (of_query + _share(content_words(question), asked, idf, unseen_idf)) / 2


def _share(words: set[str], found: set[str], idf: "dict[str, float]", unseen_idf: float) -> float:
    """The weighted share of ``words`` in ``found`` (see :func:`coverage`); 0 for no words."""
    if not words:
        return 0.0
    weight = {w: idf.get(w, unseen_idf) * topicality(w) for w in words}
    return sum(v for w, v in weight.items() if w in found) / sum(weight.values())


def answer_echoes(query: str, passage: str) -> bool:
    """Whether a question-and-answer passage (its answer on its last line) answers with nothing but
    words of the query: "Canberra is the capital of which country?\\nAustralia" for "what's the
    capital of australia" covers the question well and answers the inverse one."""
    answer = content_words(answer_of(passage)) if question_of(passage) is not None else set()
    return bool(answer) and answer <= content_words(query)


_ORDINALS = {w: str(i) for i, w in enumerate("zeroth first second third fourth fifth sixth seventh eighth ninth tenth "
                                             "eleventh twelfth".split())}


def numbers(text: str) -> set[str]:
    """The numbers of ``text``, as digits: "37th" and "ww2" give "37" and "2", "first" gives "1"."""
    return set(re.findall(r"\d+", text)) | {_ORDINALS[w] for w in WORD.findall(text.lower()) if w in _ORDINALS}


def asks_another_number(query: str, passage: str) -> bool:
    """Whether the query and a question-and-answer passage's question both hold numbers, none the same: "who was
    the very first president of the united states" against "Who was the 37th President of the United States?"
    covers every other word, and its answer (Richard Nixon) is another question's. (Sharing one is enough: "the
    very first starbucks" still finds "...Starbucks open its first store in 1971?".)"""
    question = question_of(passage)
    if question is None:
        return False
    asked, theirs = numbers(query), numbers(question)
    return bool(asked and theirs) and not asked & theirs


_ASKS_A_NUMBER = re.compile(r"\bhow (many|much|old|long|far|tall|high|big|deep|wide|heavy|fast)\b|\b(what|which) year\b",
                            re.IGNORECASE)
_CARDINALS = frozenset("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
                       "sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety "
                       "hundred thousand million billion trillion dozen half once twice".split())


def answers_without_a_number(query: str, passage: str) -> bool:
    """Whether the query asks for a number ("how many", "how tall", "what year") and a question-and-answer passage's
    answer holds none (no digit, no number word): "how many planets are there in our solar system" covered "What is
    the largest planet in our solar system?" and got "Jupiter" (a new user's, session 14)."""
    if question_of(passage) is None or not _ASKS_A_NUMBER.search(query):
        return False
    answer = answer_of(passage)
    return not re.search(r"\d", answer) and not _CARDINALS & set(re.findall(r"[a-z]+", answer.lower()))


_COUNTED = re.compile(r"\bhow (?:many|much) ([a-z']+)", re.IGNORECASE)


def counts_another_thing(query: str, passage: str) -> bool:
    """Whether the query asks how many of something ("how many legs...") that a question-and-answer passage's
    question never names: "how many legs does an octopus have" covered "How many hearts does an octopus have?"
    at 0.59 and got "Three" (session 14). A filler word after "how many" ("how many have names...") names nothing."""
    question, counted = question_of(passage), _COUNTED.search(query)
    if question is None or counted is None:
        return False
    thing = content_words(counted.group(1))
    return bool(thing) and not thing & content_words(question)


_SUPERLATIVES = {w: line.split()[0] for line in """
large biggest largest
small smallest tiniest
high highest tallest
low lowest
long longest
short shortest
old oldest
young youngest newest
fast fastest quickest
slow slowest
hot hottest warmest
cold coldest coolest
deep deepest
heavy heaviest
light lightest
rich richest
poor poorest
bright brightest
loud loudest
wet wettest
dry driest
strong strongest
wide widest
cheap cheapest
busy busiest
near nearest closest
far farthest furthest
good best
bad worst
first first earliest
last last latest
north northernmost
south southernmost
east easternmost
west westernmost
""".strip().splitlines() for w in line.split()[1:]}
"""Superlatives, each read as its line's first word ("biggest" and "largest" ask the same). Not "most": "which
country produces the most vanilla" asks "Which country is the largest producer of vanilla?"."""


def asks_another_superlative(query: str, passage: str) -> bool:
    """Whether the query and a question-and-answer passage's question both ask a superlative, none the same (by
    :data:`_SUPERLATIVES`): "which is the biggest ocean in the world?" covered "What is the smallest ocean in the
    world?" better than "What is the name of the Earth's largest ocean?" and got "The Arctic" (session 22's trial)."""
    question = question_of(passage)
    if question is None:
        return False
    asked = {_SUPERLATIVES[w] for w in WORD.findall(query.lower()) if w in _SUPERLATIVES}
    theirs = {_SUPERLATIVES[w] for w in WORD.findall(question.lower()) if w in _SUPERLATIVES}
    return bool(asked and theirs) and not asked & theirs


_WORKED = re.compile(r"\b(worked|works now|working now|fixed|solved|sorted|that did it|did the trick|back to normal|all good)\b",
                     re.IGNORECASE)
_THANKS = re.compile(r"\b(thanks?|thank you|thx)\b", re.IGNORECASE)
_GLAD = re.compile(r"^\W*(great|wonderful|nice|yay|perfect|awesome|glad|what a relief|that's great|good catch|"
                   r"so much better|you're welcome|ha)\b", re.IGNORECASE)
_STILL_BROKEN = re.compile(r"\b(still|didn'?t|did not|doesn'?t|does not|isn'?t|not (working|fixed|solved|sorted)|same (problem|thing|issue)|no luck|nope|"
                           r"nothing changed)\b", re.IGNORECASE)


def says_it_worked(message: str) -> bool:
    """Whether ``message`` says a fix worked ("ok that fixed it", "works now, thanks") and not that it still doesn't."""
    return bool(_WORKED.search(message)) and not _STILL_BROKEN.search(message)


_FOLLOWS_UP = re.compile(r"\b(tried|did that|done that|already|again)\b", re.IGNORECASE)


def follows_up(message: str) -> bool:
    """Whether ``message`` reads as a follow-up on a step the bot gave: something tried ("tried that", "already",
    "again") or still not working ("still", "didn't", "no luck")."""
    return bool(_FOLLOWS_UP.search(message) or _STILL_BROKEN.search(message))


def tells_a_problem(message: str) -> bool:
    """Whether ``message`` tells a problem of its own rather than following up on a fix: at least three content
    words, and none of a follow-up ("tried that", "still", "same thing"): "it found errors" or "how do i find that
    setting?" after a fix are details of the problem before (though "its a samsung tv if that helps" reads as one)."""
    return len(content_words(message)) >= 3 and not follows_up(message)


def reports_another_outcome(message: str, passage: str, before: str | None) -> bool:
    """Whether ``passage``, an exchange whose user's last turn says the fix worked ("ok that fixed it, thank you so
    much!", or answered gladly: "Wonderful, glad it's printing again!"), is offered to a ``message`` saying it still
    doesn't ("i tried that already, still drops" after a Wi-Fi fix had got "Great news, glad it's stable again!"), or
    to one that follows no talk of its problem: ``before``, the user's message before the bot's last turn, shares no
    word with the exchange (``None``: there is none; "my printer says its offline again" after a greeting had got
    "Wonderful, glad it's printing again!")."""
    question = question_of(passage)
    if question is None or not re.search(r"[.!?]\s", question.strip()):
        return False  # one turn, or not an exchange: nothing was tried yet
    last = re.split(r"(?<=[.!?])\s+", question.strip())[-1]  # the exchange's last turn, the user's
    said_so = _WORKED.search(last) or _THANKS.search(last) or _GLAD.search(answer_of(passage))
    worked = said_so and not _STILL_BROKEN.search(last)
    tried = before is not None and bool(content_words(before) & content_words(question))
    return bool(worked and (not tried or _STILL_BROKEN.search(message) and not _WORKED.search(message)))


def search_query(history: Sequence[str], turns: int = 1) -> str:
    """The search query of a conversation (oldest turn first): its ``turns`` newest turns, joined, the
    newest (the user's message) twice, so that it weighs as much as the turns before it together."""
    recent = [t.strip() for t in history[-turns:] if t.strip()]
    return " ".join(recent + recent[-1:] if len(recent) > 1 else recent)


def exchange_passage(context: Sequence[str], response: str) -> str:
    """An exchange as a passage of a FAQ: its turns on one line, a line break, the reply (after the line
    break the reply encodes as at the start of a reply, and :func:`answer_of` finds it)."""
    return " ".join(t.strip() for t in context) + "\n" + response


def answer_of(passage: str) -> str:
    """A passage's last non-blank line: the answer of a question-and-answer passage."""
    lines = [line.strip() for line in passage.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def question_of(passage: str) -> str | None:
    """A question-and-answer passage's question: its non-blank lines before the last, joined; ``None`` for a
    passage of one line (no answer line)."""
    lines = [line.strip() for line in passage.splitlines() if line.strip()]
    return " ".join(lines[:-1]) if len(lines) > 1 else None


@dataclass(frozen=True)
class _Index:
    stamp: tuple[int, int]  # (mtime_ns, size) of the file it was built from
    passages: list[str]
    bm25: Any  # bm25s.BM25, or None when there are no passages
    idf: dict[str, float]  # content word -> log((N + 1) / (df + 0.5)) over the passages
    unseen_idf: float
    answers: list[set[str]]  # the content words of each passage's answer (answer_of)


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
        df = Counter(w for p in passages for w in content_words(p))
        n = len(passages)
        idf = {w: math.log((n + 1) / (c + 0.5)) for w, c in df.items()}
        return _Index(stamp, passages, bm25, idf, math.log((n + 1) / 0.5), [content_words(answer_of(p)) for p in passages])

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

    def follows_an_answer(self, history: Sequence[str]) -> bool:
        """Whether the user's message, last in ``history``, follows a reply copied from this file: one of the bot's
        last two turns says a passage's answer (:meth:`says_an_answer`)."""
        return any(self.says_an_answer(turn) for turn in history[-2::-2][:2])

    def says_an_answer(self, text: str) -> bool:
        """Whether ``text`` says the answer of one of the passages (most of the answer's content words are in it):
        a reply the skill copied from its file."""
        self.refresh()
        said = content_words(text)
        return any(_says(words, said) for words in self._index.answers)

    def lookup(self, query: str, min_overlap: float = 0.0, avoid: Collection[str] = (), message: str | None = None,
               numbers_must_agree: bool = False, before: str | None = None) -> Lookup:
        """The one place a turn's knowledge is looked up: the best passage and whether it covers the query.

        The passage is used when its :func:`coverage` of ``query`` is at least ``min_overlap``; a
        skill's threshold is chosen on validation questions (in its file and not in it). Passages whose
        answer (:func:`answer_of`) was already said in ``avoid`` (most of its content words in one text
        of it) are passed over: given the bot's earlier replies, a follow-up never gets the same answer twice.

        ``message``, the user's newest message when ``query`` also holds earlier turns: the passage is
        also used when it covers the message alone. An exchange whose user said the fix worked is passed over for a
        message saying it still doesn't, or for one that follows no talk of its problem (``before``, the user's
        message before the bot's last turn; :func:`reports_another_outcome`; up to :data:`OUTCOME_SKIPS` of them). ``numbers_must_agree``: a passage asking about another
        number, answering a number question without one, or counting another thing is not used (:func:`_answers`,
        ``KnowledgeSpec.numbers_must_agree``), and one whose question asks another superlative than the message is passed
        over (:func:`asks_another_superlative`).
        """
        said = [content_words(a) for a in avoid]
        found = self._best(query, min_overlap, said, numbers_must_agree, query if message is None else message, before)
        if message is None or found.passage is None or found.used:
            return found
        index = self._index
        share = max(found.coverage, coverage(message, found.passage.text, index.idf, index.unseen_idf))
        return Lookup(found.passage, share, share >= min_overlap and _answers(query, found.passage.text, numbers_must_agree))

    def lookup_conversation(self, history: Sequence[str], min_overlap: float = 0.0, query_turns: int = 1,
                            avoid: Collection[str] = (), numbers_must_agree: bool = False) -> Lookup:
        """:meth:`lookup` for a conversation (oldest turn first, the user's message last): the query is its
        ``query_turns`` newest turns (:func:`search_query`), the message alone also counts for the gate, and
        with more than one turn the answers already in it are passed over, as are those in ``avoid``. When no passage
        found so is used and the message tells a problem of its own (:func:`tells_a_problem`), the message is looked up
        alone: a new problem ("also my laptop is running really slow lately" after a printer's fix) had found the
        earlier problem's passages only (tech support's card measures both kinds of turn)."""
        said = [*history[:-1], *avoid] if query_turns > 1 else list(avoid)
        before = history[-3] if len(history) >= 3 else None
        found = self.lookup(search_query(history, query_turns), min_overlap, avoid=said, message=history[-1],
                            numbers_must_agree=numbers_must_agree, before=before)
        if found.used or query_turns == 1 or len(history) == 1 or not tells_a_problem(history[-1]):
            return found
        alone = self.lookup(history[-1], min_overlap, avoid=said, numbers_must_agree=numbers_must_agree, before=before)
        return alone if alone.used else found

    def _best(self, query: str, min_overlap: float, said: list[set[str]], numbers_must_agree: bool, message: str,
              before: str | None) -> Lookup:
        hits = [h for h in self.search(query, k=OUTCOME_SKIPS + RERANK + len(said))
                if not _already_said(answer_of(h.text), said) and not reports_another_outcome(message, h.text, before)
                and not (numbers_must_agree and asks_another_superlative(message, h.text))][:RERANK]
        if not hits:
            return Lookup(None, 0.0, False)
        index = self._index
        shares = [coverage(query, h.text, index.idf, index.unseen_idf) for h in hits]
        best = max(range(len(hits)), key=lambda i: (shares[i] + BM25_WEIGHT * hits[i].score / hits[0].score, -i))
        return Lookup(hits[best], shares[best], shares[best] >= min_overlap and _answers(query, hits[best].text, numbers_must_agree))


_ASKS_WHO = re.compile(r"\bwho\b", re.IGNORECASE)
_NOT_A_WHO = re.compile(r"^\W*(where|when|how)\b", re.IGNORECASE)
_A_THING = re.compile(r"^\W*(a|an)\s", re.IGNORECASE)


def answers_a_who_with_a_thing(query: str, passage: str) -> bool:
    """Whether the query asks who, and a question-and-answer passage answers where, when or how, or with "a"/"an"
    something: "who wrote the harry potter books?" covered "What is Harry Potter's Patronus?" and got "A stag"
    (session 19's trial)."""
    question = question_of(passage)
    if question is None or not _ASKS_WHO.search(query):
        return False
    return bool(_NOT_A_WHO.match(question) or _A_THING.match(answer_of(passage)))


def _answers(query: str, passage: str, numbers_must_agree: bool) -> bool:
    """Whether a passage that covers ``query`` well enough answers it: not with the query's own words
    (:func:`answer_echoes`), nor, if ``numbers_must_agree``, for another number (:func:`asks_another_number`),
    without one (:func:`answers_without_a_number`), counting another thing (:func:`counts_another_thing`) or
    answering a "who" with a thing (:func:`answers_a_who_with_a_thing`)."""
    if answer_echoes(query, passage):
        return False
    return not (numbers_must_agree and (asks_another_number(query, passage) or answers_without_a_number(query, passage)
                                        or counts_another_thing(query, passage) or answers_a_who_with_a_thing(query, passage)))


def _already_said(answer: str, said: list[set[str]]) -> bool:
    words = content_words(answer)
    return any(_says(words, s) for s in said)


def _says(answer: set[str], said: set[str], share: float = 0.7) -> bool:
    """Whether ``said`` holds most of an answer's content words ``answer`` (none: never)."""
    return bool(answer) and len(answer & said) >= share * len(answer)
