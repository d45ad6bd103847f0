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


SHOWN = re.compile(r"(?:^|(?<=[\s(]))(?:'((?:[^'\n]|(?<=\w)'(?=\w)){2,120}?)'|[\"\u2018\u201c]([^\"\u2018\u2019\u201c\u201d\n]{3,120}?)"
                   r"[\"\u2019\u201d])(?=[\s.,!?;:)]|$)"
                   r"|\b(?:error|code|fault)\s*(?:code\s*)?[:#]?\s*[a-z]{0,3}-?\d{1,5}[a-z]?\b", re.IGNORECASE)
"""What a device shows, quoted in the message ("keeps saying 'lock jammed' in the app", "'we couldn't verify you'"; an
apostrophe inside a word quotes nothing) or as a code ("error 1700")."""


SAID_BY_SOMEONE = re.compile(r"\b(i|he|she|they|we|you|((my|his|her|our|their|the) )?(mom|mum|mother|dad|father|son|daughter|"
                             r"grandson|granddaughter|grandma|grandpa|wife|husband|boss|friend|teacher|doctor|coach|"
                             r"manager|landlord|sister|brother|kid|kids|partner|neighbou?r|aunt|uncle|cousin))"
                             r"( just| then| always| even)? (say|says|said|tell|tells|told|ask|asks|asked|goes|went|called|"
                             r"calls|wrote|writes|texted)( me| us| him| her| them)?\W*$", re.IGNORECASE)
"""A person saying what follows ("she say 'this is my home, i stay'"): words quoted after it are no device's."""


def shown_on_screen(message: str) -> str | None:
    """The first message or code that ``message`` says its device shows (:data:`SHOWN`): two or more quoted words, up
    to the end of their first sentence, a quoted code ('E2'), or a code after "error", "code" or "fault"; ``None`` when
    it quotes none. Words a person said (:data:`SAID_BY_SOMEONE`) are no device's."""
    for match in SHOWN.finditer(message):
        quoted = match.group(1) or match.group(2)
        if quoted is None:
            return match.group()  # "error code 90"
        shown = quoted.strip()
        if SAID_BY_SOMEONE.search(message[: match.start()]):
            continue
        if len(shown.split()) >= 2 or re.search(r"\d", shown):  # one quoted word, unless a code ('E2'), is as often
            # a setting or a word typed ("autocorrects 'well'") as a message
            first = re.match(r".+?[.!?](?=\s|$)", shown)
            return first.group() if first and len(shown) > 60 else shown
    return None


WHERE_ITS_FIX = (' If it still says "{shown}", search those exact words and the device\'s or app\'s name on its maker\'s '
                 'support site: most messages have a page of their own there.')
"""What first steps add for a message that quotes what its device shows (:meth:`FirstSteps.reply`)."""


def _without_question(steps: str) -> str:
    """``steps`` without a last sentence that asks back ("If it still fails, what does the message say?")."""
    body, _, last = steps.rpartition(". ")
    return body + "." if body and last.rstrip().endswith("?") else steps


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

    def reply(self, message: str) -> str | None:
        """The first steps for ``message`` (:meth:`steps_for`), and when it quotes what its device shows
        (:func:`shown_on_screen`), where that message's own fix is, instead of asking back what it says: 14 of the 20 tech
        problems of session 22's two fresh trials quoted one ("'Pod Error. Insulin delivery stopped.'", "error 14")
        that no first step could know. ``None`` when the message names no topic."""
        steps = self.steps_for(message)
        shown = shown_on_screen(message) if steps is not None else None
        if shown is None:
            return steps
        return _without_question(steps) + WHERE_ITS_FIX.format(shown=shown)

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
        """Whether ``text`` is a reply this file gave (:meth:`reply`): one of its steps, word for word, or one told
        where a message's own fix is."""
        text = text.strip()
        told = WHERE_ITS_FIX.split("{shown}")[0]
        return text in self._all_steps or any(text.startswith(_without_question(steps) + told) for steps in self._all_steps)
