"""The OpenAI-compatible API (ui/openai_api.py): FastAPI's TestClient for the details, and the official
``openai`` client over HTTP against ``ui.app.launch``'s server (the web UI's host and port)."""
from __future__ import annotations

import json
import os
import shutil
import socket
import threading

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
pytest.importorskip("gradio")
openai = pytest.importorskip("openai")
from fastapi.testclient import TestClient  # noqa: E402

KEY = "test-key-0123456789"
HELLO = "i feel sad today"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def api_bot(tiny_dir, tiny_skills_dir, tmp_path_factory):
    """A private copy of the toy skills 'alpha' and 'beta' on the tiny backbone, shared by this module."""
    from bot import AdapterBot

    root = tmp_path_factory.mktemp("openai") / "skills"
    shutil.copytree(tiny_skills_dir, root)
    return AdapterBot.from_pretrained(tiny_dir, root)


@pytest.fixture(scope="module")
def http(api_bot):
    """A TestClient over the API alone, without a key."""
    from ui.openai_api import openai_app

    with TestClient(openai_app(api_bot)) as c:
        yield c


@pytest.fixture(scope="module")
def server(api_bot):
    """The web UI and the API on one port, with an API key."""
    from ui.app import launch

    demo = launch(api_bot, port=free_port(), api_key=KEY, prevent_thread_lock=True, quiet=True)
    yield demo
    demo.close()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.local_url.rstrip("/") + "/v1", api_key=KEY, max_retries=0, timeout=120)


def post(http, **body):
    return http.post("/v1/chat/completions", json=body)


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def error(response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    return body["error"]


def sse(response) -> list:
    """The data of every server-sent event ([DONE] kept as the string)."""
    events = [line[len("data: "):] for line in response.text.split("\n\n") if line.startswith("data: ")]
    return [e if e == "[DONE]" else json.loads(e) for e in events]


# ---- the openai client over HTTP ------------------------------------------------------------


def test_models_over_http(client):
    assert [m.id for m in client.models.list()] == ["adapterbot", "adapterbot:alpha", "adapterbot:beta", "adapterbot:bare"]
    assert client.models.retrieve("adapterbot:beta").id == "adapterbot:beta"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("adapterbot:gamma")


def test_completion_over_http_is_the_bots_reply(client, api_bot):
    expected = api_bot.respond([HELLO], skill="auto", do_sample=False)
    r = client.chat.completions.create(model="adapterbot", messages=[user(HELLO)], temperature=0)
    assert r.object == "chat.completion" and r.model == "adapterbot" and r.id.startswith("chatcmpl-")
    choice = r.choices[0]
    assert choice.index == 0 and choice.message.role == "assistant" and choice.finish_reason in ("stop", "length")
    assert choice.message.content == expected.text
    ext = r.model_extra["adapterbot"]
    assert ext["skill"] == expected.skill and ext["confidence"] == pytest.approx(expected.confidence)
    assert ext["scores"] == pytest.approx(expected.scores) and ext["knowledge"] == expected.knowledge
    assert ext["knowledge_used"] == expected.knowledge_used and ext["ignored_messages"] == 0
    tok = api_bot.tokenizer
    assert r.usage.completion_tokens == len(tok(expected.text, add_special_tokens=False)["input_ids"])
    assert r.usage.prompt_tokens == len(tok(HELLO, add_special_tokens=False)["input_ids"]) + 1
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_stream_over_http_joins_to_the_reply(client):
    messages = [user("my printer will not work")]
    whole = client.chat.completions.create(model="adapterbot", messages=messages, temperature=0)
    chunks = list(client.chat.completions.create(model="adapterbot", messages=messages, temperature=0, stream=True,
                                                 stream_options={"include_usage": True}))
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    first, usage = chunks[0], chunks[-1]
    assert first.choices[0].delta.role == "assistant"
    assert first.model_extra["adapterbot"] == whole.model_extra["adapterbot"]  # the extension rides on the first chunk
    assert not usage.choices and usage.usage.model_dump() == whole.usage.model_dump()
    body = [c for c in chunks if c.choices]
    assert body[-1].choices[0].finish_reason == whole.choices[0].finish_reason
    assert all(c.choices[0].finish_reason is None for c in body[:-1])
    assert "".join(c.choices[0].delta.content or "" for c in body) == whole.choices[0].message.content


@pytest.mark.parametrize("model, skill", [("adapterbot:alpha", "alpha"), ("adapterbot:beta", "beta"), ("adapterbot:bare", None)])
def test_model_name_forces_the_route(client, api_bot, model, skill):
    history = ["hello how are you today", "i am fine thanks", "my computer will not turn on"]
    expected = api_bot.respond(history, skill=skill, seed=5)  # the bare backbone samples (and ranks) by default
    messages = [user(history[0]), {"role": "assistant", "content": history[1]}, user(history[2])]
    r = client.chat.completions.create(model=model, messages=messages, seed=5)
    assert r.choices[0].message.content == expected.text
    ext = r.model_extra["adapterbot"]
    assert ext["skill"] == skill and ext["confidence"] is None and ext["scores"] == {}


def test_wrong_or_missing_key_is_refused(server, client):
    wrong = openai.OpenAI(base_url=client.base_url, api_key="not-the-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e:
        wrong.chat.completions.create(model="adapterbot", messages=[user(HELLO)])
    assert e.value.status_code == 401 and e.value.code == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()
    import httpx

    bare = httpx.get(server.local_url.rstrip("/") + "/v1/models", timeout=30)
    assert bare.status_code == 401 and bare.json()["error"]["code"] == "missing_api_key"
    assert bare.headers["www-authenticate"] == "Bearer"


def test_errors_over_http_name_the_field(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="adapterbot:gamma", messages=[user(HELLO)])
    assert e.value.param == "model" and e.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="adapterbot", messages=[user(HELLO)], temperature=2.5)
    assert e.value.param == "temperature"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="adapterbot", messages=[user(HELLO)], stream=True, max_tokens=0)
    assert e.value.param == "max_tokens"


