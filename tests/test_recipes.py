"""The recipes that build the bundled artifacts: their data, on the real corpora."""
from __future__ import annotations

import dataclasses
import json

import torch

from bot.evaluation.knowledge_check import answered_from
from bot.recipes.backbone import copy_nll, sample_batch
from bot.recipes.skills import (
    ABSTAIN, AFTER_FIX, CLARIFY, DETAILS, GIVE_UP, STILL_BROKEN, REJECTED_BAD_NEWS, TO_THE_BOT, counterfactual, mined_empathy, out_of_knowledge, skill_data,
    passages_only, tech_examples, trivia_examples, with_abstentions, with_clarifications,
)
from skills.data import Example
from skills.knowledge import Retriever


def test_trivia_passages_hold_the_answer_as_the_tokens_a_reply_starts_with(tmp_path):
    from transformers import AutoTokenizer

    from bot.backbone import BUNDLED_BACKBONE

    _, path = skill_data("trivia", tmp_path)
    tok = AutoTokenizer.from_pretrained(BUNDLED_BACKBONE)
    passages = [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(passages) > 100
    for passage in passages:
        question, answer = passage.split("\n")
        assert tok.encode(passage)[-len(tok.encode(answer)):] == tok.encode(answer), passage
    hit = Retriever.from_file(path).search(question)[0]
    assert hit.text == passage


def test_trivia_questions_are_facts_each_also_typed_casually_in_the_same_group_and_unknown_ones_abstain():
    examples = trivia_examples()
    assert examples == trivia_examples()
    facts = [e for e in examples if e.knowledge]
    assert not any(TO_THE_BOT.search(e.group) for e in facts)  # "have you read plato" is not a fact
    by_group: dict[str, list[Example]] = {}
    for e in facts:
        by_group.setdefault(e.group, []).append(e)
    pairs = [g for g in by_group.values() if len(g) == 2]
    assert len(pairs) > 0.9 * len(by_group)
    for written, casual in pairs:
        assert written.context[0] == written.group and casual.context[0] != written.group
        assert written.response == casual.response and written.knowledge == casual.knowledge
    unknown = [e for e in examples if not e.knowledge]
    assert [e.context[0] for e in unknown] == out_of_knowledge("train")  # never a validation or test question
    assert all(e.response in ABSTAIN and e.group == e.context[0] for e in unknown)


def test_trivia_learns_to_abstain_without_a_passage_and_with_an_unrelated_one(tmp_path):
    _, knowledge = skill_data("trivia", tmp_path)
    examples = trivia_examples()
    facts, unknown = [e for e in examples if e.knowledge][:40], [e for e in examples if not e.knowledge][:10]
    out = with_abstentions(knowledge)(facts + unknown)
    abstaining = [e for e in out if e.response in ABSTAIN]
    without = {tuple(e.context) for e in abstaining if e.knowledge is None}
    assert 0 < len(without & {tuple(e.context) for e in facts}) < len(facts)  # a quarter of them, by hash
    unrelated = [e for e in abstaining if e.knowledge and e.context in [u.context for u in unknown]]
    assert unrelated and all(e.response not in e.knowledge for e in unrelated)  # BM25's unrelated passage, not copied
    assert not set(out_of_knowledge("test")) & {e.context[0] for e in out}  # test questions never trained on
    retriever = Retriever.from_file(knowledge)
    installed = [dataclasses.replace(e, knowledge=retriever.lookup(e.context[0]).text) for e in unknown]  # as skill add
    again = with_abstentions(knowledge)(facts + installed)
    assert not any(answered_from(e) for e in installed)  # an unrelated passage does not make a question answered
    assert {tuple(e.context) for e in again if e.knowledge is None} >= {tuple(e.context) for e in unknown}


def test_tech_passages_are_the_exchanges_their_fix_last_as_a_reply_starts(tmp_path):
    from transformers import AutoTokenizer

    from bot.backbone import BUNDLED_BACKBONE

    data, path = skill_data("tech_support", tmp_path)
    examples, more = tech_examples(), passages_only("tech_support")
    assert examples == tech_examples() and len({e.group for e in examples}) >= 30
    assert more and not {e.group for e in more} & {e.group for e in examples}  # problems of their own
    passages = {json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()}
    assert passages == {e.knowledge for e in examples + more}  # in the knowledge file...
    trained = {json.loads(line)["response"] for line in data.read_text(encoding="utf-8").splitlines()}
    assert not trained & {e.response for e in more}  # ...never in the training data
    tok = AutoTokenizer.from_pretrained(BUNDLED_BACKBONE)
    for e in examples + more:
        assert e.knowledge.endswith("\n" + e.response) and e.knowledge.startswith(e.context[0])
        assert tok.encode(e.knowledge)[-len(tok.encode(e.response)):] == tok.encode(e.response), e.knowledge


def test_tech_learns_to_copy_any_fix_and_to_ask_back_without_a_passage(tmp_path):
    _, knowledge = skill_data("tech_support", tmp_path)
    train = tech_examples()[:40]
    out = with_clarifications(knowledge)(train)
    assert out == with_clarifications(knowledge)(train)
    asking = [e for e in out if e.response in CLARIFY]
    assert all(e.knowledge is None for e in asking) and 0 < len(asking) < len(train)
    swapped = [e for e in out[len(train):] if e.knowledge]
    assert len(swapped) == 2 * len(train) and all(e.knowledge.endswith(e.response) for e in swapped)
    assert not {e.response for e in swapped} & {e.response for e in train}
    giving_up = [e for e in out if e.response in GIVE_UP]  # asked back already, still no passage: where to go next
    assert giving_up and len(giving_up) < len(asking) and all(e.knowledge is None for e in giving_up)
    assert all(len(e.context) == 3 and e.context[1] in CLARIFY and e.context[2] in DETAILS for e in giving_up)
    assert {e.context[0] for e in giving_up} <= {e.context[-1] for e in asking}
    after_fix = [e for e in out if e.response in AFTER_FIX]  # a fix failed, no passage for a next step: say so
    assert after_fix and all(e.knowledge is None and len(e.context) == 3 and e.context[2] in STILL_BROKEN for e in after_fix)
    fixes = {(e.context[0], e.response) for e in train if len(e.context) == 1}
    assert {(e.context[0], e.context[1]) for e in after_fix} <= fixes


def test_mined_empathy_keeps_the_hand_checked_exchanges_only():
    mined = mined_empathy()
    assert mined and all(e.group.startswith("chitchat:") for e in mined)
    assert not any(e.group[len("chitchat:"):].startswith(REJECTED_BAD_NEWS) for e in mined)


def test_counterfactual_copies_swap_the_answer_for_a_span_of_open_text_in_passage_and_reply_alike():
    examples = [Example([f"question {i}?"], f"answer number {i}", f"question {i}?\nanswer number {i}") for i in range(5)]
    examples.append(Example(["no passage?"], "plain reply"))
    phrases = ["the quick brown fox jumps over the lazy dog", "hello there"]
    out = counterfactual(examples, copies=3, phrases=phrases)
    assert out[:6] == examples and len(out) == 6 + 5 * 3
    words = {w.lower() for p in phrases for w in p.split()}
    for e in out[6:]:
        assert e.knowledge == f"{e.context[0]}\n{e.response}"
        assert 1 <= len(e.response.split()) <= 3 and {w.lower() for w in e.response.split()} <= words
        assert e.response.lower() in " ".join(phrases)
    assert out[6:] == counterfactual(examples, copies=3, phrases=phrases)[6:]


def test_copy_rows_repeat_their_first_half_and_the_rest_are_plain_windows():
    stream = torch.arange(1000)
    torch.manual_seed(0)
    x = sample_batch(stream, block=16, batch=4, copy_rows=1)
    assert torch.equal(x[3, 8:], x[3, :8])
    for row in x[:3]:
        assert torch.equal(row, torch.arange(row[0], row[0] + 16))


def test_copy_nll_is_low_for_a_model_that_copies_and_high_for_one_that_cannot():
    class Lookup(torch.nn.Module):
        """Predicts, at each position, the token that followed the previous occurrence of the current one."""

        def __init__(self, copies: bool) -> None:
            super().__init__()
            self.copies = copies

        def forward(self, input_ids):
            logits = torch.zeros(*input_ids.shape, 100)
            for b, row in enumerate(input_ids.tolist()):
                for t, token in enumerate(row):
                    seen = [i for i in range(t) if row[i] == token]
                    if self.copies and seen and seen[-1] + 1 < len(row):
                        logits[b, t, row[seen[-1] + 1]] = 30.0
            return type("Out", (), {"logits": logits})

    stream = torch.randperm(100).repeat(2)
    assert copy_nll(Lookup(copies=True), stream, block=16, rows=4) < 0.01
    assert copy_nll(Lookup(copies=False), stream, block=16, rows=4) > 4.0


def test_manager_only_refuses_a_folder_without_the_bundled_skills_and_changes_nothing(tiny_dir, tiny_bot):
    import pytest

    from bot.recipes.skills import main

    root = tiny_bot.registry.root
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    with pytest.raises(SystemExit, match="bundled skill.*empathetic.*not installed"):
        main(["--manager-only", "--backbone", str(tiny_dir), "--out", str(root)])
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before
