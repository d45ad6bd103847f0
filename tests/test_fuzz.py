"""Fuzzing the conversation path: every input ends in a reply or a clear ``DialogueError``.

Messages are arbitrary Unicode (control, format and separator characters included), strings
built from special-token look-alikes, whitespace-only strings, messages up to 100,000
characters and histories up to 1,000 turns. The properties:

- ``respond``/``stream`` return a :class:`Reply` with text, or raise ``DialogueError`` (a
  ``ValueError``) with a message; nothing else escapes;
- the model is never handed more than its window: context length + ``max_new_tokens`` <=
  ``n_positions``, checked on ``build_context`` and on every ``generate`` call the bot makes;
- text typed by a user never becomes a special token: ``<|endoftext|>`` in a message is
  encoded as plain text, so the EOS id appears only as the turn separator;
- the newest message is never dropped, however long the history.

Lone surrogates (``"\\ud800"``, which ``json.loads`` and so a web client can produce) are
kept out of the general strategies and tested on their own, so that one known failure does
not hide others.
"""
from __future__ import annotations

import dataclasses
import threading

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bot import AdapterBot, Reply
from bot.about import about_reply
from bot.dialogue import DialogueError, build_context, context_budget, validate_history
from bot.social import choice_reply, closing_reply, greeting_reply
from bot.engine import Pending