def test_web_ui_shares_the_port(server):
    """The page and Gradio's /respond still answer beside /v1, without the API key."""
    import gradio_client
    import httpx

    assert httpx.get(server.local_url, timeout=30).status_code == 200
    turn = gradio_client.Client(server.local_url, verbose=False).predict(HELLO, api_name="/respond")
    assert isinstance(turn["reply"], str)


def test_concurrent_requests_each_get_their_own_reply(client, api_bot):
    # Forced routes: the manager's features (bot/features.py) hook the shared backbone's blocks, and
    # routing one turn while the engine decodes others is not safe yet (reported on issue 16).
    cases = [("adapterbot:alpha", "my printer will not print"), ("adapterbot:beta", "i feel lonely lately"),
             ("adapterbot:bare", "do you like music"), ("adapterbot:alpha", "my router will not connect")]
    from ui.openai_api import parse_model

    expected = {t: api_bot.respond([t], skill=parse_model(m, api_bot), do_sample=False).text for m, t in cases}
    got: dict[str, str] = {}

    def ask(model, text):
        try:
            stream = client.chat.completions.create(model=model, messages=[user(text)], temperature=0, stream=True)
            got[text] = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        except Exception as e:  # reported by the assertion below
            got[text] = f"{type(e).__name__}: {e}"

    threads = [threading.Thread(target=ask, args=case) for case in cases]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert got == expected


# ---- details through the TestClient ---------------------------------------------------------------


def test_models(http, api_bot):
    r = http.get("/v1/models")
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["adapterbot", "adapterbot:alpha", "adapterbot:beta", "adapterbot:bare"]
    assert all(m["object"] == "model" and m["owned_by"] == "adapterbot" and isinstance(m["created"], int) for m in body["data"])
    assert error(http.get("/v1/models/adapterbot:nope"), 404)["param"] == "model"


