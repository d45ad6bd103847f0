"""skills.knowledge: BM25 retrieval that follows its file."""
from __future__ import annotations

import json
import threading

import pytest

from skills.knowledge import (Retriever, answers_a_who_with_a_thing, answers_without_a_number, asks_another_number,
                              asks_another_superlative, counts_another_thing, numbers,
                              read_passages, search_query, tells_a_problem, write_passages)

FACTS = [
    "The capital of France is Paris.",
    "Python is a programming language created by Guido van Rossum.",
    "Bananas are a yellow fruit rich in potassium.",
    "Mount Everest is the highest mountain on Earth.",
]


@pytest.fixture
def facts_file(tmp_path):
    path = tmp_path / "facts.txt"
    path.write_text("\n".join(FACTS[:2]) + "\n\n" + "\n".join(FACTS[2:]) + "\n", encoding="utf-8")
    return path


def test_finds_the_passage_holding_the_fact(facts_file):
    retriever = Retriever.from_file(facts_file)
    assert retriever.refresh() == FACTS  # the blank line is skipped
    top = retriever.search("Who created Python?")
    assert len(top) == 1 and top[0].text == FACTS[1] and top[0].score > 0
    assert retriever.search("what is the highest MOUNTAIN")[0].text == FACTS[3]


def test_k_results_best_first(facts_file):
    results = Retriever.from_file(facts_file).search("capital of France and the yellow fruit", k=3)
    assert {r.text for r in results[:2]} == {FACTS[0], FACTS[2]}
    assert all(a.score >= b.score > 0 for a, b in zip(results, results[1:]))


@pytest.mark.parametrize("query", ["", "   ", "the of and", "xylophone quasar"])
def test_no_match_gives_nothing(facts_file, query):
    assert Retriever.from_file(facts_file).search(query, k=2) == []


def test_appended_passage_is_found_without_rebuilding(facts_file):
    retriever = Retriever.from_file(facts_file)
    assert retriever.search("zebra stripes") == []
    with facts_file.open("a", encoding="utf-8") as f:
        f.write("A zebra has black and white stripes.\n")
    assert retriever.search("zebra stripes")[0].text == "A zebra has black and white stripes."


def test_empty_file_then_appended(tmp_path):
    path = tmp_path / "facts.txt"
    path.write_text("", encoding="utf-8")
    retriever = Retriever.from_file(path)
    assert retriever.search("paris") == []
    path.write_text(FACTS[0] + "\n", encoding="utf-8")
    assert retriever.search("paris")[0].text == FACTS[0]


def test_jsonl_knowledge(tmp_path):
    path = tmp_path / "facts.jsonl"
    path.write_text(json.dumps({"text": FACTS[0]}) + "\n\n" + json.dumps({"passage": FACTS[2], "id": 3}) + "\n", encoding="utf-8")
    assert read_passages(path) == [FACTS[0], FACTS[2]]
    assert Retriever.from_file(path).search("bananas")[0].text == FACTS[2]


@pytest.mark.parametrize("bad", ["{broken", json.dumps({"title": "no text"}), json.dumps(["a list"])])
def test_bad_jsonl_line_names_file_and_line(tmp_path, bad):
    path = tmp_path / "facts.jsonl"
    path.write_text(json.dumps({"text": FACTS[0]}) + "\n" + bad + "\n", encoding="utf-8")
    with pytest.raises(ValueError) as info:
        Retriever.from_file(path)
    assert str(path) in str(info.value) and "line 2" in str(info.value)


