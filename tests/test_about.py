import pytest

from bot.about import about_reply, jokes, unreadable

SKILLS = {"tech_support": "Troubleshoots printers.", "trivia": "Answers facts."}


@pytest.mark.parametrize("message", ["what can you actually do?", "what can u do", "help", "How can you help me?",
                                     "so what are you good at", "what are your skills",
                                     "what kinds of things can you help me with?"])
def test_a_question_about_what_the_bot_can_do_lists_every_skill(message):
    reply = about_reply(message, SKILLS)
    assert "- tech support: Troubleshoots printers.\n- trivia: Answers facts." in reply


@pytest.mark.parametrize("message", ["are you a real person or a bot lol", "who are you?", "what are you?",
                                     "whats your name", "is this a bot?", "r u human", "who made you?",
                                     "cool. so what exactly are you?", "how old are you anyway", "What is your age",
                                     "are you a he or a she or neither", "what's your gender", "what should i call you",
                                     "so what are you exactly, like a person typing or a program",
                                     "are you like chatgpt or something different",
                                     "do you actually have feelings or is that a dumb question", "can you feel anything",
                                     "whos smarter, you or siri? be honest", "are you alive?"])
def test_a_question_about_who_the_bot_is_gets_a_true_answer(message):
    assert about_reply(message, SKILLS).startswith("I'm Adapter-Bot, a chatbot, not a person")


@pytest.mark.parametrize("message", ["tell me a joke, i need a laugh", "know any good jokes?", "make me laugh",
                                     "got a cat joke for me?", "know any knock-knock jokes",
                                     "give me your best knock knock joke and ill pretend to laugh", "joke pls"])
def test_asked_for_a_joke_the_bot_tells_one_of_chatterbots(message):
    assert about_reply(message, SKILLS) in jokes()


def test_the_jokes_are_chatterbots_tidied_without_the_ones_not_to_tell():
    told = jokes()
    assert len(told) >= 20 and "What do you get when you cross a cheetah and a hamburger? Fast food." in told
    assert all("  " not in joke and joke[0].isupper() for joke in told)
    assert not any("die peacefully" in joke or "comedian" in joke for joke in told)
    assert len({about_reply(m, SKILLS) for m in ("tell me a joke", "joke pls", "make me laugh", "know any jokes?")}) > 1


@pytest.mark.parametrize("message", ["what do you do for fun?", "that joke was bad", "is this a joke?", "i heard a joke at work", "what do you know about printers", "are you ok?",
                                     "what are you doing tonight", "my printer won't help me", "what are your hobbies",
                                     "how old is the eiffel tower", "what exactly are you doing",
                                     "i have feelings for my coworker", "do you feel like pizza tonight"])
def test_other_messages_get_no_written_answer(message):
    assert about_reply(message, SKILLS) is None


def test_with_no_skill_installed_the_bot_says_it_can_only_chat():
    assert "No skills are installed yet" in about_reply("what can you do", {})
    assert "(" not in about_reply("who are you", {})


@pytest.mark.parametrize("message", ["😂😂🔥👍", "???", " :) "])
def test_a_message_without_words_gets_asked_for_words(message):
    assert about_reply(message, SKILLS).startswith("I can only read words for now")


@pytest.mark.parametrize("message", ["¿Por qué mi ordenador no enciende? Ayuda por favor.", "Bonjour ! Comment ça va aujourd'hui ?",
                                     "Mein Drucker druckt nicht, was kann ich tun?", "Привет, как дела?", "こんにちは、元気ですか",
                                     "¿hablas español?", "parlez-vous anglais?", "Mi ordenador no se enciende",
                                     "mi celular no funciona", "Ich habe heute meinen Job verloren."])
def test_a_message_in_another_language_is_asked_for_in_english(message):
    assert unreadable(message) and about_reply(message, SKILLS).startswith("Sorry, I only understand English for now")


@pytest.mark.parametrize("message", ["hola", "merci beaucoup", "I love café au lait", "my name is José and i need help",
                                     "favs musical obviously phantom or les mis", "que sera sera, whatever will be",
                                     "do you speak español?", "my friend is learning italiano", "yo yo what's up"])
def test_english_with_a_foreign_word_or_two_is_read_as_english(message):
    assert not unreadable(message)
