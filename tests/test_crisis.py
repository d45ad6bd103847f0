"""Which messages get the written crisis reply (bot.crisis)."""
from __future__ import annotations

import pytest

from bot.crisis import speaks_of_self_harm


@pytest.mark.parametrize("message", ["i want to kill myself", "im thinking about ending it all", "i dont want to be alive anymore",
                                     "everyone would be better off without me", "i've been cutting myself again",
                                     "sometimes i wish i was never born", "I want to die", "feeling suicidal tonight",
                                     "i just want to end my life", "been having thoughts of suicide",
                                     # a new user's (session 17), which the check had missed
                                     "i don't want to be here anymore", "what's the point of living",
                                     "nobody would miss me if i was gone", "life isn't worth living",
                                     "i keep thinking about ending things", "i want to go to sleep and never wake up",
                                     # a new user's (session 21), which had got "That is true, but I am sure you will
                                     # figure it out" from the backbone
                                     "i honestly don't see the point of living anymore", "there's no point in living",
                                     "i dont want to go on anymore", "ive lost the will to live", "so tired of being alive",
                                     "i don't want to keep living like this", "might as well be dead"])
def test_words_of_suicide_or_self_harm_said_of_oneself_are_caught(message):
    assert speaks_of_self_harm(message)


@pytest.mark.parametrize("message", ["this traffic is killing me", "my phone battery wants to die", "i cut myself shaving",
                                     "i hurt myself at the gym", "i dont want to die lifting", "my friend committed suicide last year",
                                     "i don't want to live forever", "how do i kill a frozen program in task manager",
                                     "i don't want to be here at this party", "what's the point of this meeting",
                                     "nobody would miss the old logo", "i keep thinking about ending my subscription",
                                     "i don't want to go on a date with him", "we keep living in the same town",
                                     "i don't see the point of this meeting"])
def test_everyday_words_of_dying_and_hurting_are_not(message):
    assert not speaks_of_self_harm(message)