def test_system_messages_are_ignored_and_counted(http, api_bot):
    expected = api_bot.respond(["hello how are you today", "i am fine", HELLO], skill="beta")
    r = post(http, model="adapterbot:beta", messages=[
        {"role": "system", "content": "You are a helpful assistant."}, user("hello how are you today"),
        {"role": "assistant", "content": [{"type": "text", "text": "i am "}, {"type": "text", "text": "fine"}]},
        {"role": "developer", "content": "Be brief."}, user(HELLO)])
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == expected.text
    assert r.json()["adapterbot"]["ignored_messages"] == 2


@pytest.mark.parametrize("body, status, param", [
    ({"model": "adapterbot:gamma"}, 404, "model"),
    ({"model": "gpt-4o"}, 404, "model"),
    ({"model": None}, 400, "model"),
    ({"messages": []}, 400, "messages"),
    ({"messages": None}, 400, "messages"),
    ({"messages": "hello"}, 400, "messages"),
    ({"messages": [user("x" * 4001)]}, 400, "messages[0].content"),
    ({"messages": [user("hi"), {"role": "assistant", "content": "y" * 4001}, user("hi")]}, 400, "messages[1].content"),
    ({"messages": [user("   ")]}, 400, "messages[0].content"),
    ({"messages": [user("hi"), {"role": "assistant", "content": "hello"}]}, 400, "messages[1].role"),
    ({"messages": [{"role": "system", "content": "be nice"}]}, 400, "messages"),
    ({"messages": [{"role": "tool", "content": "42"}, user("hi")]}, 400, "messages[0].role"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, 400, "messages[0].content[0]"),
    ({"messages": ["hi"]}, 400, "messages[0]"),
    ({"messages": [user("hi")] * 202}, 400, "messages"),
    ({"temperature": -0.1}, 400, "temperature"),
    ({"temperature": 2.1}, 400, "temperature"),
    ({"temperature": "hot"}, 400, "temperature"),
    ({"top_p": 0}, 400, "top_p"),
    ({"top_p": 1.5}, 400, "top_p"),
    ({"max_tokens": 0}, 400, "max_tokens"),
    ({"max_tokens": 100000}, 400, "max_tokens"),
    ({"max_tokens": 2.5}, 400, "max_tokens"),
    ({"max_completion_tokens": -1}, 400, "max_completion_tokens"),
    ({"n": 2}, 400, "n"),
    ({"stop": ""}, 400, "stop"),
    ({"stop": ["a", "b", "c", "d", "e"]}, 400, "stop"),
    ({"seed": "x"}, 400, "seed"),
    ({"stream": "yes"}, 400, "stream"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, 400, "tools"),
    ({"presence_penalty": 0.5}, 400, "presence_penalty"),
    ({"repetition_penalty": 0}, 400, "repetition_penalty"),
])
def test_bad_requests_name_the_field(http, body, status, param):
    full = {"model": "adapterbot", "messages": [user(HELLO)], **body}
    err = error(http.post("/v1/chat/completions", json=full), status)
    assert err["param"] == param, err
    assert err["type"] == "invalid_request_error" and err["message"]
    if param.startswith("messages") and "4001" in json.dumps(body):
        assert "4,000" in err["message"]  # the web UI's own limit (ui.chat.MAX_MESSAGE_CHARS)


def test_not_json_and_not_an_object(http):
    assert error(http.post("/v1/chat/completions", content=b"{nope", headers={"content-type": "application/json"}),
                 400)["code"] == "invalid_json"
    error(http.post("/v1/chat/completions", json=[1, 2]), 400)


def test_the_limit_is_the_web_uis():
    from ui import chat, openai_api

    assert openai_api.MAX_MESSAGE_CHARS is chat.MAX_MESSAGE_CHARS and openai_api.MAX_NEW_TOKENS is chat.MAX_NEW_TOKENS


def test_key_on_the_test_client(api_bot):
    from ui.openai_api import openai_app

    with TestClient(openai_app(api_bot, api_key=KEY)) as c:
        body = {"model": "adapterbot", "messages": [user(HELLO)], "max_tokens": 2}
        assert error(c.post("/v1/chat/completions", json=body), 401)["code"] == "missing_api_key"
        assert error(c.post("/v1/chat/completions", json=body, headers={"Authorization": "Bearer nope"}), 401)["code"] == "invalid_api_key"
        assert error(c.post("/v1/chat/completions", json=body, headers={"Authorization": f"Basic {KEY}"}), 401)
        assert c.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200


