"""A message that speaks of suicide or self-harm gets a written reply that points to people who can help.

Neither the 14M backbone nor any skill can answer it safely: a new user's "i want to kill myself" went to the bare
backbone and got "Yeah, that's true, I don't have time to do it in a big part..." (session 16). So whatever the route,
Auto or a skill chosen by name, such a message is answered with :data:`CRISIS_REPLY`, never generated, and the message
after that reply with :data:`CRISIS_FOLLOW_UP`. The check
errs on the side of answering: "i'm gonna kill myself if i hear that song again" gets the reply too.
"""
from __future__ import annotations

import re
from typing import Sequence

from .social import only_closing

SELF_HARM = re.compile(
    r"\b(kill(ing)? myself|suicidal|(think|thinking|thought|thoughts) (about|of) (suicide|killing myself)|"
    r"(want|wanna|going|gonna|plan|planning) to commit suicide|end(ing)? (my|it) (own )?(life|all)|take my (own )?life|"
    r"self[- ]?harm(ing)?|(want|wanna|going|gonna|thinking about|think about) (to )?(hurt|cut|harm|hurting|cutting|harming) myself|"
    r"(been|keep|started|start) (hurting|cutting|harming) myself|better off dead|"
    r"(every|some|any)one( would be)? better off without me|(?<!n't )(?<!dont )(?<!not )(want|wanna|wish i could|would rather) "
    r"(to )?die|wish i (was|were) dead|wish i (was|were)n'?t alive|wish i('d| had| was| were)? never (been )?born|"
    r"don'?t want to (live|be alive|exist|wake up)(?! forever)( anymore)?|no reason to (live|go on|keep going)|"
    r"not worth living|(can'?t|cannot) go on living|don'?t want to be (here|around|alive) any ?more|"
    r"(life|living) (is|isn'?t|is not) (not )?worth (it|living)|what'?s the point (of|in) (living|life|going on|being alive)|"
    r"(no ?one|nobody) would (even )?(miss|notice|care about) me|(no ?one|nobody) would (even )?(care|notice) if i (died|was gone|"
    r"were gone|disappeared)|go to sleep and (never|not) wake up|(thinking|thought|think) (about|of) ending (it|things)|"
    r"want to disappear forever|"
    r"(don'?t|do not|can'?t|cannot) see (the|any) point (in|of) (living|life|going on|being alive|being here|carrying on|"
    r"anything|any of it)|no point (in |of |to )?(living|life|going on|being alive|carrying on)|"
    r"(don'?t|do not) want to (go on|carry on|keep going)(?=\s*([^\w\s]|$|any ?more|like this|living))|(don'?t|do not) want to keep living|(tired|sick) of (living|being alive)|"
    r"(lost|no) (the )?will to live|(want|wish|need) (it|everything) (all )?to (just )?(end|stop) for good|"
    r"unalive myself|end myself|might as well (be dead|die)|(rather|better) (be|being) dead)\b", re.IGNORECASE)
"""Words of suicide or self-harm, said of oneself."""

CRISIS_REPLY = ("I'm really sorry you're feeling this way, and I'm glad you told me. I'm only a small chatbot and can't give "
                "you the help you deserve, so please reach out to someone now. If you might act on these thoughts, call "
                "your local emergency number. In the US you can call or text 988; in the UK and Ireland, Samaritans "
                "answer on 116 123; elsewhere, findahelpline.com lists free, confidential lines. You don't have to go "
                "through this alone.")


CRISIS_FOLLOW_UP = ("That sounds like a lot to carry. I'm here to listen, but I'm only a chatbot, so please also talk to "
                    "someone who can really help: 988 in the US, 116 123 in the UK and Ireland, or your local emergency "
                    "number. What's been going on?")
"""The reply to the message right after :data:`CRISIS_REPLY`: after it, "i dont know, everything is just too much" went
to tech support, which asked which device it was."""


CRISIS_GOODBYE = ("Take care of yourself. If it gets hard again, please reach out to someone: 988 in the US, 116 123 in "
                  "the UK and Ireland, or your local emergency number. I'm here whenever you want to talk.")
"""The reply to thanks or a goodbye right after :data:`CRISIS_REPLY`: "ok thanks, bye" had got
:data:`CRISIS_FOLLOW_UP`'s "What's been going on?"."""


def speaks_of_self_harm(message: str) -> bool:
    """Whether ``message`` speaks of suicide or self-harm (:data:`SELF_HARM`)."""
    return SELF_HARM.search(message) is not None


def crisis_reply(history: Sequence[str]) -> str | None:
    """The written reply to the user's message, last in ``history``: :data:`CRISIS_REPLY` when it speaks of suicide or
    self-harm; when it answers that reply, :data:`CRISIS_GOODBYE` if it only thanks or takes leave, else
    :data:`CRISIS_FOLLOW_UP`; otherwise ``None``."""
    if speaks_of_self_harm(history[-1]):
        return CRISIS_REPLY
    if len(history) < 2 or history[-2].strip() != CRISIS_REPLY:
        return None
    return CRISIS_GOODBYE if only_closing(history[-1]) else CRISIS_FOLLOW_UP
