"""Which chit-chat reply fits a greeting, thanks, a farewell, or none of them (bot.social)."""
import pytest

from bot.social import (ASKED_AFTER_REPLIES, CHOICE_REPLIES, GREETING_REPLIES, choice_reply, closing_reply, greeting_reply,
                        good_news, laughs, misfit, only_closing, only_greets, says_goodbye, says_hello, well_being_reply)


@pytest.mark.parametrize("text", ["Well I have to go to class now. Have a great day!", "thanks, talk later", "goodnight!",
                                  "ok im gonna go lie down, thanks for listening", "later!", "ok thanks, night", "See ya!",
                                  "alright, appreciate you letting me ramble. later", "alright bedtime for me, night 🌙",
                                  "ok im gonna go. appreciate it fr", "heading out now!", "logging off, bye all",
                                  "ok theyre here. thanks babe, byeee 💕", "aight thanks bro, gn",
                                  "okie dokie, going to walk the dog before it rains. later gator 🐊",
                                  "alrighty thats me, off to grab the kids from school. cheerio 👋",
                                  "ok my tea's gone cold, that's my cue. ta-ra for now 👋", "thank you brother. allah hafiz"])
def test_a_farewell_is_recognised(text):
    assert says_goodbye(text)


@pytest.mark.parametrize("text", ["Hello!", "It was nice weather", "I'm going to the gym", "what about you?",
                                  "cheerios are my favourite cereal", "i said tara to her at the door",
                                  "my cat died last night", "I will do it later, first lunch", "it happened last night.",
                                  "im gonna go to the store and then call my mom", "bedtime is a nightmare with my kids",
                                  "we are heading out to the lake on sunday", "the gnome in my garden is cute"])
def test_a_message_that_stays_is_not_a_farewell(text):
    assert not says_goodbye(text)


def test_a_greeting_opens_a_message():
    assert all(says_hello(t) for t in ("hi there", "heyyy", "Good morning! hows your day", "oh hey, you again"))
    assert not any(says_hello(t) for t in ("this is high", "they said hello to me", "what's up with my wifi"))


@pytest.mark.parametrize("message, replies, misfits", [
    ("ok gotta go, talk later!", ["See ya!", "No problem!", "You too!", "Hello!", "Hey, how are you?"], [0, 0, 1, 2, 2]),
    ("thanks a ton, that was really helpful", ["You're welcome!", "Glad I could help.", "Do you like dogs?",
                                               "I have to go, bye", "Hello!"], [0, 0, 1, 2, 2]),
    ("heyyy", ["Hey, whats up?", "Hello! How are you doing this fine evening?", "Do you like dogs?", "Bye!"], [0, 0, 1, 2]),
    ("good morning! hows your day going", ["Good! How about you?", "Hi!", "Bye!"], [0, 0, 2]),
    ("i went hiking today", ["Nice! Where?", "Hey that sounds fun", "Hello!", "I have to go, bye"], [0, 0, 1, 1]),
    ("hey, i went hiking today", ["Hello! Where to?", "Hello!", "Nice to meet you!"], [0, 0, 0]),
    ("ok bye", ["", "  ", "Hello!"], [3, 3, 2]),  # an empty reply loses even to a greeting
])
def test_a_reply_fits_the_message_it_answers(message, replies, misfits):
    assert [misfit(message, r) for r in replies] == misfits


@pytest.mark.parametrize("message", ["thanks so much, that was really helpful!", "ok gotta go, bye! ttyl", "ty!",
                                     "ok thanks, talk later", "night!", "good night, thats it for me"])
def test_thanks_and_farewells_get_a_written_reply_that_fits(message):
    assert misfit(message, closing_reply(message)) == 0


@pytest.mark.parametrize("message", ["my wifi keeps dropping", "I went hiking today", "heyyy", "nice to meet you"])
def test_a_message_that_neither_thanks_nor_takes_leave_has_no_written_reply(message):
    assert closing_reply(message) is None