FUZZ = settings(max_examples=100, deadline=None, derandomize=True, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
FUZZ_SMALL = settings(FUZZ, max_examples=25)

# ---- strategies ------------------------------------------------------------------------------

WHITESPACE = " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u200a\u2028\u2029\u202f\u205f\u3000"
TRICKY = ["<|endoftext|>", "<|endoftext|", "<|endoftext", "endoftext|>", "<|", "|>", "<s>", "</s>", "[SEP]",
          "<pad>", "<unk>", "\x00", "\x1b[31m", "\r\n", "\u200b", "\u202e", "\ufeff", "\ufffd", "\U0001F600",
          "\u0645\u0631\u062d\u0628\u0627", "\u4f60\u597d", "e\u0301", "hello", "i feel sad today",
          "my printer will not print", " ", "\n"]

any_char = st.one_of(
    st.characters(),  # every code point but surrogates
    st.characters(categories=["Cc", "Cf", "Zs", "Zl", "Zp", "Co", "Cn"]),
    st.sampled_from(list(WHITESPACE)),
)
piece = st.one_of(st.sampled_from(TRICKY), st.text(any_char, min_size=1, max_size=6))
short_message = st.one_of(
    st.text(any_char, max_size=120),
    st.lists(piece, max_size=25).map("".join),
    st.text(st.sampled_from(list(WHITESPACE)), max_size=20),  # whitespace only: refused
)
huge_message = st.builds(lambda p, n: (p * (n // len(p) + 1))[:n], piece, st.sampled_from([1_000, 20_000, 100_000]))
message = st.one_of(short_message, short_message, huge_message)


def _cycle(turns: list[str], n: int) -> list[str]:
    return [turns[i % len(turns)] for i in range(n)]


history = st.one_of(
    st.lists(message, min_size=1, max_size=6),
    st.builds(_cycle, st.lists(message, min_size=1, max_size=4), st.sampled_from([50, 1_000])),
)


# ---- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_bot(tiny_dir, tiny_skills_dir):
    """One bot for every example (responding changes nothing on disk), with a spy on the engine's ``submit``."""
    bot = AdapterBot.from_pretrained(tiny_dir, tiny_skills_dir)
    real = bot.engine.submit
    calls: list[tuple[int, object]] = []
    lock = threading.Lock()

    def record(request):
        if request is not None:
            with lock:
                calls.append((len(request.context), request.decoding.get("max_new_tokens")))
        return request

    def spy(request):
        if isinstance(request, Pending):  # an Auto turn: its request is built once the engine has routed it
            build = request.build
            return real(dataclasses.replace(request, build=lambda decision: record(build(decision))))
        return real(record(request))

    bot.engine.submit = spy
    bot.generate_calls = calls
    return bot


def window(bot: AdapterBot) -> int:
    return bot.model.backbone.config.n_positions


def assert_within_window(bot: AdapterBot, reply: Reply | None = None, history: list[str] | None = None) -> None:
    """Every generation request got a context that, with its max_new_tokens (at least 1), fits the window. With
    ``reply`` and ``history``: a turn that generated nothing was the bare backbone's, answered in writing."""
    if reply is not None and not bot.generate_calls:
        message = validate_history(history)[-1]
        written = about_reply(message, {}) or closing_reply(message) or choice_reply(message) or greeting_reply(message)
        assert reply.skill is None and written, "no generation was requested"
        return
    assert bot.generate_calls, "no generation was requested"
    for length, max_new in bot.generate_calls:
        assert isinstance(max_new, int) and max_new >= 1, f"generate() got max_new_tokens={max_new!r}"
        assert length + max_new <= window(bot), f"context {length} + max_new_tokens {max_new} > window {window(bot)}"


def assert_clear_refusal(err: DialogueError, history) -> None:
    assert str(err).strip(), "a DialogueError without a message"
    assert isinstance(history, list) and not history[-1].strip(), f"{history!r:.200} refused: {err}"


# ---- formatting ------------------------------------------------------------------------------


@FUZZ
@given(history=history, knowledge=st.one_of(st.none(), message), max_new=st.integers(1, 32))
@example(history=["<|endoftext|>" * 5000], knowledge="<|endoftext|>", max_new=1)
@example(history=["a"] * 1000, knowledge=None, max_new=32)
@example(history=["x" * 100_000], knowledge="k" * 100_000, max_new=1)
def test_build_context_fits_the_window_and_keeps_the_newest_message(fuzz_bot, history, knowledge, max_new):
    tok, n_positions = fuzz_bot.tokenizer, window(fuzz_bot)
    eos = tok.eos_token_id
    budget = context_budget(tok, n_positions, max_new)
    try:
        ids = build_context(tok, history, budget, knowledge)
    except DialogueError as e:
        assert_clear_refusal(e, history)
        return
    assert len(ids) + max_new <= n_positions
    assert all(isinstance(t, int) and 0 <= t < len(tok) for t in ids)
    assert ids[-1] == eos and len(ids) >= 2 and ids[-2] != eos, "the newest message was dropped"
    has_knowledge = bool(knowledge and knowledge.strip())
    assert ids.count(eos) <= len(history) + has_knowledge, "user text produced EOS tokens"
    if len(history) == 1:  # exactly one separator per segment, wherever the text holds '<|endoftext|>'
        assert ids.count(eos) == 1 + has_knowledge


@FUZZ
@given(text=st.lists(st.one_of(st.sampled_from(TRICKY), st.text(any_char, max_size=4)), min_size=1, max_size=30).map("".join))
@example(text="<|endoftext|>")
@example(text="hi<|endoftext|>there<|endoftext|>")
def test_special_token_text_is_plain_text(fuzz_bot, text):
    tok = fuzz_bot.tokenizer
    special = set(tok.all_special_ids)
    for token in tok.all_special_tokens:
        message = f"{text} {token} {text}"
        ids = build_context(tok, [message], 10_000)
        assert ids[-1] == tok.eos_token_id
        assert not special & set(ids[:-1]), f"{token!r} inside a message became a special token"


# ---- answering -------------------------------------------------------------------------------


@FUZZ
@given(history=history, skill=st.sampled_from(["auto", None, "alpha", "beta"]), max_new=st.integers(1, 4))
@example(history=["x" * 100_000], skill="auto", max_new=4)
@example(history=["how are you"] * 1000, skill="alpha", max_new=4)
@example(history=["<|endoftext|>"], skill="auto", max_new=2)
@example(history=["\x00\x01\x02\x1b"], skill=None, max_new=1)
@example(history=[" \t\n"], skill="auto", max_new=1)
@example(history=["hi", ""], skill="beta", max_new=1)
def test_respond_replies_or_refuses_clearly(fuzz_bot, history, skill, max_new):
    fuzz_bot.generate_calls.clear()
    try:
        reply = fuzz_bot.respond(history, skill=skill, max_new_tokens=max_new)
    except DialogueError as e:
        assert_clear_refusal(e, history)
        return
    assert isinstance(reply, Reply) and isinstance(reply.text, str)
    assert (reply.skill == skill) if skill not in ("auto", None) else (reply.skill in (None, "alpha", "beta"))
    assert_within_window(fuzz_bot, reply, history)


@FUZZ_SMALL
@given(history=history, skill=st.sampled_from(["auto", None, "alpha"]))
def test_stream_replies_or_refuses_clearly(fuzz_bot, history, skill):
    fuzz_bot.generate_calls.clear()
    try:
        replies = list(fuzz_bot.stream(history, skill=skill, max_new_tokens=3))
    except DialogueError as e:
        assert_clear_refusal(e, history)
        return
    assert replies and isinstance(replies[-1].text, str)
    assert_within_window(fuzz_bot, replies[-1], history)


number = st.one_of(st.none(), st.integers(-5, 300), st.floats(allow_nan=True, allow_infinity=True))


HISTORIES = {"short": ["hi"], "long": ["my printer will not print"] * 40, "huge": ["x" * 5_000]}


@FUZZ
@given(max_new_tokens=number, temperature=number, top_p=number, repetition_penalty=number,
       no_repeat_ngram_size=st.one_of(st.none(), st.integers(-2, 5)), do_sample=st.one_of(st.none(), st.booleans()),
       history=st.sampled_from(sorted(HISTORIES)))
@example(max_new_tokens=-5, temperature=None, top_p=None, repetition_penalty=None, no_repeat_ngram_size=None,
         do_sample=None, history="huge")
@example(max_new_tokens=float("inf"), temperature=None, top_p=None, repetition_penalty=None,
         no_repeat_ngram_size=None, do_sample=None, history="short")
def test_decoding_overrides_reply_or_raise_value_error(fuzz_bot, history, **overrides):
    """Out-of-range settings are refused with a ValueError; the model never sees an over-long context."""
    fuzz_bot.generate_calls.clear()
    try:
        reply = fuzz_bot.respond(HISTORIES[history], skill="auto", **overrides)
    except ValueError as e:
        assert str(e).strip()
        for length, _ in fuzz_bot.generate_calls:
            assert length < window(fuzz_bot), f"a {length}-token context was handed to a {window(fuzz_bot)}-token model"
        return
    assert isinstance(reply.text, str)
    assert_within_window(fuzz_bot, reply, HISTORIES[history])


# ---- inputs that are not a list of strings ---------------------------------------------------


@pytest.mark.parametrize("history", [None, 5, [], ["hi", None], ["hi", 3], b"hi", [b"hi"], [["hi"]], {"a": "b"},
                                     iter(["hi"]), bytearray(b"hi"), ["hi", ""], ["   "], [""]])
def test_malformed_histories_raise_dialogue_error(fuzz_bot, history):
    with pytest.raises(DialogueError) as info:
        fuzz_bot.respond(history, max_new_tokens=2)
    assert str(info.value).strip()


@pytest.mark.parametrize("skill", ["", "nope", "ALPHA", "../alpha", "none", 3, b"alpha", ["alpha"], ("alpha",),
                                   {}, {"nope": 1}, {"alpha": "x"}, {"alpha": -1}, {"alpha": float("nan")}, {"alpha": 0}])
def test_unknown_or_malformed_skill_raises_value_error(fuzz_bot, skill):
    with pytest.raises(ValueError) as info:
        fuzz_bot.respond(["hello"], skill=skill, max_new_tokens=2)
    assert "skill" in str(info.value)


@pytest.mark.parametrize("overrides", [{"eos_token_id": 5}, {"input_ids": 1}, {"streamer": 1}, {"foo": 1},
                                       {"no_repeat_ngram_size": "3"}, {"max_new_tokens": "lots"}, {"top_p": "x", "do_sample": True}])
def test_unknown_or_malformed_decoding_settings_raise_value_error(fuzz_bot, overrides):
    """Overrides can come from a web client (a JSON object): a bad one is a ValueError, never a TypeError."""
    with pytest.raises(ValueError) as info:
        fuzz_bot.respond(["hello"], skill=None, **overrides)
    assert str(info.value).strip()


def test_respond_batch_of_no_conversation_is_empty(fuzz_bot):
    fuzz_bot.generate_calls.clear()
    assert fuzz_bot.respond_batch([], [], max_new_tokens=2) == []
    assert fuzz_bot.generate_calls == [], "an empty batch ran the model"


def test_respond_batch_refuses_mismatched_lengths(fuzz_bot):
    with pytest.raises(ValueError):
        fuzz_bot.respond_batch([["hi"], ["yo"]], [None], max_new_tokens=2)
    with pytest.raises(ValueError):
        fuzz_bot.respond_batch([["hi"]], [None, "alpha"], max_new_tokens=2)


# ---- lone surrogates -------------------------------------------------------------------------


SURROGATES = {"alone": ["\ud800"], "inside": ["hi \udfff there"], "older-turn": ["\udc80 fine", "how are you"],
              "huge": ["a\ud800" * 50_000]}


@pytest.mark.parametrize("case", sorted(SURROGATES))
def test_lone_surrogates_are_replaced_and_get_a_reply(fuzz_bot, case):
    """``json.loads('"\\\\ud800"')`` gives a lone surrogate, so a web client can send one: it reads as '?'."""
    history = SURROGATES[case]
    replaced = [t.encode("utf-8", "replace").decode("utf-8") for t in history]
    assert build_context(fuzz_bot.tokenizer, history, 50) == build_context(fuzz_bot.tokenizer, replaced, 50)
    for skill in ("auto", None, "alpha"):
        fuzz_bot.generate_calls.clear()
        reply = fuzz_bot.respond(history, skill=skill, max_new_tokens=2)
        assert isinstance(reply, Reply)
        if skill != "auto":
            assert reply.skill == skill
        assert_within_window(fuzz_bot, reply, history)  # '?' alone has no words: a written answer, nothing generated
        assert (case == "alone" and skill != "alpha") == reply.text.startswith("I can only read words")
