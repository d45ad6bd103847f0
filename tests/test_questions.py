"""A question told with an aside is also routed on its own (bot/questions.py)."""
import pytest

from bot.questions import after_aside, asks, question_part, route_with_questions
from manager.router import Decision


@pytest.mark.parametrize("message, question", [
    ("what year did world war 2 end? me and my grandson are arguing about it", "what year did world war 2 end"),
    ("how many legs does a spider have, my daughter says 6 and i dont think thats right", "how many legs does a spider have"),
    ("my buddy and i have money on it. who won the very first world cup?", "who won the very first world cup"),
    ("ok unrelated but who painted the mona lisa?", "who painted the mona lisa"),
    ("random question: which planet is the hottest?", "which planet is the hottest"),
])
def test_the_question_of_a_message_that_says_more_is_found(message, question):
    assert question_part(message) == question


@pytest.mark.parametrize("message", [
    "what year did world war 2 end?",  # the question alone: nothing to take apart
    "my wifi keeps dropping, any idea why?",  # no question of the kind a knowledge file answers
    "when i got home, the dog had eaten my shoes",  # a clause opening with "when" in a message that asks nothing...
    "It was good, what they did was fine",  # ...nor one closing it
])
def test_a_message_without_such_a_question_has_none(message):
    assert question_part(message) is None


@pytest.mark.parametrize("message, asked", [
    ("capital of peru?", True), ("totally unrelated but what were the two sides in ww2 called", True),
    ("squab is a baby what", True), ("is it true that owls can turn their heads all the way", True),
    ("tell me something about the moon", True), ("ngl this new boba place by my work is elite", False),
    ("saving the enviornment", False), ("Alice in Wonderland", False),
    ("the tuba is the biggest instrument in which family need it for a crossword", True),
    ("this has been bugging me all day: which band made the album nevermind", True),
    ("my youngest asked where blueberries come from", True),
    ("A device which maps one set of numbers onto another set of numbers.", False),  # "which" after a noun relates
    ("Anyone who needs to work with very large sets of data", False),
])
def test_a_message_asks_when_it_has_a_question_mark_a_question_word_or_opens_like_a_question(message, asked):
    assert asks(message) is asked


def _router(routes: dict[str, tuple[str | None, float]]):
    calls = []

    def route_batch(histories):
        calls.append(histories)
        out = []
        for h in histories:
            skill, p = routes[h[-1]]
            out.append(Decision(skill, p, {"none": 1 - p if skill else p, **({skill: p} if skill else {})}))
        return out

    return route_batch, calls


def test_the_question_alone_wins_only_for_a_knowledge_skill_over_a_route_without_knowledge():
    aside = "how many legs does a spider have, my daughter says 6"
    routes = {aside: ("empathetic", 0.89), "how many legs does a spider have": ("trivia", 0.99),
              "hi there": (None, 0.9)}
    route_batch, calls = _router(routes)
    decisions = route_with_questions(route_batch, [["hi there"], ["hello", "Hi!", aside]], ["trivia", "tech_support"])
    assert [d.skill for d in decisions] == [None, "trivia"] and decisions[1].probability == 0.99
    assert len(calls) == 1 and calls[0][2] == ["hello", "Hi!", "how many legs does a spider have"]  # one batch, same turns before
    routes["how many legs does a spider have"] = ("trivia", 0.85)  # below QUESTION_MIN: the whole message's route stays
    assert route_with_questions(_router(routes)[0], [[aside]], ["trivia"])[0].skill == "empathetic"
    routes[aside] = ("tech_support", 0.6)  # a knowledge skill already: it stays
    routes["how many legs does a spider have"] = ("trivia", 0.99)
    assert route_with_questions(_router(routes)[0], [[aside]], ["trivia", "tech_support"])[0].skill == "tech_support"
    unanswered = route_with_questions(_router(routes)[0], [[aside]], ["trivia", "tech_support"],
                                      lambda skill, history: skill != "tech_support")
    assert unanswered[0].skill == "trivia"  # ...unless its file doesn't answer the message


@pytest.mark.parametrize("message, rest", [
    ("i was just wondering, my girlfriend broke up with me last night", "my girlfriend broke up with me last night"),
    ("not sure if you can help but how many zodiac signs are there", "how many zodiac signs are there"),
    ("Yeah, my family used to live in Singapore", None),  # a one-word reaction is no aside
    ("my printer is broken", None),  # one clause
    ("my sister and i were talking last night, lol", None),  # too long to be an aside, too short a rest
    ("do you have a favorite number? mine's 7, obviously, like everyone else's", None),  # a question is no aside...
    ("can i ask you something? my cat keeps sneezing at night", "my cat keeps sneezing at night"),  # ...but asking to ask
])
def test_the_rest_after_a_short_opening_aside(message, rest):
    assert after_aside(message) == rest


def test_a_message_routed_to_chit_chat_goes_where_its_rest_after_an_aside_goes():
    message = "i was just wondering, my girlfriend broke up with me last night"
    routes = {message: (None, 0.58), "my girlfriend broke up with me last night": ("empathetic", 0.97)}
    route_batch, calls = _router(routes)
    decisions = route_with_questions(route_batch, [[message]], ["trivia"])
    assert decisions[0].skill == "empathetic" and len(calls) == 1  # one batch
    routes["my girlfriend broke up with me last night"] = ("empathetic", 0.85)  # below QUESTION_MIN: chit-chat stays
    assert route_with_questions(_router(routes)[0], [[message]], ["trivia"])[0].skill is None
    routes[message] = ("tech_support", 0.6)  # only a turn routed to chit-chat is taken
    routes["my girlfriend broke up with me last night"] = ("empathetic", 0.97)
    assert route_with_questions(_router(routes)[0], [[message]], ["trivia"])[0].skill == "tech_support"
