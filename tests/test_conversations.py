"""Routing histories shaped like real conversations: deterministic, every length, the skill's turn last."""
from __future__ import annotations

from collections import Counter

from bot import conversations
from skills.corpora import bad_news_exchanges, shares_bad_news
from skills.data import Example, split_examples


def test_chitchat_histories_are_deterministic_and_of_every_length():
    a = conversations.chitchat_histories("valid", 200, seed=3)
    assert a == conversations.chitchat_histories("valid", 200, seed=3)
    assert a != conversations.chitchat_histories("valid", 200, seed=4)
    lengths = Counter(len(h) for h in a)
    assert set(lengths) == set(range(1, conversations.MAX_TURNS + 1))
    assert lengths[1] >= 40  # openings and greetings: a conversation's first turn is chit-chat too
    assert not any(shares_bad_news(h[-1]) for h in a)  # the empathetic skill's turns are not chit-chat


def test_a_skill_turn_comes_as_it_is_and_after_a_chitchat_opening():
    contexts = [["my wifi keeps dropping"], ["my printer is offline", "Is it on the same network?", "yes it is"]]
    histories = conversations.skill_histories(contexts, "valid", seed=0)
    assert histories[:2] == contexts
    for context, history in zip(contexts, histories[2:]):
        assert history[-len(context):] == context and 1 <= len(history) - len(context) <= conversations.MAX_TURNS - 1
    assert histories == conversations.skill_histories(contexts, "valid", seed=0)


def test_chitchat_after_a_skill_exchange_follows_its_reply():
    examples = [Example(["my laptop is slow"], "Try closing the programs you are not using.")]
    [history] = conversations.chitchat_after_skill(examples, "valid")
    assert history[:2] == ["my laptop is slow", "Try closing the programs you are not using."] and len(history) == 3


def test_the_bad_news_filter_and_mining_are_deterministic():
    assert shares_bad_news("I failed my exam today and feel awful")
    assert shares_bad_news("my grandma passed away last week")
    assert not shares_bad_news("what did you do this weekend?")
    mined = bad_news_exchanges()
    assert mined and [(c.id, i) for c, i in mined] == [(c.id, i) for c, i in bad_news_exchanges()]


def test_a_group_never_straddles_splits():
    rows = [Example([f"problem {g} message {i}"], f"reply {g} {i}", None, f"problem-{g}") for g in range(40) for i in range(6)]
    splits = split_examples(rows)
    groups = {name: {e.group for e in split} for name, split in splits.items()}
    assert not (groups["train"] & groups["test"]) and not (groups["train"] & groups["valid"])
    assert not (groups["valid"] & groups["test"]) and all(groups.values())


def test_a_skill_turn_after_another_skill_s_whole_exchange():
    contexts = [["my wifi keeps dropping"], ["printer offline", "Restart it.", "still offline"]]
    others = [Example(["my dog died"], "I'm so sorry.", None), Example(["i failed my exam"], "That's hard.", None)]
    histories = conversations.after_other_skills(contexts, others, "train")
    assert histories == conversations.after_other_skills(contexts, others, "train")
    assert [h[-len(c):] for h, c in zip(histories, contexts)] == contexts
    for h, c in zip(histories, contexts):
        assert any(h[: -len(c)] == [*e.context, e.response] for e in others)
    assert conversations.after_other_skills(contexts, [], "train") == []


def test_a_personal_aside_goes_around_the_newest_turn_and_comes_from_its_split():
    import json

    contexts = [["who won the first world cup"], ["my printer is offline", "Is it on?", "yes it is"]]
    asides = {json.loads(line)["aside"]: json.loads(line)["place"]
              for line in conversations.ASIDES.read_text(encoding="utf-8").splitlines()}
    for context, history in zip(contexts, conversations.with_aside(contexts, "train")):
        assert history[:-1] == context[:-1] and history[-1] != context[-1]
        aside = history[-1].replace(context[-1], "").strip()
        assert aside in asides and history[-1] == (f"{aside} {context[-1]}" if asides[aside] == "before" else
                                                   f"{context[-1]} {aside}")
    # each split has its own asides, the same on every call
    test_asides = {h[-1].replace(contexts[0][0], "").strip() for h in conversations.with_aside(contexts[:1] * 40, "test")}
    train_asides = {h[-1].replace(contexts[0][0], "").strip() for h in conversations.with_aside(contexts[:1] * 40, "train")}
    assert test_asides and not test_asides & train_asides
    assert conversations.with_aside(contexts, "test") == conversations.with_aside(contexts, "test")
