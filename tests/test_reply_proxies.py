"""The good-reply proxies: what they count, and what they must not."""
from __future__ import annotations

from bot.evaluation.reply_proxies import empathetic_ok, proxy_report, tech_support_ok

QUESTION_BACK = "Sorry, I don't know that problem yet. Which device is it, and what do you see on the screen?"


SYMPATHY = "I'm so sorry about your dog. How are you holding up?"
JOY = "Congratulations, that's great news! You must be so proud."


def test_empathy_is_sympathy_never_a_machine_and_never_an_i_dont_know():
    sad = ["my dog died yesterday"]
    assert empathetic_ok(sad, "Oh no, that sounds really hard. You're not alone in this.", SYMPATHY)
    assert not empathetic_ok(sad, "I'm a bot, I cannot feel sad, sorry.", SYMPATHY)
    assert not empathetic_ok(sad, "What is your favourite food?", SYMPATHY)
    assert not empathetic_ok(sad, QUESTION_BACK, SYMPATHY)  # "Sorry" for not knowing is not sympathy


def test_good_news_needs_shared_joy_and_bad_news_never_gets_it():
    good = ["GOT THE JOB!!!"]
    assert empathetic_ok(good, "That's wonderful news! How are you celebrating?", JOY)
    assert empathetic_ok(good, "That sounds like a perfect day. Tell me more about it!", JOY)
    assert not empathetic_ok(good, "That sounds really stressful. You're not alone in this.", JOY)
    assert not empathetic_ok(good, "Congratulations! I'm so sorry to hear that.", JOY)  # both: not meeting the news
    assert not empathetic_ok(["my dog died"], "Congratulations, that's great news!", SYMPATHY)


def test_tech_support_names_the_topic_or_gives_a_step_and_never_says_it_doesnt_know():
    problem = ["my screen flickers when i open chrome"]
    fix = "Turn off hardware acceleration in Chrome's settings."
    assert tech_support_ok(problem, "Update the graphics driver, then restart.", fix)
    assert tech_support_ok(problem, "A flickering screen in Chrome is often hardware acceleration.", fix)
    assert not tech_support_ok(problem, "I like pizza.", fix)
    assert not tech_support_ok(problem, QUESTION_BACK, fix)  # names "screen", but gives nothing


def test_the_report_counts_each_routing_and_keeps_samples():
    contexts = [["my dog died"], ["i failed my exam"]]
    report = proxy_report("empathetic", contexts, {"oracle": ["I'm so sorry.", QUESTION_BACK], "auto": ["Hello!", "Oh no."]},
                          [SYMPATHY, SYMPATHY])
    assert report["rate"] == {"oracle": 0.5, "auto": 0.5} and report["n"] == 2
    assert report["samples"][1]["oracle_ok"] is False and report["samples"][1]["auto_ok"] is True
