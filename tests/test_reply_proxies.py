"""The good-reply proxies: what they count, and what they must not."""
from __future__ import annotations

from bot.evaluation.reply_proxies import empathetic_ok, proxy_report, tech_support_ok

QUESTION_BACK = "Sorry, I don't know that problem yet. Which device is it, and what do you see on the screen?"


def test_empathy_is_sympathy_never_a_machine_and_never_an_i_dont_know():
    sad = ["my dog died yesterday"]
    assert empathetic_ok(sad, "Oh no, that sounds really hard. You're not alone in this.")
    assert not empathetic_ok(sad, "I'm a bot, I cannot feel sad, sorry.")
    assert not empathetic_ok(sad, "What is your favourite food?")
    assert not empathetic_ok(sad, QUESTION_BACK)  # "Sorry" for not knowing is not sympathy


def test_empathy_never_cheers():
    # an adapter that also learned good news answered "my dog died this morning" so (session 17)
    assert not empathetic_ok(["my dog died this morning"], "That's wonderful news! You must be so proud.")
    assert not empathetic_ok(["i failed my exam"], "Congratulations! I'm so sorry to hear that.")


def test_tech_support_names_the_topic_or_gives_a_step_and_never_says_it_doesnt_know():
    problem = ["my screen flickers when i open chrome"]
    assert tech_support_ok(problem, "Update the graphics driver, then restart.")
    assert tech_support_ok(problem, "A flickering screen in Chrome is often hardware acceleration.")
    assert not tech_support_ok(problem, "I like pizza.")
    assert not tech_support_ok(problem, QUESTION_BACK)  # names "screen", but gives nothing


def test_the_report_counts_each_routing_and_keeps_samples():
    contexts = [["my dog died"], ["i failed my exam"]]
    report = proxy_report("empathetic", contexts, {"oracle": ["I'm so sorry.", QUESTION_BACK], "auto": ["Hello!", "Oh no."]})
    assert report["rate"] == {"oracle": 0.5, "auto": 0.5} and report["n"] == 2
    assert report["samples"][1]["oracle_ok"] is False and report["samples"][1]["auto_ok"] is True