def test_thanks_for_listening_is_thanked_without_a_goodbye():
    assert closing_reply("thanks for listening") == "You're welcome!"
    assert closing_reply("thanks for listening. bye") == "You're welcome! Bye, talk to you soon."


@pytest.mark.parametrize("message", ["appreciate it, take care", "ok thanks, ttyl", "thanks for listening, night",
                                     "anyway thanks for chatting man, later", "bye for now", "goodnight!",
                                     "thanks for being patient with me", "alright im off to bed, catch you later",
                                     "ok thats enough for tonight, cheers mate", "that's all for now", "thanks, that helps",
                                     "thanks! that worked", "ok that worked, thanks!", "ok thats it for me, cheers",
                                     "ok thats me done for the day, take it easy!", "alright, take it easy",
                                     "ok im gonna go. appreciate it fr", "thank you very much, you help us a lot",
                                     "thanks for letting me vent", "gn"])
def test_a_message_that_only_thanks_or_takes_leave_is_a_closing(message):
    assert only_closing(message) and closing_reply(message)


@pytest.mark.parametrize("message", ["thanks, but my printer still says offline", "ok thanks, what about my printer?",
                                     "thanks, its not fixed", "i tried it, thanks, still broken", "hi there", "my cat died",
                                     "ok thats enough, my wifi is still down", "take it easy on him",
                                     "im done for the day with this printer, it still wont print"])
def test_a_message_with_more_to_answer_is_not_only_a_closing(message):
    assert not only_closing(message)


def test_thanks_for_a_fix_that_worked_is_answered_gladly():
    # after a printer fix, "ok that worked, thanks!" went to tech support, which offered another printer's fix
    assert closing_reply("ok that worked, thanks!") == "Glad it worked! You're welcome."
    assert closing_reply("thanks, its not fixed") == "You're welcome!"


@pytest.mark.parametrize("message", ["howdy stranger", "hey hey", "hi there friend", "hello again", "yo bot"])
def test_a_greeting_that_calls_the_other_is_a_bare_greeting(message):
    # "howdy stranger" was read as anything else, and got "I'll check it out" rather than a greeting back
    assert misfit(message, "hey! how are you?") == 0 and misfit(message, "I'll check it out") == 1


@pytest.mark.parametrize("message, options", [
    ("tea or coffee?", {"tea", "coffee"}),
    ("cats or dogs? you have to pick one, no fence sitting", {"cats", "dogs"}),
    ("would you rather fight one horse sized duck or 100 duck sized horses", {"one horse sized duck", "100 duck sized horses"}),
    ("do you prefer the beach or the mountains", {"the beach", "the mountains"}),
    ("pancakes or waffles. choose wisely", {"pancakes", "waffles"}),
    ("beach or mountains for a vacation, which would you pick", {"beach", "mountains"}),
    ("do you like tea or coffee more than water?", {"tea", "coffee"}),
    ("do you like pizza or pasta better", {"pizza", "pasta"}),  # a new user's (session 21): the backbone had answered
])
def test_an_either_or_question_gets_one_of_its_options_the_same_every_time(message, options):
    reply = choice_reply(message)
    assert reply == choice_reply(message)
    assert any(reply == template.format(option) for template in CHOICE_REPLIES for option in options)


@pytest.mark.parametrize("message", [
    "whats the longest river in the world, nile or amazon?",  # a fact, not a taste
    "i might go to the beach or the lake tomorrow",  # no question, nothing to pick
    "are you a he or a she or neither",  # two "or"s
    "is a hot dog a sandwich or not?",  # "not" is no option
    "should i restart or reset my router?",  # "should i restart" would be an option
    "my wifi keeps dropping, any idea why?",
])
def test_a_message_that_asks_no_choice_of_taste_gets_no_pick(message):
    assert choice_reply(message) is None


