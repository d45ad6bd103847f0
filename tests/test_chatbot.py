"""One turn end to end on the tiny backbone: routing, forcing, history limits, streaming."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import pytest
import torch

from bot.about import jokes
from bot.chatbot import MANAGER_DIR, AdapterBot, Reply
from bot.dialogue import DialogueError, cut_loop, drifts, drop_unsaid, end_at_sentence, stay_on_topic


@contextmanager
def forwards(bot) -> Iterator[list[tuple[torch.Tensor, torch.Tensor]]]:
    """Record ``(input_ids, last position's logits)`` of every backbone forward; the first is generate()'s prefill."""
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def hook(module, args, kwargs, output) -> None:
        calls.append((kwargs["input_ids"].detach().clone(), output.logits[:, -1].detach().clone()))

    handle = bot.model.backbone.register_forward_hook(hook, with_kwargs=True)
    try:
        yield calls
    finally:
        handle.remove()


def last_logits(bot, ids: torch.Tensor, skill: str | None) -> torch.Tensor:
    with torch.no_grad(), bot.model.route(skill):
        return bot.model(input_ids=ids).logits[:, -1]


def turns_of(bot, ids: list[int]) -> list[str]:
    """The context's turns as text (it is ``turn EOS turn EOS ...``)."""
    eos, turns, current = bot.tokenizer.eos_token_id, [], []
    for t in ids:
        if t == eos:
            turns.append(bot.tokenizer.decode(current))
            current = []
        else:
            current.append(t)
    assert not current, "the context does not end with EOS"
    return turns


@pytest.mark.parametrize("message, skill", [("my printer will not print", "alpha"), ("i feel lonely tonight", "beta")])
def test_auto_routes_to_the_messages_skill_and_answers_with_it(tiny_bot, message, skill):
    r = tiny_bot.respond([message], skill="auto")
    assert r.skill == skill
    assert set(r.scores) == {"none", "alpha", "beta"}
    assert abs(sum(r.scores.values()) - 1) < 1e-4
    assert r.confidence == pytest.approx(r.scores[skill]) and r.confidence == max(r.scores.values())
    assert r.text == tiny_bot.respond([message], skill=skill).text  # the routed skill's own reply


@pytest.mark.parametrize("skill", ["alpha", "beta", None])
def test_a_forced_route_generates_through_that_adapter_and_scores_nothing(tiny_bot, skill):
    with forwards(tiny_bot) as calls:
        r = tiny_bot.respond(["the weather was nice today"], skill=skill, max_new_tokens=3)
    assert r.skill == skill and r.confidence is None and r.scores == {}
    ids, seen = calls[0]
    torch.testing.assert_close(seen, last_logits(tiny_bot, ids, skill), atol=1e-5, rtol=1e-5)
    for other in {"alpha", "beta", None} - {skill}:  # the adapters really differ from each other and from bare
        assert (seen - last_logits(tiny_bot, ids, other)).abs().max() > 1e-3, f"{skill} answered like {other}"


def test_unknown_skill_names_installed_ones(tiny_bot):
    with pytest.raises(ValueError, match="alpha, beta"):
        tiny_bot.respond(["hi"], skill="gamma")


@pytest.mark.parametrize("history", [[""], ["   \n\t"], []])
def test_empty_message_is_a_clear_error(tiny_bot, history):
    with pytest.raises(DialogueError, match="empty"):
        tiny_bot.respond(history)


def test_the_oldest_turns_are_cut_to_fit_the_window(tiny_bot):
    history = [f"turn {i} hello how are you today" for i in range(30)]
    max_new = 8
    with forwards(tiny_bot) as calls:
        tiny_bot.respond(history, skill="alpha", max_new_tokens=max_new)
    ids = calls[0][0][0].tolist()
    kept = turns_of(tiny_bot, ids)
    assert 2 <= len(kept) < len(history)
    assert kept[1:] == history[-len(kept) + 1:]  # the newest turns whole, in order
    oldest = history[-len(kept)]
    assert oldest.endswith(kept[0]) and kept[0] != oldest  # the oldest kept turn keeps only its end
    assert len(ids) == tiny_bot.model.backbone.config.n_positions - max_new  # the context fills its budget exactly


def test_a_message_longer_than_the_window_keeps_its_end_and_drops_older_turns(tiny_bot):
    history = [f"turn {i} about computers and feelings " * 5 for i in range(200)] + ["hello " + "x" * 20000]
    max_new = 8
    with forwards(tiny_bot) as calls:
        r = tiny_bot.respond(history, skill="alpha", max_new_tokens=max_new)
    assert r.skill == "alpha"
    ids = calls[0][0][0].tolist()
    [message] = turns_of(tiny_bot, ids)
    assert len(ids) == tiny_bot.model.backbone.config.n_positions - max_new  # the whole budget, used by the newest message
    assert set(message) == {"x"}  # its last characters; its start ("hello") and the older turns are cut


def test_stream_yields_snapshots_growing_to_the_greedy_reply(tiny_bot):
    history = ["my printer will not print"]
    seen = [(part, part.text) for part in tiny_bot.stream(history, skill="alpha", max_new_tokens=12, do_sample=False)]
    parts, texts = [p for p, _ in seen], [t for _, t in seen]
    assert len({id(p) for p in parts}) == len(parts), "stream() yielded the same object twice"
    assert [p.text for p in parts] == texts, "a yielded reply changed after it was yielded"
    assert all(p.skill == "alpha" for p in parts)
    growing, final = texts[:-1], texts[-1]
    assert all(growing[i + 1].startswith(growing[i]) and growing[i + 1] != growing[i] for i in range(len(growing) - 1))
    assert len(growing) >= 3 and len(growing[0]) < len(growing[-1])  # the text grows, word by word
    assert growing[-1].startswith(final)  # the last one is complete: cut back to a whole sentence at most
    assert final == tiny_bot.respond(history, skill="alpha", max_new_tokens=12, do_sample=False).text


def test_a_reply_cut_by_its_budget_ends_at_its_last_full_sentence():
    assert end_at_sentence("I loved it. But the book was") == "I loved it."
    assert end_at_sentence('Hi! He said "ok." Then') == 'Hi! He said "ok."'
    assert end_at_sentence("no sentence end at all") == "no sentence end at all"
    assert end_at_sentence("pi is 3.14 and") == "pi is 3.14 and"  # a decimal point ends nothing


def test_a_reply_never_shows_the_stray_bytes_of_a_broken_character(tiny_bot):
    ids = tiny_bot.tokenizer("Sure 😂", add_special_tokens=False)["input_ids"]
    assert "\ufffd" in tiny_bot.tokenizer.decode(ids[:-1])  # the emoji's last byte cut off
    assert tiny_bot._finish(ids[:-1], {"max_new_tokens": 99}) == "Sure"
    assert tiny_bot._finish(ids, {"max_new_tokens": 99}) == "Sure 😂"
    from bot.chatbot import NO_REPLY

    assert tiny_bot._finish(ids[-1:], {"max_new_tokens": 99}) == NO_REPLY == tiny_bot._finish([], {"max_new_tokens": 9})


def test_an_auto_turn_without_words_goes_to_the_bare_backbone_unrouted(tiny_bot):
    reply = tiny_bot.respond(["😂😂🔥👍"])
    assert reply.skill is None and reply.confidence is None and reply.text.startswith("I can only read words")


def test_only_a_reply_that_ran_out_of_tokens_is_cut_back(tiny_bot):
    ids = tiny_bot.tokenizer("Sure. And then", add_special_tokens=False)["input_ids"]
    assert tiny_bot._finish(ids, {"max_new_tokens": len(ids)}) == "Sure."
    assert tiny_bot._finish(ids, {"max_new_tokens": len(ids) + 1}).endswith("then")  # ended by EOS: kept whole


def test_a_skill_with_context_turns_reads_only_the_newest_turns(tiny_bot):
    import dataclasses

    spec = tiny_bot.specs["alpha"]
    history = ["an older turn about something else", "a reply", "my printer will not print"]
    def context(turns: list[str]) -> list[int]:
        return tiny_bot._prepare(turns, Reply("", "alpha"), {}).context

    full = context(history)
    tiny_bot.specs["alpha"] = dataclasses.replace(spec, decoding=dataclasses.replace(spec.decoding, context_turns=1))
    try:
        alone = context(history)
        assert alone == context(history[-1:]) and len(alone) < len(full)
    finally:
        tiny_bot.specs["alpha"] = spec


def test_a_chit_chat_turn_ranks_its_candidates_by_their_misfit_to_the_message(tiny_bot):
    from bot.chatbot import Reply

    encode = tiny_bot.tokenizer.encode
    staying = tiny_bot._prepare(["i went hiking today"], Reply("", None), {})
    assert staying.misfit(encode("ok bye!")) == 1 and staying.misfit(encode("Hello!")) == 1 and staying.misfit([]) == 3
    assert staying.misfit(encode("Nice! Where did you go?")) == 0
    leaving = tiny_bot._prepare(["ok gotta go, talk later!"], Reply("", None), {})
    assert leaving.misfit(encode("ok bye!")) == 0 and leaving.misfit(encode("Hello!")) == 2
    assert staying.written is None and leaving.written == "Bye! It was nice talking with you."
    picking = tiny_bot._prepare(["summer or winter, you have to pick one"], Reply("", None), {})
    assert "summer" in picking.written or "winter" in picking.written
    assert tiny_bot._prepare(["summer or winter, you have to pick one"], Reply("", "alpha"), {}).written is None


def test_a_question_about_the_bot_gets_its_skills_listed_without_generating(tiny_bot):
    steps = tiny_bot.engine.steps, tiny_bot.engine.prefills
    reply = tiny_bot.respond(["hey, what can you actually do?"], None)
    for name in tiny_bot.skills:
        assert f"- {name.replace('_', ' ')}: {tiny_bot.specs[name].description.strip()}" in reply.text
    assert [r.text for r in tiny_bot.stream(["are you a real person?"], None)][-1].startswith("I'm Adapter-Bot, a chatbot, not a person")
    assert (tiny_bot.engine.steps, tiny_bot.engine.prefills) == steps
    forced = tiny_bot.respond(["what can you do?"], tiny_bot.skills[0], max_new_tokens=3)  # a skill answers for itself
    assert "Adapter-Bot" not in forced.text

def test_a_message_of_self_harm_gets_the_written_crisis_reply_whatever_the_route(tiny_bot):
    from bot.crisis import CRISIS_FOLLOW_UP, CRISIS_GOODBYE, CRISIS_REPLY

    steps = tiny_bot.engine.steps, tiny_bot.engine.prefills
    auto = tiny_bot.respond(["hi", "hey! how are you?", "honestly i want to kill myself"])
    assert auto.skill is None and auto.confidence is None and auto.text == CRISIS_REPLY
    assert "988" in auto.text and "116 123" in auto.text
    assert tiny_bot.respond(["i dont want to be alive anymore"], tiny_bot.skills[0]).text == CRISIS_REPLY  # forced skill
    assert [r.text for r in tiny_bot.stream(["everyone would be better off without me"], None)][-1] == CRISIS_REPLY
    assert (tiny_bot.engine.steps, tiny_bot.engine.prefills) == steps  # nothing generated
    assert tiny_bot.respond(["this traffic is killing me"], None, max_new_tokens=3).text != CRISIS_REPLY
    after = tiny_bot.respond(["i want to die", CRISIS_REPLY, "i dont know, everything is just too much"], tiny_bot.skills[0])
    assert after.text == CRISIS_FOLLOW_UP  # even on a skill that reads only the newest turn
    goodbye = tiny_bot.respond(["i want to die", CRISIS_REPLY, "ok thanks, bye"])
    assert goodbye.text == CRISIS_GOODBYE and "988" in goodbye.text  # not "What's been going on?" to a goodbye
    assert tiny_bot.respond(["i want to die", CRISIS_REPLY, "ok", "hmm", "tell me more"], None, max_new_tokens=3).text \
        not in (CRISIS_REPLY, CRISIS_FOLLOW_UP)  # only the message right after the reply


def test_an_auto_turn_that_asks_about_the_bot_is_not_routed(tiny_bot):
    # the manager had sent "make me laugh, bonus points if its about cheese" to the empathetic skill
    reply = tiny_bot.respond(["hi", "hey!", "make me laugh, bonus points if its about cheese"])
    assert reply.skill is None and reply.confidence is None and reply.text in jokes()


def test_an_auto_turn_answering_how_are_you_is_not_routed(tiny_bot):
    reply = tiny_bot.respond(["hi", "Hey there! How's your day been?", "good thanks, you?"])
    assert reply.skill is None and reply.confidence is None and reply.text.startswith("I'm doing well too")


def test_an_auto_turn_in_another_language_is_not_routed_and_asks_for_english(tiny_bot):
    reply = tiny_bot.respond(["¿Por qué mi ordenador no enciende? Ayuda por favor."])
    assert reply.skill is None and reply.confidence is None and reply.text.startswith("Sorry, I only understand English")


def test_an_auto_turn_that_only_thanks_is_answered_in_writing_whatever_came_before(tiny_bot):
    history = ["my printer says offline", "Turn the printer off and on.", "appreciate it, take care"]
    reply = tiny_bot.respond(history)
    assert reply.skill is None and reply.confidence is None and reply.text == "You're welcome! Bye, talk to you soon."
    assert tiny_bot.respond([*history[:2], "thanks, but it still says offline"]).confidence is not None  # routed


def test_thanks_with_more_to_it_is_answered_not_welcomed_on_the_bare_backbone(tiny_bot):
    # "Thanks, it's been hard. He was 14." after a dead dog had got "You're welcome!" (a new user, session 17)
    assert tiny_bot.respond(["thanks so much!"], skill=None).text == "You're welcome!"
    grief = tiny_bot.respond(["my dog died", "I'm so sorry.", "Thanks, it's been hard. He was 14."], skill=None, seed=0)
    assert grief.text != "You're welcome!" and grief.text.strip()


def _facts_skill(tiny_dir, tiny_skills_dir, tmp_path) -> AdapterBot:
    """The toy skills with 'alpha' answering from one fact, and saying "No idea, sorry." without a passage."""
    import shutil

    from skills.spec import KnowledgeSpec, SkillSpec

    skills = tmp_path / "skills"
    shutil.copytree(tiny_skills_dir, skills)
    (skills / "alpha" / "facts.txt").write_text("the printer driver lives in settings\n", encoding="utf-8")
    spec = SkillSpec.load(skills / "alpha")
    spec.knowledge = KnowledgeSpec(mode="retrieval", file="facts.txt", min_overlap=0.9, unused_reply="No idea, sorry.")
    spec.save(skills / "alpha")
    return AdapterBot.from_pretrained(tiny_dir, skills)


def test_a_skill_with_an_unused_reply_says_it_word_for_word_when_no_passage_is_used(tiny_dir, tiny_skills_dir, tmp_path):
    bot = _facts_skill(tiny_dir, tiny_skills_dir, tmp_path)
    unused = bot.respond(["what is the capital of peru"], skill="alpha")
    assert unused.text == "No idea, sorry." and not unused.knowledge_used
    used = bot.respond(["where does the printer driver live in settings"], skill="alpha")
    assert used.knowledge_used and used.text != "No idea, sorry."


def test_a_skill_that_could_only_say_it_doesnt_know_gives_a_message_that_asks_nothing_to_chit_chat(
        tiny_dir, tiny_skills_dir, tmp_path):
    # "ngl this new boba place by my work is elite..." went to trivia at 0.72 and got "I'm not sure, I don't know that one"
    from manager.router import Decision

    bot = _facts_skill(tiny_dir, tiny_skills_dir, tmp_path)
    to_alpha = Decision("alpha", 0.7, {"none": 0.2, "alpha": 0.7, "beta": 0.1})
    chatter = "ngl this new boba place by my work is elite"
    assert bot._nothing_asked([chatter], to_alpha) == Decision(None, 0.2, to_alpha.scores)
    for kept in ("capital of peru?", "totally unrelated but what is the capital of peru", "name the capital of peru",
                 "the printer driver lives in settings"):  # asks, or its file answers
        assert bot._nothing_asked([kept], to_alpha) is to_alpha, kept
    to_beta = Decision("beta", 0.7, {"none": 0.2, "alpha": 0.1, "beta": 0.7})
    assert bot._nothing_asked([chatter], to_beta) is to_beta  # beta has no written "I don't know"
    # a device named, with first steps for it: "lg tv has a pinkish tint..." went to trivia at 0.66, tech support 0.33
    from skills.first_steps import FirstSteps
    from skills.knowledge import write_passages

    bot.first_steps["beta"] = FirstSteps(write_passages(["tv television\nUnplug the TV."], tmp_path / "steps.jsonl"))
    tv = "lg tv has a pinkish tint on the left side"
    assert bot._nothing_asked([tv], to_alpha) == Decision("beta", 0.1, to_alpha.scores)
    assert bot._nothing_asked([chatter], to_alpha) == Decision(None, 0.2, to_alpha.scores)  # no device named
    unlikely = Decision("alpha", 0.89, {"none": 0.1, "alpha": 0.89, "beta": 0.01})
    assert bot._nothing_asked([tv], unlikely).skill is None  # under answered_floor


def test_a_new_problem_without_a_passage_gets_the_written_question_back_unless_it_follows_the_skill(
        tiny_dir, tiny_skills_dir, tmp_path):
    import shutil

    from skills.spec import KnowledgeSpec, SkillSpec

    skills = tmp_path / "skills"
    shutil.copytree(tiny_skills_dir, skills)
    (skills / "alpha" / "faq.jsonl").write_text('{"text": "printer says offline\\nTurn the printer off and on again."}\n',
                                                encoding="utf-8")
    spec = SkillSpec.load(skills / "alpha")
    spec.knowledge = KnowledgeSpec(mode="retrieval", file="faq.jsonl", min_overlap=0.9, query_turns=3,
                                   new_problem_reply="Which device is it?")
    spec.save(skills / "alpha")
    bot = AdapterBot.from_pretrained(tiny_dir, skills)
    first = bot.respond(["whats the national dish of spain", "Paella", "my phone keeps asking for my password"], skill="alpha")
    assert first.text == "Which device is it?" and not first.knowledge_used
    after_fix = ["printer says offline", "Turn the printer off and on again.", "did that, still nothing"]
    follow = bot.respond(after_fix, skill="alpha")  # the bot's turn before is the skill's own fix: the adapter answers
    assert not follow.knowledge_used and follow.text != "Which device is it?"
    asked = bot.respond(["my phone is broken", "Which device is it?", "an old android"], skill="alpha")
    assert asked.text != "Which device is it?"  # asked back already: the adapter goes on


def _faq_with_first_steps(tiny_dir, tiny_skills_dir, tmp_path, topic: str) -> AdapterBot:
    """The toy skills with 'alpha' a printer FAQ that asks back "Which device is it?" and has one first-steps topic,
    ``topic``'s words, whose steps are "Close the app fully and update it."."""
    import shutil

    from skills.knowledge import write_passages
    from skills.spec import KnowledgeSpec, SkillSpec

    skills = tmp_path / "skills"
    shutil.copytree(tiny_skills_dir, skills)
    write_passages(["printer says offline\nTurn the printer off and on again."], skills / "alpha" / "faq.jsonl")
    write_passages([f"{topic}\nClose the app fully and update it."], skills / "alpha" / "steps.jsonl")
    spec = SkillSpec.load(skills / "alpha")
    spec.knowledge = KnowledgeSpec(mode="retrieval", file="faq.jsonl", min_overlap=0.9, query_turns=3,
                                   new_problem_reply="Which device is it?", first_steps_file="steps.jsonl")
    spec.save(skills / "alpha")
    return AdapterBot.from_pretrained(tiny_dir, skills)


def test_a_new_problem_of_a_known_topic_gets_its_first_steps_and_a_follow_up_goes_on_to_the_adapter(
        tiny_dir, tiny_skills_dir, tmp_path):
    bot = _faq_with_first_steps(tiny_dir, tiny_skills_dir, tmp_path, "instagram tiktok app apps")
    first = bot.respond(["instagram wont post my reel"], skill="alpha")
    assert first.text == "Close the app fully and update it." and not first.knowledge_used
    assert bot.respond(["my phone keeps asking for my password"], skill="alpha").text == "Which device is it?"
    follow = bot.respond(["instagram wont post my reel", first.text, "did that, still nothing"], skill="alpha")
    assert follow.text not in ("Close the app fully and update it.", "Which device is it?")  # the adapter goes on
    bot.specs["alpha"].decoding.context_turns = 3  # the reply reads 3 turns; the steps two bot turns back still count
    back = ["instagram wont post my reel", first.text, "who wrote hamlet?", "Shakespeare.", "back to instagram, still stuck"]
    assert bot.respond(back, skill="alpha").text not in ("Close the app fully and update it.", "Which device is it?")
    bot.unload_skill("alpha")
    assert "alpha" not in bot.first_steps


def test_a_skill_the_manager_does_not_know_is_named_in_a_warning_on_load(tiny_dir, tiny_skills_dir, tmp_path, caplog):
    # a `skill add` killed between installing its skill and saving the manager leaves exactly this folder
    import shutil

    from manager import DialogueManager

    root = tmp_path / "skills"
    shutil.copytree(tiny_skills_dir, root)
    manager = DialogueManager.load(root / MANAGER_DIR)
    manager.remove_class("beta")
    manager.save(root / MANAGER_DIR)
    with caplog.at_level("WARNING", logger="bot.chatbot"):
        bot = AdapterBot.from_pretrained(tiny_dir, root)
    assert "beta" in bot.skills and "beta" not in bot.manager.classes
    assert any("does not know skill(s) beta" in r.getMessage() and "--replace" in r.getMessage() for r in caplog.records)


def test_between_two_knowledge_skills_auto_takes_the_one_whose_file_answers(tiny_bot, monkeypatch):
    # "who painted girl with a pearl earring? ..." went to tech support at 0.48 (trivia 0.46) and got its question back
    from manager.router import Decision

    monkeypatch.setattr(tiny_bot, "knowledge", lambda skill, history: ("a passage", skill == "beta"))
    floor = tiny_bot.answered_floor
    close = Decision("alpha", 0.5, {"none": 0.0, "alpha": 0.5, "beta": 0.5 - 0.02})
    assert tiny_bot._answered(["q"], close, ["alpha", "beta"]) == Decision("beta", 0.5 - 0.02, close.scores)
    sure = Decision("alpha", 1 - floor, {"none": 0.0, "alpha": 1 - floor, "beta": floor})  # a FAQ just added
    assert tiny_bot._answered(["q"], sure, ["alpha", "beta"]) == Decision("beta", floor, sure.scores)
    far = Decision("alpha", 0.9, {"none": 0.0, "alpha": 0.9, "beta": floor - 0.01})
    assert tiny_bot._answered(["q"], far, ["alpha", "beta"]) is far  # too unlikely a route to take
    answered = Decision("beta", 0.6, {"none": 0.0, "alpha": 0.4, "beta": 0.6})
    assert tiny_bot._answered(["q"], answered, ["alpha", "beta"]) is answered
    # a fact asked of a skill that only answers from its file takes the turn at any score: "where did eminem grow
    # up?? my roommate says st louis..." went to the empathetic skill, trivia 0.02
    monkeypatch.setattr(tiny_bot.specs["beta"].knowledge, "unused_reply", "I don't know that one.")
    assert tiny_bot._answered(["where did eminem grow up??"], far, ["alpha", "beta"]).skill == "beta"
    assert tiny_bot._answered(["who made you?"], far, ["alpha", "beta"]) is far  # a question to the bot: no fact
    assert tiny_bot._answered(["eminem grew up in detroit"], far, ["alpha", "beta"]) is far  # asks nothing



def test_a_knowledge_skill_whose_file_answers_takes_a_turn_from_chit_chat_or_a_skill_without_knowledge(tiny_bot, monkeypatch):
    # "so my airpods, the left one just wont connect anymore, right one works fine" went to chit-chat
    from manager.router import Decision

    monkeypatch.setattr(tiny_bot, "knowledge", lambda skill, history: ("a passage", skill == "beta"))
    floor = tiny_bot.answered_floor
    chat = Decision(None, 0.7, {"none": 0.7, "alpha": 0.3 - floor, "beta": floor})
    assert tiny_bot._answered(["q"], chat, ["beta"]) == Decision("beta", floor, chat.scores)
    other = Decision("alpha", 0.8, {"none": 0.0, "alpha": 0.8, "beta": floor + 0.01})  # alpha has no knowledge here
    assert tiny_bot._answered(["q"], other, ["beta"]).skill == "beta"
    unlikely = Decision(None, 0.95, {"none": 0.95, "alpha": 0.05 + floor - 0.01, "beta": floor - 0.01})
    assert tiny_bot._answered(["q"], unlikely, ["beta"]) is unlikely
    monkeypatch.setattr(tiny_bot, "knowledge", lambda skill, history: ("a passage", False))  # no file answers
    assert tiny_bot._answered(["q"], chat, ["beta"]) is chat


def test_a_problem_in_a_first_steps_topic_is_taken_from_chit_chat_or_a_skill_without_knowledge(tiny_dir, tiny_skills_dir, tmp_path, monkeypatch):
    # "xbox party chat: i can hear my friends fine but they cant hear me..." went to chit-chat at 0.69
    from manager.router import Decision

    bot = _faq_with_first_steps(tiny_dir, tiny_skills_dir, tmp_path, "instagram tiktok app apps story")
    floor = bot.answered_floor
    chat = Decision(None, 0.7, {"none": 0.7, "alpha": floor, "beta": 0.3 - floor})
    assert bot._answered(["tiktok keeps crashing when i open it"], chat, ["alpha"]).skill == "alpha"
    assert bot._answered(["my story keeps crashing"], chat, ["alpha"]).skill == "alpha"  # an everyday word and trouble
    assert bot._answered(["i love tiktok, so funny"], chat, ["alpha"]) is chat  # the topic, but nothing wrong
    # over a skill without knowledge ("tesla app keeps saying 'waking vehicle'..." went to the empathetic skill), only a
    # device or app named: the empathetic skill's "my story keeps crashing down around me" is no app's
    skill = Decision("beta", 0.7, {"none": 0.0, "alpha": 0.3, "beta": 0.7})
    assert bot._answered(["tiktok keeps crashing when i open it"], skill, ["alpha"]).skill == "alpha"
    assert bot._answered(["my story keeps crashing down around me"], skill, ["alpha"]) is skill
    unlikely = Decision(None, 0.95, {"none": 0.95, "alpha": floor - 0.01, "beta": 0.05 - floor + 0.01})
    assert bot._answered(["tiktok keeps crashing when i open it"], unlikely, ["alpha"]) is unlikely


def test_a_file_answers_a_message_for_routing_only_when_they_share_a_word(tiny_dir, tiny_skills_dir, tmp_path):
    # "ugh fine. who painted the mona lisa?" after a connection's fix found a router's passage through the earlier turns
    bot = _faq_with_first_steps(tiny_dir, tiny_skills_dir, tmp_path, "instagram tiktok app apps")
    bot.specs["alpha"].knowledge.min_overlap = 0.1  # a lenient gate, as a three-turn query may pass
    before = ["printer says offline", "Which one is it?"]
    assert bot._answers("alpha", ["printer says offline"])
    assert bot.knowledge("alpha", [*before, "who painted the mona lisa?"])[1]  # the earlier turns find the passage...
    assert not bot._answers("alpha", [*before, "who painted the mona lisa?"])  # ...but it says nothing of the message
    assert bot._answers("alpha", [*before, "the printer still says offline"])


def test_a_follow_up_saying_the_first_steps_did_not_help_gets_the_after_steps_reply(tiny_dir, tiny_skills_dir, tmp_path):
    # "i turned 'mirror front camera' on, then off, restarted the phone, still flips every single time" got "Then"
    bot = _faq_with_first_steps(tiny_dir, tiny_skills_dir, tmp_path, "instagram tiktok app apps")
    bot.specs["alpha"].knowledge.after_steps_reply = "Sorry that didn't help."
    steps = bot.respond(["instagram wont post my reel"], skill="alpha").text
    assert bot.respond(["instagram wont post my reel", steps, "did that, still nothing"], skill="alpha").text == \
        "Sorry that didn't help."
    other = bot.respond(["instagram wont post my reel", steps, "my printer says offline"], skill="alpha")
    assert other.knowledge_used  # a new problem with a passage is answered from it
    asked = bot.respond(["my phone asks for a code", "Which device is it?", "tried an iphone, still nothing"], skill="alpha")
    assert asked.text != "Sorry that didn't help."  # after the question back, the adapter goes on


def test_first_steps_to_a_quoted_message_say_where_its_fix_is_and_still_count_as_the_steps(tiny_dir, tiny_skills_dir,
                                                                                            tmp_path):
    # 28 of 30 fresh trial problems in session 22 quoted what the device shows: no first step could know it
    bot = _faq_with_first_steps(tiny_dir, tiny_skills_dir, tmp_path, "instagram tiktok app apps")
    bot.specs["alpha"].knowledge.after_steps_reply = "Sorry that didn't help."
    message = "instagram keeps saying 'couldn't refresh feed' when i open it"
    steps = bot.respond([message], skill="alpha").text
    assert steps.startswith("Close the app fully and update it. If it still says \"couldn't refresh feed\", search")
    assert bot.respond([message, steps, "did that, still nothing"], skill="alpha").text == "Sorry that didn't help."


@pytest.mark.parametrize("message, shown", [
    ("schlage lock keeps saying 'lock jammed' in the app", "lock jammed"),
    ('printer says "paper jam" but theres no paper', "paper jam"),
    ("roblox keeps saying error code 279 every time", "error code 279"),
    ("my iphone autocorrects 'well' to 'we'll' every time", None),  # one quoted word: a word typed, not a message
    ("my omron monitor shows 'E2' on the screen", "E2"),  # unless it is a code
    ("it's broken and i don't know what's wrong", None),  # apostrophes quote nothing
    ("galaxy says 'Moisture has been detected in the charging port. Check the port and try again once dry.'",
     "Moisture has been detected in the charging port."),  # a long message: its first sentence
    ("my mama refuse to leave, she say 'this is my home, i stay'", None),  # a person's words, no device's
    ("coach said 'health comes first' and hugged me", None),
])
def test_what_a_device_shows_is_read_from_the_quotes_or_an_error_code(message, shown):
    from skills.first_steps import shown_on_screen

    assert shown_on_screen(message) == shown


def test_a_skill_with_first_steps_and_nothing_to_go_on_gives_the_turn_to_chit_chat(tiny_dir, tiny_skills_dir, tmp_path):
    # "lol my cat just knocked my coffee over" went to tech support at 0.53 and was asked which device it was
    from manager.router import Decision

    bot = _faq_with_first_steps(tiny_dir, tiny_skills_dir, tmp_path, "instagram tiktok app apps story")
    to_alpha = Decision("alpha", 0.6, {"none": 0.3, "alpha": 0.6, "beta": 0.1})
    assert bot._no_problem(["lol my cat just knocked my coffee over"], to_alpha) == Decision(None, 0.3, to_alpha.scores)
    # a topic's everyday word alone names nothing: "do you have a favorite word?" had got Office's steps
    assert bot._no_problem(["tell me a story about your day"], to_alpha) == Decision(None, 0.3, to_alpha.scores)
    for kept in (["instagram keeps logging me out"], ["my screen went black"], ["printer says offline again"],
                 ["my cat knocked my coffee over", "Which device is it?", "the big one in the hall"]):
        assert bot._no_problem(kept, to_alpha) is to_alpha  # a topic, trouble, a passage, an answer to its question
    to_beta = Decision("beta", 0.6, {"none": 0.3, "alpha": 0.1, "beta": 0.6})
    assert bot._no_problem(["lol my cat just knocked my coffee over"], to_beta) is to_beta  # beta has no first steps
    # a goodbye is no new problem, whatever its words ("ok signing off before my battery dies", session 22)
    leaving = ["ok signing off before my instagram app dies. take care"]
    assert bot._no_problem(leaving, to_alpha) == Decision(None, 0.3, to_alpha.scores)


def test_a_follow_up_to_a_knowledge_skills_question_back_or_first_steps_stays_on_it(tiny_dir, tiny_skills_dir, tmp_path,
                                                                                      monkeypatch):
    from manager.router import Decision

    bot = _faq_with_first_steps(tiny_dir, tiny_skills_dir, tmp_path, "canva app apps")
    to_beta = Decision("beta", 0.8, {"none": 0.1, "alpha": 0.1, "beta": 0.8})
    monkeypatch.setattr(bot.manager, "route_batch", lambda histories: [to_beta for _ in histories])
    asked = ["canva pdf download stuck at 99", "Which device is it?", "tried chrome and firefox, still hangs"]
    steps = ["canva pdf download stuck at 99", "Close the app fully and update it.", "did that already, same thing"]
    assert [d.skill for d in bot.route_batch([asked, steps])] == ["alpha", "alpha"]
    assert bot.route_batch([asked])[0].probability == 0.1  # the skill's own score, shown as it is
    elsewhere = [[*asked[:2], "anyway, how was your week"], ["hi", "Hello!", "i tried yoga, still sore"]]
    assert [d.skill for d in bot.route_batch(elsewhere)] == ["beta", "beta"]  # no follow-up, or not after the skill



@pytest.mark.parametrize("text, source, cut", [
    ("Sorry that didn't help. I don't have another step for this one, so the maker's support site or a repair shop is "
     "the fetish shop is the fetish shop is the fetish list.", "", "Sorry that didn't help."),
    ("Try it on a laptop or tablet or tablet or tablet", "", "Try it on a laptop or tablet"),
    ("Restart the router, then check the cable.", "", "Restart the router, then check the cable."),
    ("Bye bye! Talk soon.", "", "Bye bye! Talk soon."),
    ("New York, New York", "What song did Sinatra make famous?\nNew York, New York", "New York, New York"),
])
def test_a_reply_ends_before_a_loop_it_fell_into(text, source, cut):
    assert cut_loop(text, source) == cut


@pytest.mark.parametrize("text, message, kept", [
    ("I'm so sorry about your hub a rabbit. It's not your fault.", "i reported my supervisor to hr", "It's not your fault."),
    ("I'm so sorry to hear that. It's not your son.", "today wouldve been my son's 18th birthday",
     "I'm so sorry to hear that."),  # "not your" names nothing but a fault
    ("I'm so sorry about your dog. How long did you have your dog?", "my dog died this morning",
     "I'm so sorry about your dog. How long did you have your dog?"),  # named: kept
    ("Is there anyone who can help you with your statistics class?", "failing statistics again",
     "Is there anyone who can help you with your statistics class?"),  # the same word, another form
    ("I'm so sorry about your costume.", "my boss screamed at me", "I'm so sorry about your costume."),  # all: kept whole
    ("That sounds really stressful. Is there anyone who can help you talk to your puppy?",
     "I need a new hip and I can't walk the dog anymore", "That sounds really stressful."),
    ("Maybe you can talk to your friend.", "i feel so alone", "Maybe you can talk to your friend."),  # always allowed
])
def test_a_skill_reply_drops_sentences_about_something_the_user_never_named(text, message, kept):
    assert drop_unsaid(text, message) == kept


def test_only_a_skills_generated_reply_is_checked_for_what_the_user_never_named(tiny_bot):
    history = ["my printer jams"]
    skill_turn = tiny_bot._prepare(history, Reply(text="", skill=tiny_bot.skills[0]), {})
    chit_chat = tiny_bot._prepare(history, Reply(text="", skill=None), {})
    ids = tiny_bot.tokenizer.encode("Sorry about your cat. Does your printer jam often?")
    assert tiny_bot._text(ids, skill_turn) == "Does your printer jam often?"
    # chit-chat may ask about "your day", but stays on the conversation: the printer, never a cat it wandered off to
    assert tiny_bot._text(ids, chit_chat) == "Sorry about your cat."


@pytest.mark.parametrize("text, conversation, kept", [
    ("That is so cool! I hope you have a flying car. I'm sure you would have a million dollars.", "i bought a new bike",
     "That is so cool!"),
    ("Oh my gosh! That's so awesome! I bet you will be so excited!", "just passed my driving test",
     "Oh my gosh! That's so awesome! I bet you will be so excited!"),  # reactions name nothing new
    ("I like cake, too. I love chocolate. What about you?", "do you like chocolate cake",
     "I like cake, too. I love chocolate. What about you?"),  # what the conversation named
    ("I went to the gym, but it was so good.", "what did you do last weekend",
     "I went to the gym, but it was so good."),  # the first sentence is the answer: never cut
    ("Nice! What are you studying?", "today was actually a pretty good day", "Nice!"),
])
def test_a_chit_chat_reply_ends_before_a_sentence_that_wanders_off(text, conversation, kept):
    assert stay_on_topic(text, conversation) == kept


def test_a_reply_drifts_into_the_corpus_own_life_only_where_the_conversation_never_went():
    assert drifts("So what's your major?", "i'm going fishing tomorrow")
    assert drifts("I'm going to the temple tomorrow.", "any plans?")
    assert not drifts("What's your major?", "i just declared my major, history")
    assert not drifts("That sounds fun!", "i'm going fishing tomorrow")
