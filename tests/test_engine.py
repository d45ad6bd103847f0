"""The engine: concurrent turns decode together, each exactly as it would alone, with its own settings."""
from __future__ import annotations

import threading
import time

import pytest
import torch

from bot.adapter import AdaptedModel
from bot.engine import Engine, Pending, Request
from bot.generation import generate_ids
from tests.test_adapter_kinds import SMALL, perturb

TEXTS = ("hello how are", "my computer", "who wrote the", "i feel sad today and", "a b c", "the end of", "x", "why")
ROUTES = ["bottleneck", None, "houlsby", "lora", "prefix", "prompt", {"bottleneck": 0.5, "extra": 0.5}, None]
GREEDY = dict(max_new_tokens=10, repetition_penalty=1.2, no_repeat_ngram_size=3)


@pytest.fixture
def engine(tiny):
    model, tok = tiny
    for i, (kind, settings) in enumerate(SMALL.items()):
        model.add_adapter(kind, model.new_config(kind, **settings))
        perturb(model, kind, i)
    model.add_adapter("extra", model.new_config(bottleneck=3))
    perturb(model, "extra", 9)
    return Engine(model, tok), [tok.encode(t) + [tok.eos_token_id] for t in TEXTS]


def settings(i: int) -> dict:
    """A different decoding per row: greedy or sampled, with and without bans and penalties."""
    if i % 3 == 0:
        return dict(GREEDY)
    if i % 3 == 1:
        return dict(max_new_tokens=6 + i, do_sample=True, temperature=0.7, top_p=0.9)
    return dict(max_new_tokens=12, reply_no_repeat_ngram_size=2)


def test_concurrent_turns_each_get_their_solo_result(engine):
    eng, contexts = engine
    requests = [Request(c, r, settings(i), seed=i) for i, (c, r) in enumerate(zip(contexts, ROUTES))]
    alone = [eng.generate(r) for r in requests]
    steps = eng.steps
    together = [g.result(60) for g in [eng.submit(r) for r in requests]]
    assert together == alone
    assert eng.steps - steps <= max(len(x) for x in alone)  # one shared step per token, not one per row
    assert len({tuple(x) for x in alone}) > 4


def test_greedy_turns_match_transformers_generate(engine):
    eng, contexts = engine
    model: AdaptedModel = eng.model
    routes = ROUTES[:6]
    expected = [generate_ids(model, eng.tokenizer, [c], [r], do_sample=False, **GREEDY)[0] for c, r in zip(contexts, routes)]
    got = [g.result(60) for g in [eng.submit(Request(c, r, dict(GREEDY))) for c, r in zip(contexts, routes)]]
    assert got == expected


def test_a_turn_that_joins_mid_generation_gets_its_solo_result(engine):
    eng, contexts = engine
    long = Request(contexts[3], "lora", dict(max_new_tokens=40))
    late = Request(contexts[0], "prefix", dict(GREEDY))
    solo_long, solo_late = eng.generate(long), eng.generate(late)
    first = eng.submit(long)
    while len(first.tokens) < 3 and not first._done.is_set():
        time.sleep(0.001)
    joined_at = len(first.tokens)
    second = eng.submit(late)
    assert second.result(60) == solo_late and first.result(60) == solo_long
    assert 0 < joined_at < len(solo_long)  # the second turn really joined a running generation


def test_a_turn_no_wider_than_the_cache_joins_in_place_and_a_wider_one_moves_it(engine):
    eng, contexts = engine
    long = Request(contexts[3], "lora", dict(max_new_tokens=40))
    narrow = Request(contexts[0], "lora", dict(GREEDY))  # narrower than the running row's cache
    wide = Request(contexts[3] * 3, "houlsby", dict(GREEDY))  # wider than it
    solo = [eng.generate(r) for r in (long, narrow, wide)]
    while eng._batch.rows:  # the last solo turn's row has left
        time.sleep(0.001)
    copied = []
    original = eng._join

    def join(rows, kv, mask):
        before = eng._batch.cache.layers[0]._buffers if eng._batch.rows else None
        original(rows, kv, mask)
        if before is not None:
            copied.append(eng._batch.cache.layers[0]._buffers is not before)

    eng._join = join
    first = eng.submit(long)
    while len(first.tokens) < 3 and not first._done.is_set():
        time.sleep(0.001)
    second = eng.submit(narrow)
    while not second._done.is_set():
        time.sleep(0.001)
    third = eng.submit(wide)
    assert [g.result(60) for g in (first, second, third)] == solo
    assert copied == [False, True]  # the narrow turn took a spare row in place; the wide one needed wider buffers