@pytest.mark.parametrize("message, replies", [
    ("yo yo yo whats good 🤙", ASKED_AFTER_REPLIES), ("hiya 👋", GREETING_REPLIES), ("hello?", GREETING_REPLIES),
    ("hey, how are you doing this fine evening?", ASKED_AFTER_REPLIES), ("hi how r u", ASKED_AFTER_REPLIES),
    ("heyyy 💅 hows ur night going", ASKED_AFTER_REPLIES), ("morning 👋 how are things with you", ASKED_AFTER_REPLIES),
    ("gm", GREETING_REPLIES), ("evening!", GREETING_REPLIES), ("hola! good morning 🌞", GREETING_REPLIES),
    ("buenas! 👋 how's it going over there", ASKED_AFTER_REPLIES), ("wassup bot", ASKED_AFTER_REPLIES),
    ("sup", ASKED_AFTER_REPLIES), ("g'day mate", GREETING_REPLIES), ("hey, you around?", GREETING_REPLIES),
    ("hello? anyone there?", GREETING_REPLIES), ("you there?", GREETING_REPLIES),
    ("assalam o alaikum, hello", GREETING_REPLIES), ("kia ora!", GREETING_REPLIES), ("selamat pagi", GREETING_REPLIES),
])
def test_a_message_that_only_greets_gets_a_written_greeting_that_fits(message, replies):
    assert only_greets(message)
    reply = greeting_reply(message)
    assert reply in replies and reply == greeting_reply(message) and misfit(message, reply) == 0


@pytest.mark.parametrize("message", ["hey how are you, my day was awful", "hi! my wifi is down", "hey there, you got a minute?",
                                     "good afternoon from a very rainy manchester", "what's up with my printer",
                                     "hola, mi ordenador no funciona", "sup with the wifi, it keeps dropping",
                                     "hey you around tomorrow for a chat about my printer"])
def test_a_greeting_with_more_to_it_is_not_only_a_greeting(message):
    assert not only_greets(message) and greeting_reply(message) is None


@pytest.mark.parametrize("message, laughed", [
    ("first paycheck just hit and i bought myself a fancy croissant to celebrate lol", True),
    ("today i pass my B2 english exam!! 🎉🎉", True), ("my grandma sends me voice notes of her humming haha", True),
    ("lol ok. not gonna lie im kinda lonely lately", False),  # an opening "lol" is a way to begin
    ("my dog died this morning", False), ("lollipops are my favourite", False),
    ("my sister had her baby last night, im an uncle now :)", True), ("my grandma passed away ❤️", False),
])
def test_a_laugh_or_a_celebration_after_the_first_word_is_read(message, laughed):
    assert laughs(message) is laughed


@pytest.mark.parametrize("message, good", [
    ("finally beat my dad at chess after 20 years of trying", True),
    ("My grandson phoned me today just to say he loves me. No reason at all. Made my whole week.", True),
    ("got engaged last night!!! i keep staring at my hand", True),
    ("finally got a diagnosis after 3 years of doctors saying i was just tired: lupus", False),  # something bad too
    ("its been 6 months since my husband passed and today i finally sold his truck", False),
    ("hosted my in laws for the first time and burnt the roast", False),
    ("my dog died this morning", False), ("what a day", False),  # neither
])
def test_good_news_is_read_only_without_anything_bad(message, good):
    assert good_news(message) is good


@pytest.mark.parametrize("message, reply", [
    ("good thanks, you?", "I'm doing well too, thanks! What's on your mind today?"),  # had got "You're welcome!"
    ("im fine hbu", "I'm doing well too, thanks! What's on your mind today?"),
    ("not bad, and you?", "I'm doing well too, thanks! What's on your mind today?"),
    ("fine thanks", "Glad to hear it! What's on your mind today?"),
    ("good", None), ("ok", None),  # nothing says it answers "how are you"
    ("good thanks. my printer is broken though", None), ("not great tbh, you?", None),
])
def test_an_answer_to_how_are_you_gets_a_written_reply(message, reply):
    assert well_being_reply(message) == reply


@pytest.mark.parametrize("message", ["thanks, you've been helpful", "thank you so much, you have been such a big help"])
def test_thanks_for_the_help_is_only_a_closing(message):
    assert only_closing(message) and closing_reply(message) == "You're welcome!"