def test_non_utf8_knowledge(tmp_path):
    path = tmp_path / "facts.txt"
    path.write_bytes(b"ok\ncaf\xe9\n")
    with pytest.raises(ValueError, match="line 2"):
        Retriever.from_file(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        Retriever.from_file(tmp_path / "nope.txt")


def test_bad_k(facts_file):
    with pytest.raises(ValueError, match="k must be"):
        Retriever.from_file(facts_file).search("paris", k=0)


def test_concurrent_searches_while_the_file_grows(facts_file):
    retriever = Retriever.from_file(facts_file)
    errors = []

    def search():
        try:
            for _ in range(20):
                assert retriever.search("capital of France")[0].text == FACTS[0]
        except Exception as e:  # noqa: BLE001 - any failure in a thread must fail the test
            errors.append(e)

    threads = [threading.Thread(target=search) for _ in range(4)]
    for t in threads:
        t.start()
    for i in range(10):
        with facts_file.open("a", encoding="utf-8") as f:
            f.write(f"Extra fact number {i} about giraffes.\n")
    for t in threads:
        t.join()
    assert errors == []
    assert len(retriever.search("giraffes", k=20)) == 10


def test_building_an_index_logs_nothing_below_warning(facts_file, caplog):
    caplog.set_level("DEBUG")
    Retriever.from_file(facts_file).search("capital of France")
    assert [r.getMessage() for r in caplog.records if r.name.startswith("bm25s")] == []


def test_a_passage_that_does_not_cover_the_question_is_found_but_not_used(tmp_path):
    path = tmp_path / "facts.jsonl"
    path.write_text('{"text": "What is the most populous city in Canada?\\nToronto"}\n'
                    '{"text": "Which artist painted Guernica?\\nPablo Picasso"}\n'
                    '{"text": "Who wrote Hamlet?\\nWilliam Shakespeare"}\n', encoding="utf-8")
    retriever = Retriever.from_file(path)
    asked = retriever.lookup("who wrote hamlet", min_overlap=0.6)
    assert asked.used and asked.text.endswith("William Shakespeare") and asked.coverage == 1.0
    unknown = retriever.lookup("What's the capital of Canada?", min_overlap=0.6)
    assert unknown.text.endswith("Toronto") and not unknown.used and unknown.coverage < 0.6
    assert retriever.lookup("What's the capital of Canada?").used  # min_overlap 0: always the best passage
    assert retriever.lookup("zebra quokka").passage is None


def test_every_trained_abstention_reads_as_one():
    from bot.evaluation.knowledge_check import abstains
    from bot.recipes.skills import ABSTAIN

    assert all(abstains(reply) for reply in ABSTAIN)
    assert not abstains("William Shakespeare") and not abstains("Toronto is the most populous city.")


def test_chat_filler_around_a_question_does_not_hide_its_passage(tmp_path):
    path = tmp_path / "facts.jsonl"
    path.write_text('{"text": "What is the largest planet in our solar system?\\nJupiter"}\n'
                    '{"text": "Who wrote Hamlet?\\nWilliam Shakespeare"}\n', encoding="utf-8")
    retriever = Retriever.from_file(path)
    plain = retriever.lookup("what is the largest planet in our solar system?")
    chatty = retriever.lookup("ok thanks! what is the largest planet in our solar system?")
    assert chatty.coverage == plain.coverage == 1.0 and chatty.text == plain.text


def test_a_message_asking_all_a_passage_asks_is_covered_whatever_it_adds(tmp_path):
    from skills.knowledge import _share, content_words

    path = tmp_path / "facts.jsonl"
    path.write_text('{"text": "What color is a polar bear\'s skin?\\nBlack"}\n'
                    '{"text": "What is the most populous city in Canada?\\nToronto"}\n', encoding="utf-8")
    retriever = Retriever.from_file(path)
    index = retriever._index
    message = "my kid says polar bears arent white underneath, what color is their skin"
    chatty = retriever.lookup(message, 0.6)
    assert chatty.used and chatty.text.endswith("Black")
    # the message's own share is under the gate: what lifts it is the passage's question, asked whole
    assert _share(content_words(message), content_words(chatty.text), index.idf, index.unseen_idf) < 0.6
    assert not retriever.lookup("what's the capital of canada", 0.6).used  # asks what the passage doesn't

    one_line = tmp_path / "facts.txt"
    one_line.write_text("Polar bears have black skin under white fur.\nToronto is the most populous city in Canada.\n")
    retriever = Retriever.from_file(one_line)
    index, question = retriever._index, "what color is a polar bear's skin"
    found = retriever.lookup(question)
    assert found.coverage == _share(content_words(question), content_words(found.text), index.idf, index.unseen_idf)


def test_words_match_by_their_stem(tmp_path):
    from skills.knowledge import content_words

    assert content_words("originally") == content_words("originate") == content_words("originated")
    path = tmp_path / "facts.jsonl"
    path.write_text('{"text": "Where did Heineken beer originate?\\nThe Netherlands"}\n'
                    '{"text": "Which country consumes the most chocolate?\\nSwitzerland"}\n', encoding="utf-8")
    found = Retriever.from_file(path).lookup("heineken beer originally")
    assert found.text.startswith("Where did Heineken") and found.coverage == 1.0


def test_a_passage_answering_with_the_question_s_own_words_is_not_used(tmp_path):
    path = tmp_path / "facts.jsonl"
    path.write_text('{"text": "Canberra is the capital city of which country?\\nAustralia"}\n'
                    '{"text": "Who wrote Hamlet?\\nWilliam Shakespeare"}\n', encoding="utf-8")
    retriever = Retriever.from_file(path)
    inverse = retriever.lookup("what's the capital of australia", min_overlap=0.5)
    assert inverse.text.endswith("Australia") and inverse.coverage > 0.5 and not inverse.used
    assert retriever.lookup("which country has canberra as its capital", min_overlap=0.5).used
    assert retriever.lookup("who wrote hamlet", min_overlap=0.5).used


def test_numbers_are_read_as_digits_from_ordinals_and_words():
    assert numbers("the 37th president") == {"37"} and numbers("ww2 ended in 1945") == {"2", "1945"}
    assert numbers("the very first one, and the third") == {"1", "3"} and numbers("no number here") == set()


@pytest.mark.parametrize("query, question, other", [
    ("who was the very first president of the united states", "Who was the 37th President of the United States?", True),
    ("who won the world cup in 2014", "Who won the 2010 World Cup?", True),
    ("where did the very first starbucks open", "Where did Starbucks open its first store in 1971?", False),
    ("who was president of the united states", "Who was the 37th President of the United States?", False),
    ("who was the 37th us president", "Who was the 37th President of the United States?", False),
])
def test_a_passage_asking_about_another_number_is_told_apart(query, question, other):
    assert asks_another_number(query, f"{question}\nanswer") is other


def test_with_numbers_that_must_agree_a_passage_asking_another_number_is_not_used(tmp_path):
    path = tmp_path / "facts.jsonl"
    path.write_text('{"text": "Who was the 37th President of the United States?\\nRichard Nixon"}\n', encoding="utf-8")
    retriever = Retriever.from_file(path)
    first = retriever.lookup("who was the very first president of the united states", min_overlap=0.5,
                             numbers_must_agree=True)
    assert first.text.endswith("Richard Nixon") and first.coverage > 0.5 and not first.used
    assert retriever.lookup("who was the 37th president of the united states", min_overlap=0.5, numbers_must_agree=True).used
    # off (a FAQ whose numbers name models: a PS4's fix for a PS5), the passage is used
    assert retriever.lookup("who was the very first president of the united states", min_overlap=0.5).used
    assert retriever.lookup_conversation(["who was the very first president of the united states"], 0.5,
                                         numbers_must_agree=True).used is False


@pytest.mark.parametrize("query, passage, without", [
    ("how many planets are there in our solar system?", "What is the largest planet in our solar system?\nJupiter", True),
    ("how many ribs are in the human body", "How many ribs are in a human body?\nTwenty-four", False),
    ("out of the seven dwarfs how many end in y", "How many of the dwarfs end in Y?\nFive: Dopey, Happy", False),
    ("what year did the titanic sink", "When did the Titanic sink?\n1912", False),
    ("which planet is the largest", "What is the largest planet in our solar system?\nJupiter", False),
    ("how many planets are there", "one line passage about planets", False),
])
def test_a_question_asking_for_a_number_is_not_answered_without_one(query, passage, without):
    assert answers_without_a_number(query, passage) is without


@pytest.mark.parametrize("query, question, other", [
    ("how many legs does an octopus have", "How many hearts does an octopus have?", True),
    ("how many hearts does an octopus have", "How many hearts does an octopus have?", False),
    ("out of the seven dwarfs how many have names that end in y", "How many of the dwarfs' names end in Y?", False),
    ("how much caffeine is in a cup of coffee", "How much caffeine does a cup of coffee hold?", False),
    ("what is the largest planet", "How many moons does Jupiter have?", False),
])
def test_a_question_counting_another_thing_is_told_apart(query, question, other):
    assert counts_another_thing(query, f"{question}\nanswer") is other


@pytest.mark.parametrize("query, passage, thing", [
    ("who wrote the harry potter books?", "What is Harry Potter's Patronus?\nA stag", True),
    ("who wrote the harry potter books?", "Where was J.K. Rowling born?\nYate", True),
    ("who painted the mona lisa", "What is the name of the painter of the Mona Lisa?\nLeonardo da Vinci", False),
    ("who sang thriller", "Who sang Thriller?\nmichael jackson.", False),
    ("who are the band with the yellow submarine song", "What band recorded Yellow Submarine?\nThe Beatles", False),
    ("what is harry potter's patronus", "What is Harry Potter's Patronus?\nA stag", False),
    ("who wrote it", "one line passage", False),
])
def test_a_who_question_is_not_answered_with_a_thing(query, passage, thing):
    assert answers_a_who_with_a_thing(query, passage) is thing


@pytest.mark.parametrize("query, question, other", [
    ("which is the biggest ocean in the world?", "What is the smallest ocean in the world?", True),
    ("which is the biggest ocean in the world?", "What is the name of the Earth's largest ocean?", False),  # the same
    ("whats the smallest planet", "Which planet is the hottest in the solar system?", True),
    ("which country produces the most vanilla", "Which country is the largest producer of vanilla?", False),  # not "most"
    ("how long is the great wall", "Which US state has the longest cave system?", False),  # "long" asks no superlative
    ("what's the biggest moon of saturn", "How far is the moon?", False),  # the passage asks none
])
def test_a_question_asking_another_superlative_is_told_apart(query, question, other):
    assert asks_another_superlative(query, f"{question}\nanswer") is other


def test_a_passage_asking_another_superlative_is_passed_over_for_the_next(tmp_path):
    path = tmp_path / "facts.jsonl"
    path.write_text('{"text": "What is the smallest ocean in the world?\\nThe Arctic"}\n'
                    '{"text": "What is the name of the Earth\'s largest ocean?\\nThe Pacific Ocean"}\n', encoding="utf-8")
    retriever = Retriever.from_file(path)
    assert retriever.lookup("which is the biggest ocean in the world", 0.3).text.endswith("The Arctic")  # off
    found = retriever.lookup("which is the biggest ocean in the world", 0.3, numbers_must_agree=True)
    assert found.text.endswith("The Pacific Ocean") and found.used


def test_with_numbers_that_must_agree_an_answer_without_the_number_asked_for_is_not_used(tmp_path):
    path = tmp_path / "facts.jsonl"
    path.write_text('{"text": "What is the largest planet in our solar system?\\nJupiter"}\n', encoding="utf-8")
    retriever = Retriever.from_file(path)
    found = retriever.lookup("how many planets are there in our solar system", 0.5, numbers_must_agree=True)
    assert found.text.endswith("Jupiter") and found.coverage > 0.5 and not found.used
    assert retriever.lookup("how many planets are there in our solar system", 0.5).used  # off: used


def test_a_follow_up_searches_its_conversation_and_never_gets_the_same_answer_twice(tmp_path):
    from skills.knowledge import search_query

    path = tmp_path / "fixes.jsonl"
    path.write_text('{"text": "my wifi keeps dropping\\nRestart the router."}\n'
                    '{"text": "wifi keeps dropping Restart the router. tried that, still drops\\nUpdate the Wi-Fi driver."}\n'
                    '{"text": "printer says offline\\nTurn the printer off and on."}\n', encoding="utf-8")
    retriever = Retriever.from_file(path)
    history = ["my wifi keeps dropping", "Restart the router.", "tried that, still drops"]
    assert search_query(history, 1) == "tried that, still drops"
    assert search_query(history, 3) == "my wifi keeps dropping Restart the router. tried that, still drops tried that, still drops"
    assert retriever.lookup(search_query(history, 3)).text.endswith("Update the Wi-Fi driver.")
    assert retriever.lookup_conversation(history, 0.0, 3).text.endswith("Update the Wi-Fi driver.")
    assert retriever.lookup_conversation(["my wifi keeps dropping", "Update the Wi-Fi driver.", "still"], 0.0, 3,
                                         avoid=["Restart the router."]).passage is None  # both fixes already given
    again = retriever.lookup("my wifi keeps dropping", avoid=["Restart the router."])
    assert again.text.endswith("Update the Wi-Fi driver.")
    assert retriever.lookup("my wifi keeps dropping", avoid=["Restart the router.", "Update the Wi-Fi driver."]).passage is None


def test_a_reply_said_in_other_words_counts_as_said_and_a_covered_message_passes_the_gate(tmp_path):
    path = tmp_path / "fixes.jsonl"
    path.write_text('{"text": "printer offline\\nRestart the printer and your computer, then check the cable."}\n'
                    '{"text": "printer offline still\\nSet the printer as the default and clear the print queue."}\n',
                    encoding="utf-8")
    retriever = Retriever.from_file(path)
    garbled = "Restart the printer and your computer, then make sure the prinway cable."
    found = retriever.lookup("printer offline", avoid=[garbled])
    assert found.text.endswith("clear the print queue.")
    noisy = "I would love to travel the world and visit Europe printer offline"
    assert retriever.lookup(noisy, min_overlap=0.6).used is False
    named = retriever.lookup(noisy, min_overlap=0.6, message="printer offline")  # the message names its problem
    assert named.used and named.coverage == 1.0
    follow_up = retriever.lookup("printer offline Restart the printer. tried that", min_overlap=0.1, message="tried that",
                                 avoid=["Restart the printer and your computer, then check the cable."])
    assert follow_up.used and follow_up.text.endswith("clear the print queue.")  # found with its conversation


def test_synonyms_match_and_outrank_a_passage_sharing_only_the_other_words(tmp_path):
    path = tmp_path / "facts.txt"
    path.write_text("Which planet is the hottest in the solar system? Venus\n"
                    "What is the largest planet in our solar system? Jupiter\n"
                    "who wrote frankenstein Mary Shelley\n")
    retriever = Retriever.from_file(path)
    biggest = retriever.lookup("whats the biggest planet in the solar system", 0.9)
    assert biggest.text.endswith("Jupiter") and biggest.used
    author = retriever.lookup("who was the author of frankenstein", 0.9)
    assert author.text.endswith("Mary Shelley") and author.coverage == 1.0


def test_words_common_in_casual_chat_count_less_than_the_topic(tmp_path):
    from skills.chat_words import topicality

    assert topicality("one") < 0.2 and topicality("alreadi") < 0.5 and topicality("airpod") == 1.0
    path = tmp_path / "faq.txt"
    path.write_text("my left airpod is quiet\nother passage about printers\n")
    retriever = Retriever.from_file(path)
    chatty = retriever.lookup("my left airpod is quiet, someone told me already")
    rare = retriever.lookup("my left airpod is quiet, quokka narwhal axolotl")  # as many words, none of them chat
    assert chatty.text == rare.text == "my left airpod is quiet"
    assert chatty.coverage > 1.5 * rare.coverage


def test_the_chat_words_table_is_what_its_recipe_builds():
    import json

    from bot.recipes.chat_words import document_frequencies
    from skills.chat_words import MIN_DF, TABLE
    from skills.corpora import chitchat_conversations
    from skills.knowledge import content_words

    texts = [turn for conversation in chitchat_conversations() for turn in conversation.turns]
    assert document_frequencies(texts, content_words) == json.loads(TABLE.read_text(encoding="utf-8"))
    small = document_frequencies(["a cat", "a cat and a dog", "dog"], lambda t: set(t.split()), min_df=2)
    assert small == {"messages": 3, "df": {"a": 2, "cat": 2, "dog": 2}}
    assert MIN_DF <= 45  # every word the table leaves out weighs fully: ln(135,574 / 46) > TOPICAL


def test_a_reply_that_says_a_passages_answer_is_recognised(tmp_path):
    path = tmp_path / "faq.jsonl"
    path.write_text('{"text": "printer says offline\\nTurn the printer off and on, then check its Wi-Fi."}\n', encoding="utf-8")
    retriever = Retriever.from_file(path)
    assert retriever.says_an_answer("Turn the printer off and on, then check its Wi-Fi.")
    assert retriever.says_an_answer("ok, so turn the printer off and on again and check the wi-fi")  # in other words
    assert not retriever.says_an_answer("Paella")
    assert not retriever.says_an_answer("printer says offline")  # the question, not the answer


def test_a_fix_that_worked_is_not_offered_to_someone_whose_problem_goes_on(tmp_path):
    from skills.knowledge import reports_another_outcome

    worked = "my connection drops all the time Try restarting the router. ok that fixed it, thank you so much!\nGreat news!"
    next_step = "wifi keeps cutting out Try restarting the router. did that, still drops\nThen forget the network and rejoin it."
    before = "my connection drops all the time"  # the user's message before the bot's fix
    assert reports_another_outcome("i tried that already, still drops", worked, before)
    assert not reports_another_outcome("ok that worked, thanks!", worked, before)  # the same outcome
    assert not reports_another_outcome("thanks, but it still drops", next_step, before)  # a passage of a fix that failed
    assert not reports_another_outcome("still drops", "wifi drops\nRestart the router.", before)  # a one-turn exchange
    assert reports_another_outcome("my connection drops all the time", worked, before=None)  # a first message
    assert reports_another_outcome("ok it works", worked, before="hi there!")  # no talk of the problem before
    path = tmp_path / "faq.jsonl"
    path.write_text("".join(json.dumps({"text": p}) + "\n" for p in (worked, next_step)), encoding="utf-8")
    found = Retriever.from_file(path).lookup("my connection drops all the time. i tried that already, still drops")
    assert found.text == next_step


def test_a_new_problem_after_another_is_looked_up_by_the_message_alone(tmp_path):
    path = tmp_path / "fixes.jsonl"
    path.write_text('{"text": "printer says offline\\nTurn the printer off and on."}\n'
                    '{"text": "printer offline Turn the printer off and on. still offline\\nRe-add the printer in settings."}\n'
                    '{"text": "printer says offline after the router changed\\nConnect the printer to the new Wi-Fi."}\n'
                    '{"text": "printer printing streaks across the page\\nClean the print head."}\n'
                    '{"text": "wifi keeps dropping\\nRestart the router."}\n'
                    '{"text": "laptop running slow\\nClose programs you are not using and restart."}\n', encoding="utf-8")
    retriever = Retriever.from_file(path)
    history = ["my printer says offline", "Turn the printer off and on, then check the printer says online.", "my laptop is slow"]
    together = retriever.lookup(search_query(history, 3), 0.5, message=history[-1])
    assert "printer" in together.text and not together.used  # the conversation's words find the earlier problem's
    found = retriever.lookup_conversation(history, 0.5, 3)
    assert found.used and found.text.endswith("Close programs you are not using and restart.")
    follow_up = retriever.lookup_conversation(["printer says offline", "Turn the printer off and on.", "still offline"], 0.3, 3)
    assert follow_up.used and follow_up.text.endswith("Re-add the printer in settings.")  # a follow-up keeps its conversation
    details = retriever.lookup_conversation([*history[:2], "its slow to print if that helps"], 0.5, 3)
    assert "laptop" not in (details.text or "")  # details of the problem before are not a problem of their own
    assert tells_a_problem("also my laptop is running really slow lately")
    assert not tells_a_problem("how do i find that setting?") and not tells_a_problem("tried restarting my laptop again")


def test_a_passage_bm25_ranks_lower_is_used_when_it_covers_the_question_and_the_first_does_not(tmp_path):
    questions = ["How many eyes does a bee have?\nFive", "How many hearts does an octopus have?\nThree",
                 "How many children does Oprah Winfrey have?\nZero", "How many ribs are in a human body?\nTwenty-four",
                 *(f"Who painted picture number {n}?\nPainter {n}" for n in range(20))]
    retriever = Retriever.from_file(write_passages(questions, tmp_path / "facts.jsonl"))
    query = "how many ribs does a person have?"
    assert retriever.search(query, k=1)[0].text.startswith("How many eyes")  # "does" and "have" outweigh "ribs"
    found = retriever.lookup(query, 0.5)
    assert found.text.endswith("Twenty-four") and found.used
    assert retriever.lookup("how many eyes does a bee have", 0.5).text.endswith("Five")  # the best of both stays first
