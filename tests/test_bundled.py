"""Integration: the bundled backbone, skills and manager, offline, as a new user gets them."""
from __future__ import annotations

import pytest

from bot import AdapterBot
from bot.backbone import BUNDLED_BACKBONE
from skills import BUNDLED_DIR


@pytest.fixture(scope="module")
def bundled():
    return AdapterBot.from_pretrained()


def test_bundled_artifacts_are_small_safetensors():
    assert (BUNDLED_BACKBONE / "model.safetensors").stat().st_size <= 30_000_000
    for name in ("empathetic", "trivia", "tech_support"):
        assert (BUNDLED_DIR / name / "adapter_model.safetensors").stat().st_size <= 2_000_000
    assert not list(BUNDLED_DIR.parent.rglob("*.bin")) and not list(BUNDLED_DIR.parent.rglob("*.pt"))


def test_offline_default_loads_every_bundled_skill_and_replies(bundled):
    assert bundled.skills == ["empathetic", "tech_support", "trivia"]
    assert bundled.manager is not None and bundled.skipped == {}
    r = bundled.respond(["what did you do this weekend?"])
    assert r.text.strip() and r.confidence is not None
    greeted = bundled.respond(["Hello! How are you?"])  # only a greeting: answered in writing, not routed
    assert greeted.text.strip() and greeted.confidence is None and greeted.skill is None


# Clear cases with a margin (a score near 0.5 may flip between CPUs' rounding). Known misroutes
# are in the README and the eval report. "my wifi keeps dropping every few minutes" went to
# empathetic before the manager read the newest message's words (hashed n-grams, issue 14).
CLEAR = [
    ("My printer is not printing.", "tech_support"),
    ("my wifi keeps dropping every few minutes", "tech_support"),
    ("my laptop won't connect to the wifi", "tech_support"),
    ("what is the capital of australia?", "trivia"),
    ("I failed my exam today and I feel awful", "empathetic"),
    ("hey whats up, what did you do this weekend?", None),
]


@pytest.mark.parametrize("message, skill", CLEAR)
def test_clear_examples_route_to_their_skill(bundled, message, skill):
    assert bundled.respond([message], max_new_tokens=4).skill == skill


@pytest.mark.parametrize("message, skill", CLEAR)
def test_a_message_routes_the_same_after_a_greeting(bundled, message, skill):
    assert bundled.respond(["Hi!", "Hello! How are you?", message], max_new_tokens=4).skill == skill


def test_good_news_that_laughs_or_celebrates_gets_no_sympathy(bundled):
    # "today i pass my B2 english exam!! ... 🎉🎉" went to the empathetic skill: "Oh no, that sounds really hard"
    assert bundled.specs["empathetic"].sympathy
    for message in ("today i pass my B2 english exam!! my teacher say now i am ready for university 🎉🎉",
                    "first paycheck from the new job just hit and i bought a fancy croissant to celebrate lol",
                    "finally beat my dad at chess after 20 years of trying. he demanded a rematch"):
        assert bundled.respond([message], max_new_tokens=4).skill != "empathetic"
    assert bundled.respond(["lol ok. honestly im so lonely since everyone moved away"], max_new_tokens=4).skill == \
        "empathetic"  # an opening "lol" is no laugh


def test_a_follow_up_turn_stays_on_the_skill_of_its_exchange(bundled):
    history = ["my laptop won't connect to the wifi",
               "Try restarting the router: unplug it for 30 seconds, then plug it back in.",
               "i tried that already, still nothing"]
    assert bundled.respond(history, max_new_tokens=4).skill == "tech_support"


def test_a_question_whose_answer_is_not_in_the_file_gets_an_abstention(bundled):
    from bot.evaluation.knowledge_check import abstains

    r = bundled.respond(["What's the capital of Canada?"], skill="trivia")
    assert "Toronto" in r.knowledge and not r.knowledge_used  # retrieved, shown, not used
    assert abstains(r.text) and "Toronto" not in r.text
    first = bundled.respond(["who was the very first president of the united states"], skill="trivia")
    assert "Nixon" in first.knowledge and not first.knowledge_used  # the 37th's passage covers every other word
    assert abstains(first.text) and "Nixon" not in first.text


def test_trivia_retrieves_the_passage_that_holds_the_fact(bundled):
    r = bundled.respond(["Which country was once called Abyssinia?"], skill="trivia")
    assert r.knowledge and "Ethiopia" in r.knowledge and r.text.strip()



def test_trivia_answers_from_its_passage_where_the_bare_backbone_cannot(bundled):
    from bot.evaluation.metrics import unigram_f1
    from skills.data import read_source

    examples = read_source(str(BUNDLED_DIR / "trivia" / "test.jsonl"), BUNDLED_DIR).examples[:20]
    histories = [e.context for e in examples]
    grounded = bundled.respond_batch(histories, ["trivia"] * len(examples))
    bare = bundled.respond_batch(histories, [None] * len(examples), max_new_tokens=16)
    f1 = sum(unigram_f1(text, e.response) for text, e in zip(grounded, examples)) / len(examples)
    f1_bare = sum(unigram_f1(text, e.response) for text, e in zip(bare, examples)) / len(examples)
    assert f1 > 0.3 and f1 > 5 * f1_bare, (f1, f1_bare)


def test_tech_support_copies_a_whole_fix_and_a_follow_up_gets_another(bundled):
    from skills.knowledge import answer_of, read_passages

    fixes = {answer_of(p) for p in read_passages(BUNDLED_DIR / "tech_support" / "knowledge.jsonl")}
    first = bundled.respond(["my printer won't print anything"], skill="tech_support")
    assert first.knowledge_used and first.text == answer_of(first.knowledge) and first.text in fixes
    second = bundled.respond(["my printer won't print anything", first.text, "it says offline"], skill="tech_support")
    assert second.knowledge_used and second.text in fixes and second.text != first.text
    assert "printer" in second.knowledge.lower() or "offline" in second.knowledge.lower()


def test_tech_support_asks_back_when_no_fix_matches(bundled):
    r = bundled.respond(["my smart fridge won't make ice"], skill="tech_support")
    assert not r.knowledge_used and "?" in r.text and "Unplug" not in r.text


def test_tech_support_gives_a_topics_first_steps_for_a_problem_its_faq_lacks(bundled):
    r = bundled.respond(["my snapchat streaks disappeared overnight"], skill="tech_support")
    assert not r.knowledge_used and "app" in r.text and r.text.startswith("I don't know that exact problem yet")


def test_auto_mode_never_blends_a_skill_that_copies_from_its_knowledge(bundled):
    message = "outlook won't send any emails, they just sit in the outbox"
    forced = bundled.respond([message], skill="tech_support")
    assert bundled.auto_blend("tech_support", {"none": 0.0, "tech_support": 0.5, "empathetic": 0.5}) is None
    assert bundled.auto_blend("empathetic", {"none": 0.0, "tech_support": 0.5, "empathetic": 0.5}) is not None
    auto = bundled.respond([message])
    if auto.skill == "tech_support":
        assert auto.blend is None and auto.text == forced.text