def test_max_tokens_and_stop(http, api_bot):
    r = post(http, model="adapterbot:alpha", messages=[user("my router will not connect")], max_tokens=3).json()
    short = api_bot.respond(["my router will not connect"], skill="alpha", max_new_tokens=3).text
    assert r["choices"][0]["message"]["content"] == short  # usage re-encodes the text, so it may differ from 3 by a little
    assert r["usage"]["completion_tokens"] == len(api_bot.tokenizer(short, add_special_tokens=False)["input_ids"])
    full = api_bot.respond(["my router will not connect"], skill="alpha").text
    words = full.split()
    assert len(words) >= 3, full
    stop = words[2]
    cut = full[:full.find(stop)]
    for stream in (False, True):
        r = post(http, model="adapterbot:alpha", messages=[user("my router will not connect")], stop=[stop, "zzzz"], stream=stream)
        if stream:
            events = sse(r)
            assert events[-1] == "[DONE]"
            chunks = events[:-1]
            assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == cut
            assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
        else:
            assert r.json()["choices"][0]["message"]["content"] == cut
            assert r.json()["choices"][0]["finish_reason"] == "stop"


def test_seed_repeats_a_sampled_reply(http):
    body = {"model": "adapterbot:bare", "messages": [user("do you like music")], "temperature": 1.5, "top_p": 1.0,
            "seed": 1234, "max_tokens": 12}
    first = post(http, **body).json()["choices"][0]["message"]["content"]
    assert post(http, **body).json()["choices"][0]["message"]["content"] == first
    events = sse(post(http, **body, stream=True))
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in events[:-1]) == first


def test_stream_events_are_openai_chunks(http):
    r = post(http, model="adapterbot", messages=[user(HELLO)], temperature=0, stream=True)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse(r)
    assert events[-1] == "[DONE]"
    first = events[0]
    assert first["choices"][0]["delta"]["role"] == "assistant" and "adapterbot" in first
    assert all("adapterbot" not in e for e in events[1:-1])


# ---- the streaming rules, without a model ---------------------------------------------------------


def test_sentence_safe_holds_back_what_a_cut_could_take():
    from ui.openai_api import sentence_safe

    assert sentence_safe("Hello there. How are") == "Hello there."
    assert sentence_safe("Hello there.") == ""  # an end at the edge may be "3." of "3.5"
    assert sentence_safe("It costs 3.") == ""
    assert sentence_safe("no sentence end here yet") == ""
    assert sentence_safe("Wow! Really? ok then") == "Wow! Really?"
    assert sentence_safe('He said "go." and left') == 'He said "go."'


def test_deltas_join_to_the_final_reply():
    from ui.openai_api import Deltas

    # the reply ran out of tokens: the final is cut back to its last sentence
    d = Deltas([])
    sent = [d.feed(t, False) for t in ["Hello", "Hello there.", "Hello there. How", "Hello there. How are"]]
    sent.append(d.feed("Hello there.", True))
    assert "".join(sent) == "Hello there."
    # a stop string split across snapshots
    d = Deltas(["STOP"])
    sent = [d.feed(t, False) for t in ["One. Two. ST", "One. Two. STO", "One. Two. STOP and. more"]]
    assert "".join(sent) == "One. Two. " and d.stopped and d.done
    assert d.feed("One. Two. STOP and. more words.", True) == ""
    # an earlier partial stop beats a later full one
    d = Deltas(["abc", "b"])
    assert "".join([d.feed("x. ab", False), d.feed("x. abc", True)]) == "x. "


