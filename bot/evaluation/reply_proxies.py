"""Automatic proxies of a good reply, for the skills whose references are too varied for F1.

- ``empathetic``: the reply acknowledges the person's feeling (sympathy, or naming how hard it is:
  :data:`ACKNOWLEDGES`), never cheers (:data:`CHEERS`: "That's wonderful news!" to a dog that died, as an
  adapter that also learned good news answered it), and never talks as a machine that cannot feel
  (:data:`AS_A_MACHINE`).
- ``tech_support``: the reply names the device or topic of the user's message (a content word
  of the last user turn) or gives a concrete step (an instruction verb: :data:`STEP`).

Neither counts a reply that says it doesn't know (:func:`~bot.evaluation.knowledge_check.abstains`): tech support's
"Sorry, I don't know that problem yet. Which device is it, and what do you see on the screen?" once counted as
sympathy (its "Sorry") for a heartbroken message routed to it, and as naming the topic (its "screen").

Both are lexical checks: a proxy, not a judgement. ``report.md`` prints sampled replies beside
them so a reader can see what they count.
"""
from __future__ import annotations

import re
from typing import Callable

from skills.knowledge import content_words

from .knowledge_check import abstains

ACKNOWLEDGES = re.compile(
    r"\b(sorry|oh no|ouch|ugh|aw+|that'?s (rough|hard|tough|awful|terrible|horrible|sad|a lot|so much|really hard|heartbreaking|"
    r"painful|scary|frustrating|stressful|unfair)|so hard|must (be|have been|feel)|sounds (really |so )?(hard|rough|tough|awful|"
    r"painful|frustrating|stressful|exhausting|lonely|scary|heavy)|(i can|can) (only )?imagine|hang in there|understandable|"
    r"(it'?s|that'?s) (okay|ok|normal|natural) to|heartbreaking|hurts?|painful|hard (time|day|week)|rough (time|day|week)|"
    r"you'?re not alone|condolences|take care|be kind to yourself|that'?s a lot)\b", re.IGNORECASE)
AS_A_MACHINE = re.compile(
    r"\b(i'?m (just |only )?(a|an) (bot|robot|computer|program|machine|ai)|i am (just |only )?(a|an) (bot|robot|computer|program|"
    r"machine|ai)|i (can'?t|cannot|don'?t|do not) (really )?(feel|have feelings)|programmed|my (circuits|programming))\b", re.IGNORECASE)
CHEERS = re.compile(
    r"\b(congratulations|congrats|well done|wonderful|so exciting|how exciting|(so )?happy for you|so proud|earned it|"
    r"lovely|perfect day|great news|good news|such a relief|what a relief|celebrat\w*|enjoy|you deserve it|amazing|awesome)\b",
    re.IGNORECASE)
STEP = re.compile(
    r"\b(try|restart|reboot|check|unplug|plug|open|go to|click|tap|turn (it )?(off|on)|switch|update|reset|hold|press|make sure|"
    r"remove|install|reinstall|uninstall|disconnect|reconnect|connect|run|select|change|clear|delete|charge|move|use|look|"
    r"sign in|log in|log out|enable|disable|back up|contact|call|scan|replace|clean|dry|shut down)\b", re.IGNORECASE)
SAMPLES = 10


def empathetic_ok(context: list[str], reply: str) -> bool:
    return (ACKNOWLEDGES.search(reply) is not None and CHEERS.search(reply) is None and AS_A_MACHINE.search(reply) is None
            and not abstains(reply))


def tech_support_ok(context: list[str], reply: str) -> bool:
    named = bool(content_words(context[-1]) & content_words(reply)) or STEP.search(reply) is not None
    return named and not abstains(reply)


PROXIES: dict[str, Callable[[list[str], str], bool]] = {"empathetic": empathetic_ok, "tech_support": tech_support_ok}


def proxy_report(name: str, contexts: list[list[str]], replies: dict[str, list[str]]) -> dict:
    """The share of good replies by routing (e.g. ``oracle``, ``auto``), and the first samples.

    ``replies[routing][i]`` answers ``contexts[i]``. Returns ``{"rate": {routing: float}, "n",
    "samples": [{"context", routing: reply, f"{routing}_ok": bool}]}``.
    """
    check = PROXIES[name]
    ok = {routing: [check(c, r) for c, r in zip(contexts, texts)] for routing, texts in replies.items()}
    return {
        "n": len(contexts),
        "rate": {routing: sum(v) / len(v) if v else 0.0 for routing, v in ok.items()},
        "samples": [{"context": c, **{routing: replies[routing][i] for routing in replies},
                     **{f"{routing}_ok": ok[routing][i] for routing in replies}}
                    for i, c in enumerate(contexts[:SAMPLES])],
    }
