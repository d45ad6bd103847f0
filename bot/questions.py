"""A question told with an aside is also routed on its own.

The manager reads the whole message, and a personal aside pulled fact questions to the empathetic skill or to
chit-chat: "what year did world war 2 end? me and my grandson are arguing about it" went to the empathetic skill
(0.57) and "how many legs does a spider have, my daughter says 6 and i dont think thats right" too (0.89), though
each question alone goes to trivia. A manager trained on written asides routed every other held-out set worse
(docs/DESIGN.md, "The dialogue manager").

So in Auto mode a message of several clauses (split at sentence ends, commas, colons, dashes, and "but", "anyway",
"btw", "also"), one of them a question (:data:`QUESTION`, ended by a question mark, or opening a message that has
none, without "i", "my" or "we"), is routed twice in one batch: whole, and as that question alone after the same
earlier turns. When the question goes to a skill that answers from a knowledge file with probability at least
:data:`QUESTION_MIN`, and the whole message went to a skill without one, to chit-chat, or to another knowledge skill
whose file doesn't answer it, the question's route wins. (A question closing such a message was tried too: "my nephew
just started hockey, what are the pucks made out of" then went to trivia, but so did a Chit-Chat turn of the held-out
single turns, 0.951 to 0.949.)

A message that opens with a short aside ("i was just wondering, my girlfriend broke up with me last night") is also
routed without it, in the same batch (:func:`after_aside`): when the whole went to chit-chat and the rest reaches a
skill at :data:`QUESTION_MIN` or more, the rest's route wins.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Collection

QUESTION = re.compile(r"^\W*(who|whom|whose|what|whats|what's|which|when|where|"
                      r"how (many|much|long|far|tall|old|big|deep|high|fast)|in what|in which)\b", re.IGNORECASE)
"""A clause that asks what a knowledge file may answer."""

_CLAUSE = re.compile(r"(.+?)([.?!]+\s*|,\s+|\s+-+\s+|;\s*|:\s+|\s+(?:but|anyway|btw|also)\s+|$)", re.IGNORECASE)
_FIRST_PERSON = re.compile(r"\b(i|i'm|im|me|my|we|our|us)\b", re.IGNORECASE)
_ASKS = re.compile(r"\?|\b(what|whats|what's|why|how)\b|(^|:\s*|\b(but|and|so|or|also|anyway|btw|asked|ask|wonder|wondering|"
                   r"know|in|at|of|from|to|on|by|for|with)\s+)(who|whom|whose|which|when|where)\b", re.IGNORECASE)
_ASKS_AT_START = re.compile(r"^\W*(who|whom|whose|which|when|where|is|are|was|were|do|does|did|can|could|will|would|"
                           r"should|has|have|had|name|tell me|list)\b", re.IGNORECASE)
_ASKS_TO_ASK = re.compile(r"\bask\b", re.IGNORECASE)
QUESTION_MIN = 0.9
"""The least probability of a knowledge skill for the question alone that overrides the whole message's route."""


def question_part(message: str) -> str | None:
    """The question of a message that says more than it (``None`` for a message of one clause, or with none)."""
    clauses = [(m.group(1).strip(), m.group(2)) for m in _CLAUSE.finditer(message.strip()) if m.group(1).strip()]
    if len(clauses) < 2:
        return None
    asks = "?" in message
    for i, (clause, end) in enumerate(clauses):
        unmarked = i == 0 and not asks and not _FIRST_PERSON.search(clause)  # not "when i got home, ..."
        if QUESTION.search(clause) and len(clause.split()) >= 3 and ("?" in end or unmarked):
            return clause
    return None


def after_aside(message: str) -> str | None:
    """The message without its opening clause when that clause is a short aside of 2 to 6 words ("i was just
    wondering, ...", "not sure if you can help but ...", "quick thing, ...") and the rest says something (3 words or
    more); ``None`` otherwise. A question is no aside unless it asks to ask ("can i ask you something?"): "do you have
    a favorite number? mine's 7, obviously..." went by its rest to the empathetic skill (session 21's trial)."""
    clauses = [(m.group(1).strip(), m.end(2), m.group(2)) for m in _CLAUSE.finditer(message.strip()) if m.group(1).strip()]
    if len(clauses) < 2 or not 2 <= len(clauses[0][0].split()) <= 6:
        return None
    if "?" in clauses[0][2] and not _ASKS_TO_ASK.search(clauses[0][0]):
        return None
    rest = message.strip()[clauses[0][1]:].strip()
    return rest if len(rest.split()) >= 3 else None


def asks(message: str) -> bool:
    """Whether ``message`` asks anything: a "?"; "what", "how" or "why" anywhere ("totally unrelated but what..."); or
    a clause that opens like a question or a request ("which...", "is it...", "name the...", "tell me..."); or "which",
    "who", "when", "where" after a colon, a conjunction, "asked" or a preposition ("in which family", "my youngest asked
    where"); after a noun they relate and ask nothing ("a device which maps...")."""
    if _ASKS.search(message):
        return True
    return any(_ASKS_AT_START.search(m.group(1)) for m in _CLAUSE.finditer(message.strip()) if m.group(1).strip())


_TO_YOU = re.compile(r"\b(you|your|yours|yourself|u|ur|ya)\b", re.IGNORECASE)


def asks_a_fact(message: str) -> bool:
    """Whether ``message`` asks (:func:`asks`) and not about the one it talks to: "where did eminem grow up??" does,
    "what kind of music are you into" and "who made you?" don't."""
    return asks(message) and _TO_YOU.search(message) is None


def route_with_questions(route_batch: Callable[[list[list[str]]], list[Any]], histories: list[list[str]],
                         knowledge_skills: Collection[str],
                         answers: Callable[[str, list[str]], bool] = lambda skill, history: True) -> list[Any]:
    """``route_batch``'s decisions for ``histories``, a question told with an aside routed by the question alone
    where it goes to one of ``knowledge_skills`` (see the module's docstring), and a message routed to chit-chat by
    what follows its opening aside (:func:`after_aside`) where that goes to a skill with probability at least
    :data:`QUESTION_MIN` ("i was just wondering, my girlfriend broke up with me last night" went to chit-chat); one
    ``route_batch`` call for all.
    ``answers(skill, history)``: whether knowledge skill ``skill``'s file answers ``history``; the question also wins
    over a whole message routed to another knowledge skill whose file does not ("ok unrelated but who painted the mona
    lisa?" after a laptop's fix went to tech support, which said "Sorry that didn't help", a new user in session 20)."""
    asked = [(i, q) for i, q in ((i, question_part(h[-1])) for i, h in enumerate(histories)) if q is not None]
    rests = [(i, r) for i, r in ((i, after_aside(h[-1])) for i, h in enumerate(histories)) if r is not None]
    decisions = route_batch([*histories, *(histories[i][:-1] + [part] for i, part in asked + rests)])
    out = decisions[: len(histories)]
    for (i, _), question in zip(asked, decisions[len(histories):]):
        whole = out[i].skill
        if (question.skill in knowledge_skills and question.probability >= QUESTION_MIN and question.skill != whole
                and (whole not in knowledge_skills or not answers(whole, histories[i]))):
            out[i] = question
    for (i, _), rest in zip(rests, decisions[len(histories) + len(asked):]):
        if out[i].skill is None and rest.skill is not None and rest.probability >= QUESTION_MIN:
            out[i] = rest
    return out