def test_a_stream_s_finished_reply_comes_once_as_final_even_when_cut_back(caplog):
    import asyncio
    import types

    from bot.chatbot import Reply
    from ui.openai_api import Deltas, _pump

    class CutBack:  # a bot whose reply ran out of tokens: the finished reply is cut back to its last sentence
        def respond(self, history, skill=None, seed=None, **decoding):
            return Reply("Hello there.", None)

        def stream(self, history, skill=None, seed=None, **decoding):
            yield from (Reply(t, None) for t in ("Hello", "Hello there. How", "Hello there. How are", "Hello there."))

    async def collect():
        turn = types.SimpleNamespace(history=["hi"], skill=None, decoding={}, seed=None)
        return [(reply.text, final) async for reply, final in _pump(CutBack(), turn)]

    got = asyncio.run(collect())
    assert got == [("Hello", False), ("Hello there. How", False), ("Hello there. How are", False), ("Hello there.", True)]
    deltas = Deltas([])
    assert "".join(deltas.feed(text, final) for text, final in got) == "Hello there."
    assert "does not begin" not in caplog.text


def test_cli_passes_the_key(monkeypatch):
    import bot.cli as cli
    import ui.app

    seen = {}
    monkeypatch.setattr(cli, "_load_bot", lambda args: "bot")
    monkeypatch.setattr(ui.app, "launch", lambda bot, **kw: seen.update(kw))
    monkeypatch.delenv("ADAPTERBOT_API_KEY", raising=False)
    port = str(free_port())
    assert cli.main(["chat", "--port", port, "--api-key", "k1"]) == 0 and seen["api_key"] == "k1"
    monkeypatch.setenv("ADAPTERBOT_API_KEY", "k2")
    assert cli.main(["chat", "--port", port]) == 0 and seen["api_key"] == "k2"
    monkeypatch.delenv("ADAPTERBOT_API_KEY")
    assert cli.main(["chat", "--port", port]) == 0 and seen["api_key"] is None


# ---- the event loop and the seed, with stand-ins for the bot -----------------------------------------


class Gated:
    """The bot, with respond and stream held until ``gate`` opens."""

    def __init__(self, bot, gate: threading.Event) -> None:
        self._bot, self.gate = bot, gate

    def __getattr__(self, name):
        return getattr(self._bot, name)

    def respond(self, history, skill="auto", *, seed=None, **decoding):
        assert self.gate.wait(20)
        return self._bot.respond(history, skill=skill, seed=seed, **decoding)

    def stream(self, history, skill="auto", *, seed=None, **decoding):
        assert self.gate.wait(20)
        yield from self._bot.stream(history, skill=skill, seed=seed, **decoding)


@pytest.mark.parametrize("stream", [False, True])
def test_a_turn_in_progress_does_not_block_the_server(api_bot, stream):
    from ui.openai_api import openai_app

    gate = threading.Event()
    done = {}
    with TestClient(openai_app(Gated(api_bot, gate))) as c:
        def turn():
            done["r"] = c.post("/v1/chat/completions", json={"model": "adapterbot:alpha", "messages": [user(HELLO)],
                                                               "stream": stream})

        waiting = threading.Thread(target=turn)
        waiting.start()
        try:
            assert c.get("/v1/models").status_code == 200  # answered while the turn waits in its thread
            assert waiting.is_alive()
        finally:
            gate.set()
            waiting.join(60)
    assert done["r"].status_code == 200


class Unseeded:
    """A bot whose respond takes no seed (before the engine): its replies draw from torch's global generator."""

    def __init__(self, bot) -> None:
        self._bot = bot

    def __getattr__(self, name):
        return getattr(self._bot, name)

    def respond(self, history, skill="auto", **decoding):
        import torch

        from bot.chatbot import Reply

        return Reply(f"{torch.rand(1).item():.6f}", skill if skill != "auto" else None)


def test_seed_without_an_engine_seed_sets_torchs(api_bot):
    from ui.openai_api import openai_app, takes_seed

    bot = Unseeded(api_bot)
    assert takes_seed(api_bot) and not takes_seed(bot)
    with TestClient(openai_app(bot)) as c:
        def text(seed):
            body = {"model": "adapterbot:alpha", "messages": [user(HELLO)], "seed": seed, "temperature": 1}
            return c.post("/v1/chat/completions", json=body).json()["choices"][0]["message"]["content"]

        assert text(5) == text(5) != text(6)