def test_ended_rows_wait_for_compaction_and_leave_when_a_turn_joins(engine):
    eng, contexts = engine
    first = [Request(contexts[i], "lora", dict(max_new_tokens=3 if i == 0 else 30)) for i in range(8)]
    late = Request(contexts[0], "houlsby", dict(GREEDY))
    solo = [eng.generate(r) for r in [*first, late]]
    seen = []
    original = eng._step

    def step():
        seen.append((len(eng._batch.rows), eng.active))
        original()

    eng._step = step
    with eng.paused():  # the eight turns are admitted together
        running = [eng.submit(r) for r in first]
    while len(running[1].tokens) < 8 and not running[1]._done.is_set():
        time.sleep(0.001)
    assert running[0].result(60) == solo[0]
    joined = eng.submit(late)
    assert joined.result(60) == solo[8] and [g.result(60) for g in running] == solo[:8]
    ended_kept = seen.index((8, 7))  # the short turn ended; its row stayed, unused, in the batch of 8
    assert (8, 8) in seen[ended_kept:]  # the late turn joined in its place: the ended row left as it came in
    assert max(rows for rows, _ in seen) == 8 and eng.active == 0


def test_streaming_yields_each_rows_own_tokens_as_they_come(engine):
    eng, contexts = engine
    requests = [Request(contexts[i], ROUTES[i], dict(GREEDY)) for i in range(3)]
    solo = [eng.generate(r) for r in requests]
    streams = [eng.submit(r) for r in requests]
    seen: dict[int, list[int]] = {}

    def read(i: int) -> None:
        seen[i] = list(streams[i])

    threads = [threading.Thread(target=read, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [seen[i] for i in range(3)] == solo


def test_a_row_whose_skill_is_removed_fails_alone(engine):
    eng, contexts = engine
    request = Request(contexts[0], "houlsby", dict(max_new_tokens=30))
    assert len(eng.generate(request)) == 30  # alone, it runs its whole budget
    other = Request(contexts[1], "lora", dict(max_new_tokens=30))
    solo_other = eng.generate(other)
    doomed = eng.submit(request)
    push = doomed._push

    def push_then_remove(token: int) -> None:  # runs in the engine thread, between two of its steps
        push(token)
        if len(doomed.tokens) == 3:
            with eng.paused():
                eng.model.remove_adapter("houlsby")

    doomed._push = push_then_remove
    fine = eng.submit(other)
    with pytest.raises(KeyError, match="houlsby"):
        doomed.result(60)
    assert len(doomed.tokens) == 3 and fine.result(60) == solo_other


def test_an_unknown_decoding_setting_is_refused_naming_it(engine):
    eng, contexts = engine
    with pytest.raises(ValueError, match="num_beams"):
        eng.generate(Request(contexts[0], None, dict(num_beams=2)))


def test_respond_batch_gives_each_row_its_own_decoding(tiny_bot):
    bot = tiny_bot
    histories = [["my printer will not print"], ["who wrote hamlet"]]
    short = dict(max_new_tokens=3, do_sample=False)  # the bare backbone samples by default
    a = bot.respond_batch(histories, ["alpha", None], **short)
    b = bot.respond_batch(histories[::-1], [None, "alpha"], **short)
    assert a == b[::-1]
    assert a[0] == bot.respond(histories[0], skill="alpha", **short).text
    # rows on different skills keep their skill's own settings (the bug: row 0's applied to every row)
    mixed = bot.respond_batch(histories, ["alpha", "beta"])
    assert mixed[1] == bot.respond(histories[1], skill="beta").text


def test_a_cancelled_turn_leaves_the_batch_and_the_others_go_on(engine):
    eng, contexts = engine
    long = Request(contexts[3], "lora", dict(max_new_tokens=40))
    other = Request(contexts[0], "bottleneck", dict(max_new_tokens=40))
    assert len(eng.generate(long)) == 40
    solo_other = eng.generate(other)
    first = eng.submit(long)
    push = first._push

    def push_then_cancel(token: int) -> None:
        push(token)
        if len(first.tokens) == 2:
            first.cancel()

    first._push = push_then_cancel
    second = eng.submit(other)
    assert len(first.result(60)) == 2 and second.result(60) == solo_other


def test_closing_a_stream_cancels_its_generation(tiny_bot):
    stream = tiny_bot.stream(["my printer will not print"], skill="alpha", max_new_tokens=40)
    next(stream)
    stream.close()  # as a client that disconnects
    steps = tiny_bot.engine.steps
    time.sleep(0.2)
    assert tiny_bot.engine.active == 0 and tiny_bot.engine.steps - steps <= 2


def test_turns_admitted_together_are_prefilled_in_one_pass(engine):
    eng, contexts = engine
    requests = [Request(c, r, settings(i), seed=i) for i, (c, r) in enumerate(zip(contexts, ROUTES))]
    alone = [eng.generate(r) for r in requests]
    prefills, busy = eng.prefills, dict(eng.seconds)
    with eng.paused():  # every request waits, so the engine admits them all at its next step
        pending = [eng.submit(r) for r in requests]
    assert [g.result(60) for g in pending] == alone
    assert eng.prefills - prefills == 1
    assert eng.seconds["prefill"] > busy["prefill"] and eng.seconds["decoding"] > busy["decoding"]
    assert eng.seconds["routing"] >= busy["routing"]  # given routes: nothing to route, the time is tiny or none


def test_a_cache_that_outgrows_its_room_is_moved_to_a_larger_one(engine, monkeypatch):
    import bot.engine

    eng, contexts = engine
    requests = [Request(c, r, dict(max_new_tokens=30)) for c, r in zip(contexts[:4], ROUTES[:4])]
    alone = [eng.generate(r) for r in requests]
    monkeypatch.setattr(bot.engine, "ROOM", 1)  # buffers now grow every few steps
    assert [g.result(60) for g in [eng.submit(r) for r in requests]] == alone


def test_pending_turns_are_routed_in_one_call_when_admitted(engine):
    eng, contexts = engine
    routes = {"printer": "lora", "sad": None, "who": {"bottleneck": 0.5, "extra": 0.5}}
    calls: list[list[list[str]]] = []

    def route_batch(histories: list[list[str]]) -> list:
        calls.append(histories)
        return [routes[h[-1]] for h in histories]

    def request(context: list[int]):
        return lambda route: Request(context, route, dict(GREEDY))

    alone = [eng.generate(Request(c, routes[m], dict(GREEDY))) for c, m in zip(contexts, routes)]
    decided: list = []
    with eng.paused():
        pending = [eng.submit(Pending([m], route_batch, request(c))) for c, m in zip(contexts, routes)]
        only_routed = eng.submit(Pending(["sad"], route_batch, decided.append))  # no request: routing only
    assert [g.result(60) for g in pending] == alone
    assert only_routed.result(60) == [] and decided == [None]
    assert calls == [[["printer"], ["sad"], ["who"], ["sad"]]]


def test_a_failed_routing_fails_its_turns_alone(engine):
    eng, contexts = engine

    def broken(histories: list[list[str]]) -> list:
        raise RuntimeError("router down")

    fine = Request(contexts[0], "lora", dict(GREEDY))
    solo = eng.generate(fine)
    with eng.paused():
        doomed = eng.submit(Pending(["x"], broken, lambda route: fine))
        other = eng.submit(fine)
    with pytest.raises(RuntimeError, match="router down"):
        doomed.result(60)
    assert other.result(60) == solo


def test_manager_scores_are_the_managers_routing_scores(tiny_bot):
    history = ["my printer will not print"]
    assert tiny_bot.manager_scores(history) == pytest.approx(tiny_bot.manager.route(history).scores)


def mean_logprob(model: AdaptedModel, context: list[int], reply: list[int], route, eos: int) -> tuple[bool, float]:
    """A candidate's rank key computed on its own: one forward pass over context + reply (+ end-of-text if it ended)."""
    ended = len(reply) < 8
    scored = reply + [eos] if ended else reply
    ids = torch.tensor([context + scored])
    with torch.no_grad():
        logits = model(input_ids=ids, route=[route]).logits[0, len(context) - 1:-1]
    return ended, float(torch.log_softmax(logits.float(), -1).gather(-1, torch.tensor(scored)[:, None]).mean())


def test_sample_and_rank_keeps_the_likeliest_candidate_alone_and_in_a_batch(engine):
    eng, contexts = engine
    sampled = dict(max_new_tokens=8, do_sample=True, temperature=1.5, top_p=1.0)
    ranked = Request(contexts[0], "lora", dict(sampled, candidates=5), seed=40)
    candidates = [eng.generate(Request(contexts[0], "lora", dict(sampled), seed=40 + i)) for i in range(5)]
    assert len({tuple(c) for c in candidates}) > 1
    keys = [mean_logprob(eng.model, contexts[0], c, "lora", eng.tokenizer.eos_token_id) for c in candidates]
    best = candidates[max(range(5), key=lambda i: keys[i])]
    assert eng.generate(ranked) == best
    others = [Request(c, r, settings(i), seed=i) for i, (c, r) in enumerate(zip(contexts[1:4], ROUTES[1:4]))]
    together = [g.result(60) for g in [eng.submit(r) for r in [ranked, *others]]]
    assert together == [best, *[eng.generate(r) for r in others]]


def test_a_ranked_turns_candidates_share_one_prompt_pass(engine):
    eng, contexts = engine
    rows = []
    hook = eng.model.backbone.register_forward_pre_hook(
        lambda module, args, kwargs: rows.append(kwargs["input_ids"].shape) if kwargs["input_ids"].shape[1] > 1 else None,
        with_kwargs=True)
    try:
        sampled = dict(max_new_tokens=6, do_sample=True, candidates=4)
        ranked = [eng.submit(Request(contexts[i], None, sampled, seed=i)) for i in range(2)]
        [g.result(60) for g in ranked]
    finally:
        hook.remove()
    assert sum(shape[0] for shape in rows) == 2  # two turns' prompts, not eight candidates'


def test_a_ranked_turn_streams_its_reply_whole(engine):
    eng, contexts = engine
    generation = eng.submit(Request(contexts[1], None, dict(max_new_tokens=8, do_sample=True, candidates=3), seed=1))
    first = next(iter(generation))
    assert len(generation.tokens) == len(generation.result(60)) and first == generation.tokens[0]


def test_generate_ids_ranks_candidates_like_the_engine(engine):
    eng, contexts = engine
    sampled = dict(max_new_tokens=8, do_sample=True, temperature=1.5, top_p=1.0)
    torch.manual_seed(3)
    pool = generate_ids(eng.model, eng.tokenizer, [contexts[2]] * 4 + [contexts[5]] * 4, ["houlsby"] * 4 + [None] * 4,
                        **sampled)
    torch.manual_seed(3)
    got = generate_ids(eng.model, eng.tokenizer, [contexts[2], contexts[5]], ["houlsby", None], candidates=4, **sampled)
    for row, (context, route) in enumerate([(contexts[2], "houlsby"), (contexts[5], None)]):
        cands = pool[4 * row: 4 * row + 4]
        keys = [mean_logprob(eng.model, context, c, route, eng.tokenizer.eos_token_id) for c in cands]
        assert got[row] == cands[max(range(4), key=lambda i: keys[i])]


def test_a_ranked_turn_takes_a_row_per_candidate_within_max_batch(engine):
    eng, contexts = engine
    eng.max_batch = 6
    ranked = [Request(contexts[i], None, dict(max_new_tokens=6, do_sample=True, candidates=4), seed=i) for i in range(3)]
    solo = [eng.generate(r) for r in ranked]
    widest = []
    original = eng._step

    def step():
        widest.append(len(eng._batch.rows))
        original()

    eng._step = step
    assert [g.result(60) for g in [eng.submit(r) for r in ranked]] == solo
    assert max(widest) == 4  # two ranked turns (8 rows) never share a batch of 6; each waits its turn, in order
    eng.max_batch = 2
    assert eng.generate(ranked[0]) == solo[0]  # a turn wider than the batch runs alone


def test_a_candidate_of_a_lower_misfit_wins_over_any_likelier_one_of_a_higher(engine):
    eng, contexts = engine
    sampled = dict(max_new_tokens=8, do_sample=True, temperature=1.5, top_p=1.0, candidates=5)
    best = eng.generate(Request(contexts[0], "lora", sampled, seed=40))
    keys = {}
    for i in range(5):
        c = eng.generate(Request(contexts[0], "lora", dict(sampled, candidates=1), seed=40 + i))
        keys[tuple(c)] = mean_logprob(eng.model, contexts[0], c, "lora", eng.tokenizer.eos_token_id)
    assert len(keys) >= 3, "the test needs three different candidates"
    second = eng.generate(Request(contexts[0], "lora", sampled, seed=40, misfit=lambda ids: int(ids == best)))
    assert second != best and tuple(second) == max((c for c in keys if list(c) != best), key=keys.get)
    graded = eng.generate(Request(contexts[0], "lora", sampled, seed=40,
                                  misfit=lambda ids: 2 if ids == best else 1 if ids == second else 0))
    assert tuple(graded) == max((c for c in keys if list(c) not in (best, second)), key=keys.get)
    assert eng.generate(Request(contexts[0], "lora", sampled, seed=40, misfit=lambda ids: 1)) == best


@pytest.mark.parametrize("top_p", [0.3, 0.9, 0.999])
@pytest.mark.parametrize("scale", [0.2, 1.0, 8.0])  # flat (the nucleus outgrows the top 64: the full sort), to peaked
@pytest.mark.parametrize("k, wide_k", [(64, 1024), (4, 64)])  # the second reaches every tier in one batch
def test_top_p_keeps_the_tokens_transformers_keeps(top_p, scale, k, wide_k):
    from transformers import TopPLogitsWarper

    from bot.generation import TopP

    scores = torch.randn(12, 2048, generator=torch.Generator().manual_seed(int(10 * scale))) * scale
    scores[:, ::7] = -float("inf")  # banned tokens, as the n-gram bans leave them
    ids = torch.zeros(12, 1, dtype=torch.long)
    assert torch.equal(TopP(top_p, k, wide_k)(ids, scores.clone()), TopPLogitsWarper(top_p)(ids, scores.clone()))


def test_close_ends_running_and_waiting_turns_and_refuses_new_ones(engine):
    eng, contexts = engine
    running = eng.submit(Request(contexts[3], "lora", dict(max_new_tokens=200)))
    while not running.tokens:
        time.sleep(0.001)
    with eng.paused():
        waiting = eng.submit(Request(contexts[0], None, dict(GREEDY)))
        closing = threading.Thread(target=eng.close)
        closing.start()
    closing.join(30)
    assert not eng._thread.is_alive()
    for generation in (running, waiting):
        with pytest.raises(RuntimeError, match="engine is closed"):
            generation.result(5)
    with pytest.raises(RuntimeError, match="engine is closed"):
        eng.submit(Request(contexts[0], None, dict(GREEDY)))
