"""An OpenAI-compatible HTTP API over :class:`bot.AdapterBot`, served beside the web UI (docs/http_api.md).

Routes (:func:`openai_routes`; :func:`ui.app.launch` serves them on the web UI's host and port):

- ``POST /v1/chat/completions``: one turn, as a JSON ``chat.completion``, or with ``"stream": true``
  as server-sent events of ``chat.completion.chunk`` objects ending ``data: [DONE]``;
- ``GET /v1/models`` (and ``GET /v1/models/{model}``): ``adapterbot`` (the dialogue manager routes),
  ``adapterbot:SKILL`` (an installed skill, forced) and ``adapterbot:bare`` (the bare backbone).

What a request means to the bot:

- ``messages``: the conversation is the ``user`` and ``assistant`` contents, oldest first; the last
  must be the user's. ``system`` and ``developer`` messages are accepted and ignored (the backbone
  follows no instructions); the response counts them in ``adapterbot.ignored_messages``. Other roles
  (``tool``, ``function``) are refused. Every message is held to the web UI's limits
  (:data:`ui.chat.MAX_MESSAGE_CHARS` characters, :data:`ui.chat.MAX_HISTORY_TURNS` earlier turns).
- ``temperature``: 0 is greedy; above 0 samples at that temperature; absent, the answering skill's
  own setting. ``top_p`` (given alone, it turns sampling on), ``max_tokens`` (or
  ``max_completion_tokens``) -> ``max_new_tokens``, ``n`` (1 only), ``stop`` (a string or up to 4: the
  reply is cut before the first), ``seed`` and, as an extension, ``repetition_penalty``.
- ``seed``: passed to ``respond``/``stream`` when they take one (the engine's per-row generator:
  exact alone or batched). Otherwise torch's global seed is set just before the turn, under a lock
  shared by seeded API turns: a sampled reply then repeats unless another sampled turn (the web page's)
  runs at the same moment.

The response has OpenAI's fields plus ``adapterbot``: ``{skill, confidence, scores, knowledge,
knowledge_used, ignored_messages}`` (:func:`extension`); in a stream it rides on the first chunk,
which also carries the role. Streamed deltas join to exactly the non-streamed reply: a reply that
runs out of its token budget is cut back to its last full sentence (as everywhere in Adapter-Bot),
so text after the newest sentence end is held back until the reply goes on or ends, and text that
could begin a stop string waits until it is known not to.

Errors are OpenAI's: ``{"error": {"message", "type", "param", "code"}}`` with 400 (bad request,
``param`` naming the field), 401 (API key), 404 (unknown model, ``param: "model"``) or 500.
With an API key (``adapterbot chat --api-key KEY`` or ``$ADAPTERBOT_API_KEY``) every ``/v1`` route
wants ``Authorization: Bearer KEY`` (compared in constant time); the web page and its Gradio API are
not covered by the key.

The bot runs in worker threads, never on the event loop; a stream is pumped from ``bot.stream`` by
its own thread into an async generator.
"""
from __future__ import annotations

import asyncio
import contextlib
import hmac
import inspect
import json
import logging
import math
import threading
import time
import uuid
from typing import Any, AsyncIterator, Callable, Iterator

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.routing import BaseRoute

from bot.chatbot import AUTO, AdapterBot, Reply
from bot.dialogue import end_at_sentence
from bot.errors import one_line

from .chat import MAX_HISTORY_TURNS, MAX_MESSAGE_CHARS, MAX_NEW_TOKENS, decoding_defaults

log = logging.getLogger(__name__)

MODEL = "adapterbot"
EXTENSION = "adapterbot"  # the response's extension field
BARE = "bare"
API_KEY_ENV = "ADAPTERBOT_API_KEY"
MAX_STOPS = 4  # OpenAI's limit on stop strings
MAX_TEMPERATURE = 2.0
IGNORED_ROLES = ("system", "developer")
TURN_ROLES = ("user", "assistant")
UNSUPPORTED = {  # request fields the bot cannot honour: refused when set to anything but "off"
    "tools": "tool calls", "functions": "function calls", "logprobs": "log probabilities",
    "top_logprobs": "log probabilities", "logit_bias": "logit biases", "audio": "audio output",
    "prediction": "predicted outputs", "web_search_options": "web search",
}


# ---- errors ----------------------------------------------------------------------------------


class APIError(Exception):
    """A refusal, answered as OpenAI's error object with ``status``."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


def _bad(message: str, param: str | None, code: str | None = "invalid_value") -> APIError:
    return APIError(400, message, param, code)


SERVER_ERROR = APIError(500, "Generating the reply failed; the server log has the details. Please try again.",
                        code="server_error", kind="server_error")


# ---- models ------------------------------------------------------------------------------------


def model_names(bot: AdapterBot) -> list[str]:
    """``adapterbot``, ``adapterbot:SKILL`` for every loaded skill, ``adapterbot:bare``."""
    return [MODEL, *(f"{MODEL}:{s}" for s in bot.skills if s != BARE), f"{MODEL}:{BARE}"]


def parse_model(model: Any, bot: AdapterBot) -> str | None:
    """The ``skill`` argument of ``bot.respond`` for a model name; APIError (404) for an unknown one."""
    if model is None or model == "":
        raise _bad("You must provide a model parameter: " + ", ".join(model_names(bot)) + ".", "model", "missing_required_parameter")
    if not isinstance(model, str):
        raise _bad(f"model must be a string, got {type(model).__name__}.", "model", "invalid_type")
    if model == MODEL:
        return AUTO
    name = model[len(MODEL) + 1:] if model.startswith(MODEL + ":") else None
    if name == BARE:
        return None
    if name and name in bot.skills:
        return name
    raise APIError(404, f"The model {model!r} does not exist: use {', '.join(model_names(bot))}.", "model", "model_not_found")


def _model_card(name: str, created: int) -> dict:
    return {"id": name, "object": "model", "created": created, "owned_by": MODEL}


# ---- the request --------------------------------------------------------------------------------


def _number(body: dict, key: str, low: float, high: float, low_open: bool = False) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _bad(f"{key} must be a number, got {value!r}.", key, "invalid_type")
    if value < low or value > high or (low_open and value == low):
        span = f"{'(' if low_open else '['}{low:g}, {high:g}]"
        raise _bad(f"{key} must be in {span}, got {value}.", key)
    return float(value)


def _integer(body: dict, key: str, low: int, high: int | None = None) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f"{key} must be an integer, got {value!r}.", key, "invalid_type")
    if value < low or (high is not None and value > high):
        raise _bad(f"{key} must be {f'between {low} and {high}' if high is not None else f'at least {low}'}, got {value}.", key)
    return value


def _content(message: dict, i: int) -> str:
    """A message's text: a string, or a list of text parts (joined); other parts are refused."""
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise _bad(f"messages[{i}].content[{j}] is a {kind!r} part; only text parts are supported.",
                           f"messages[{i}].content[{j}]", "unsupported_content")
            texts.append(part["text"])
        return "".join(texts)
    raise _bad(f"messages[{i}].content must be a string or a list of text parts, got {type(content).__name__}.",
               f"messages[{i}].content", "invalid_type")


def parse_messages(messages: Any) -> tuple[list[str], int]:
    """``(history, ignored)``: the user and assistant contents, oldest first, and how many system or
    developer messages were left out. APIError naming the message at fault."""
    if not isinstance(messages, list) or not messages:
        what = "an empty list" if isinstance(messages, list) else "missing" if messages is None else type(messages).__name__
        raise _bad(f"messages must be a non-empty list of messages, got {what}.", "messages",
                   "missing_required_parameter" if messages is None else "invalid_value")
    history: list[str] = []
    ignored = 0
    last_role = None
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _bad(f"messages[{i}] must be an object with role and content, got {type(message).__name__}.",
                       f"messages[{i}]", "invalid_type")
        role = message.get("role")
        if role in IGNORED_ROLES:
            _content(message, i)  # still checked
            ignored += 1
            continue
        if role not in TURN_ROLES:
            raise _bad(f"messages[{i}].role {role!r} is not supported: use 'user' or 'assistant' "
                       "('system' and 'developer' messages are ignored).", f"messages[{i}].role")
        if role == "assistant" and message.get("tool_calls"):
            raise _bad(f"messages[{i}] has tool_calls; tool calls are not supported.", f"messages[{i}].tool_calls",
                       "unsupported_parameter")
        text = _content(message, i)
        if len(text) > MAX_MESSAGE_CHARS:
            raise _bad(f"messages[{i}].content has {len(text):,} characters, over the limit of {MAX_MESSAGE_CHARS:,}.",
                       f"messages[{i}].content", "string_above_max_length")
        history.append(text)
        last_role = (i, role)
    if last_role is None:
        raise _bad("messages holds no user message (system and developer messages are ignored).", "messages")
    i, role = last_role
    if role != "user" or i != len(messages) - 1:
        where = i if role != "user" else len(messages) - 1
        raise _bad(f"The last message must be the user's; messages[{where}] is {messages[where].get('role')!r}.",
                   f"messages[{where}].role")
    if not history[-1].strip():
        raise _bad(f"messages[{i}].content is empty: send a message of up to {MAX_MESSAGE_CHARS:,} characters.",
                   f"messages[{i}].content", "empty_string")
    if len(history) > MAX_HISTORY_TURNS + 1:
        raise _bad(f"messages holds {len(history):,} user and assistant turns, over the limit of {MAX_HISTORY_TURNS + 1}; "
                   "send the newest only.", "messages", "array_above_max_length")
    return history, ignored


class Turn:
    """A checked chat-completion request."""

    def __init__(self, body: Any, bot: AdapterBot) -> None:
        if not isinstance(body, dict):
            raise _bad(f"The request body must be a JSON object, got {type(body).__name__}.", None, "invalid_type")
        self.model = body.get("model")
        self.skill = parse_model(self.model, bot)
        self.history, self.ignored = parse_messages(body.get("messages"))
        self.stream = body.get("stream") or False
        if not isinstance(self.stream, bool):
            raise _bad(f"stream must be true or false, got {self.stream!r}.", "stream", "invalid_type")
        options = body.get("stream_options") or {}
        if not isinstance(options, dict):
            raise _bad("stream_options must be an object such as {\"include_usage\": true}.", "stream_options", "invalid_type")
        self.include_usage = bool(options.get("include_usage"))
        for key, what in UNSUPPORTED.items():
            if body.get(key) not in (None, False, [], {}):
                raise _bad(f"{key}: {what} are not supported by Adapter-Bot.", key, "unsupported_parameter")
        if body.get("tool_choice") not in (None, "none"):
            raise _bad("tool_choice: tool calls are not supported by Adapter-Bot.", "tool_choice", "unsupported_parameter")
        fmt = body.get("response_format")
        if fmt not in (None, {}) and not (isinstance(fmt, dict) and fmt.get("type") == "text"):
            raise _bad("response_format: only {\"type\": \"text\"} is supported.", "response_format", "unsupported_parameter")
        for key in ("frequency_penalty", "presence_penalty"):  # OpenAI's defaults are 0; the extension has repetition_penalty
            if _number(body, key, -2.0, 2.0) not in (None, 0.0):
                raise _bad(f"{key} is not supported; use repetition_penalty (an extension, > 0, 1 = off).", key,
                           "unsupported_parameter")
        if _integer(body, "n", 1, None) not in (None, 1):
            raise _bad("n must be 1: Adapter-Bot gives one reply per request.", "n")

        decoding: dict[str, Any] = {}
        temperature = _number(body, "temperature", 0.0, MAX_TEMPERATURE)
        top_p = _number(body, "top_p", 0.0, 1.0, low_open=True)
        if temperature == 0.0:
            decoding["do_sample"] = False
        elif temperature is not None:
            decoding.update(do_sample=True, temperature=temperature)
        if top_p is not None:
            decoding["top_p"] = top_p
            decoding.setdefault("do_sample", True)
        tokens_key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
        max_tokens = _integer(body, tokens_key, 1, MAX_NEW_TOKENS)
        if max_tokens is not None:
            decoding["max_new_tokens"] = max_tokens
        penalty = _number(body, "repetition_penalty", 0.0, 10.0, low_open=True)
        if penalty is not None:
            decoding["repetition_penalty"] = penalty
        self.decoding = decoding
        self.seed = _integer(body, "seed", -(2 ** 63))
        stop = body.get("stop")
        stops = [stop] if isinstance(stop, str) else stop if stop is not None else []
        if not isinstance(stops, list) or len(stops) > MAX_STOPS or not all(isinstance(s, str) and s for s in stops):
            raise _bad(f"stop must be a non-empty string or a list of up to {MAX_STOPS} non-empty strings, got {stop!r}.", "stop")
        self.stops: list[str] = stops


# ---- the reply ----------------------------------------------------------------------------------


def sentence_safe(text: str) -> str:
    """The part of a growing reply that no cut can take back: up to its last sentence end that is
    followed by more text (a reply that runs out of tokens ends at its last full sentence, and an end
    at the very edge of a snapshot may still turn out not to be one, as in "3." of "3.5")."""
    cut = text.rfind(" ")
    cut = max(cut, text.rfind("\n"), text.rfind("\t"))
    if cut <= 0:
        return ""
    head = text[:cut]
    ended = end_at_sentence(head + " \x00")  # the sentinel: the edge of `head` counts as followed by a space
    return "" if ended.endswith("\x00") else ended


def stop_cut(text: str, stops: list[str], final: bool) -> tuple[int, bool]:
    """``(end, stopped)``: how much of ``text`` may be sent, and whether a stop string ends the reply
    there. Unless ``final``, text that could begin a stop string waits for what follows."""
    end, stopped = len(text), False
    for s in stops:
        found = text.find(s)
        if found != -1 and (found < end or (found == end and not stopped)):
            end, stopped = found, True
        if not final:
            for j in range(max(0, len(text) - len(s) + 1), len(text)):
                if s.startswith(text[j:]):
                    if j < end:
                        end, stopped = j, False
                    break
    return end, stopped


class Deltas:
    """What is sent of a growing reply: only text that the finished reply is sure to begin with."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = stops
        self.sent = ""
        self.stopped = False
        self.done = False

    def feed(self, text: str, final: bool) -> str:
        """The new text to send for this snapshot (``final``: the finished reply)."""
        if self.done:
            return ""
        safe = text if final else sentence_safe(text)
        end, self.stopped = stop_cut(safe, self.stops, final)
        out = safe[:end]
        self.done = final or self.stopped
        if not out.startswith(self.sent):  # cannot happen while snapshots grow; nothing sent can be taken back
            log.warning("stream: the reply %r does not begin with the text already sent %r", out, self.sent)
            return ""
        delta, self.sent = out[len(self.sent):], out
        return delta


def extension(reply: Reply, ignored: int) -> dict:
    """The ``adapterbot`` field: how the turn was routed and the knowledge it had."""
    return {"skill": reply.skill, "confidence": reply.confidence, "scores": dict(reply.scores),
            "knowledge": reply.knowledge, "knowledge_used": reply.knowledge_used, "ignored_messages": ignored}


def count_tokens(bot: AdapterBot, text: str) -> int:
    return len(bot.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else 0


def prompt_tokens(bot: AdapterBot, history: list[str]) -> int:
    """The conversation's tokens as sent, each turn with its end-of-turn token (the bot reads only the
    newest turns that fit its window, and a skill's passage besides)."""
    return sum(count_tokens(bot, turn.strip()) + 1 for turn in history)


def token_budget(bot: AdapterBot, turn: Turn, reply: Reply) -> int | None:
    """The reply's max_new_tokens as the bot applies it (the answering skill's own unless given)."""
    try:
        limit = turn.decoding.get("max_new_tokens") or decoding_defaults(bot, reply.skill)["max_new_tokens"]
    except (KeyError, ValueError):  # the skill was removed meanwhile
        return None
    window = getattr(getattr(getattr(bot.model, "backbone", None), "config", None), "n_positions", None)
    return min(int(limit), window // 2) if window else int(limit)


def finish_reason(bot: AdapterBot, turn: Turn, reply: Reply, stopped: bool) -> str:
    """``stop``: the reply ended, met a stop string, or was cut back to a full sentence;
    ``length``: it used its whole token budget with no sentence end to cut back to."""
    budget = token_budget(bot, turn, reply)
    return "length" if not stopped and budget is not None and count_tokens(bot, reply.text) >= budget else "stop"


# ---- running the bot ----------------------------------------------------------------------------

_SEED_LOCK = threading.Lock()


def takes_seed(bot: AdapterBot) -> bool:
    """Whether ``bot.respond`` takes a ``seed`` (the engine's per-row random generator)."""
    try:
        return "seed" in inspect.signature(bot.respond).parameters
    except (TypeError, ValueError):
        return False


@contextlib.contextmanager
def _seeded(seed: int | None, native: bool) -> Iterator[dict]:
    """The seed keyword for the bot (``native``), or torch's global seed set under a lock."""
    if seed is None:
        yield {}
    elif native:
        yield {"seed": seed}
    else:
        import torch

        with _SEED_LOCK:
            torch.manual_seed(seed)
            yield {}


def _respond(bot: AdapterBot, turn: Turn) -> Reply:
    with _seeded(turn.seed, takes_seed(bot)) as seed:
        return bot.respond(turn.history, skill=turn.skill, **turn.decoding, **seed)


def _usage(bot: AdapterBot, turn: Turn, text: str) -> dict:
    prompt, completion = prompt_tokens(bot, turn.history), count_tokens(bot, text)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _completion(bot: AdapterBot, turn: Turn, ident: str, started: int) -> dict:
    """The ``chat.completion`` object of one turn (run in a worker thread)."""
    reply = _respond(bot, turn)
    deltas = Deltas(turn.stops)
    text = deltas.feed(reply.text, final=True)
    return {
        "id": ident, "object": "chat.completion", "created": started, "model": turn.model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "finish_reason": finish_reason(bot, turn, reply, deltas.stopped), "logprobs": None}],
        "usage": _usage(bot, turn, text),
        EXTENSION: extension(reply, turn.ignored),
    }


async def _pump(bot: AdapterBot, turn: Turn) -> AsyncIterator[tuple[Reply, bool]]:
    """``(snapshot, False)`` for each of ``bot.stream``'s snapshots but the last as it comes, then ``(the
    last one, True)``: the finished reply, which a reply cut back to its last sentence makes shorter
    than the snapshot before it. A thread of its own drives the stream. Leaving early
    closes the stream (with torch's global seed, it runs to its end first, so the next seeded turn
    starts from its own seed)."""
    loop = asyncio.get_running_loop()
    items: asyncio.Queue = asyncio.Queue()
    leave = threading.Event()
    native = takes_seed(bot)

    def put(item) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody is listening
            loop.call_soon_threadsafe(items.put_nowait, item)

    def run() -> None:
        try:
            with _seeded(turn.seed, native) as seed:
                stream = bot.stream(turn.history, skill=turn.skill, **turn.decoding, **seed)
                try:
                    last = None  # held back one snapshot: the stream's last is the finished reply, which a cut
                    for snapshot in stream:  # may have made shorter than the snapshot before it
                        if leave.is_set():
                            if native or turn.seed is None:
                                return
                            continue
                        if last is not None:
                            put(("item", last))
                        last = snapshot
                    put(("final", last))
                finally:
                    stream.close()
        except BaseException as e:  # noqa: BLE001 - handed to the event loop
            put(("error", e))

    threading.Thread(target=run, daemon=True, name="openai-stream").start()
    try:
        while True:
            kind, value = await items.get()
            if kind == "error":
                raise value
            yield value, kind == "final"
            if kind == "final":
                return
    finally:
        leave.set()


def _sse(obj: Any) -> bytes:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n".encode("utf-8")


# ---- the routes ---------------------------------------------------------------------------------


def _authorized(request: Request, api_key: str | None) -> None:
    if not api_key:
        return
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise APIError(401, "You didn't provide an API key: send it as 'Authorization: Bearer KEY'.", code="missing_api_key")
    if not hmac.compare_digest(given.strip().encode("utf-8"), api_key.encode("utf-8")):
        raise APIError(401, "Incorrect API key provided.", code="invalid_api_key")


def _guarded(handler: Callable) -> Callable:
    """Answer an :class:`APIError` as OpenAI's error object, and any other failure as a 500."""

    async def wrapped(request: Request, **kwargs) -> Response:
        try:
            return await handler(request, **kwargs)
        except APIError as e:
            return e.response()
        except Exception:
            log.exception("%s %s failed", request.method, request.url.path)
            return SERVER_ERROR.response()

    wrapped.__signature__ = inspect.signature(handler)  # type: ignore[attr-defined]
    wrapped.__name__ = handler.__name__
    return wrapped


def openai_router(bot: AdapterBot, api_key: str | None = None) -> APIRouter:
    """The ``/v1`` routes over ``bot`` (``api_key``: the bearer key every request must carry)."""
    router = APIRouter()
    created = int(time.time())

    async def list_models(request: Request) -> Response:
        _authorized(request, api_key)
        return JSONResponse({"object": "list", "data": [_model_card(name, created) for name in model_names(bot)]})

    async def get_model(request: Request, model: str) -> Response:
        _authorized(request, api_key)
        parse_model(model, bot)
        return JSONResponse(_model_card(model, created))

    async def chat_completions(request: Request) -> Response:
        _authorized(request, api_key)
        try:
            body = json.loads(await request.body() or b"null")
        except (ValueError, UnicodeDecodeError) as e:
            raise _bad(f"The request body is not valid JSON ({one_line(e)}).", None, "invalid_json") from None
        turn = Turn(body, bot)
        ident, started = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if turn.stream:
            return await _streamed(turn, ident, started)
        try:
            return JSONResponse(await run_in_threadpool(_completion, bot, turn, ident, started))
        except ValueError as e:  # the bot's own refusal, e.g. a skill removed meanwhile
            raise _bad(one_line(e), None) from None

    async def _streamed(turn: Turn, ident: str, started: int) -> Response:
        snapshots = _pump(bot, turn)
        try:  # routing and the first words come before the response starts: a refusal is still a 400
            first = await snapshots.__anext__()
        except ValueError as e:
            await snapshots.aclose()
            raise _bad(one_line(e), None) from None
        except BaseException:
            await snapshots.aclose()
            raise

        def chunk(delta: dict, finish: str | None, **extra) -> bytes:
            return _sse({"id": ident, "object": "chat.completion.chunk", "created": started, "model": turn.model,
                         "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **extra})

        async def events() -> AsyncIterator[bytes]:
            deltas = Deltas(turn.stops)
            try:
                reply, final = first
                yield chunk({"role": "assistant", "content": deltas.feed(reply.text, final)}, None,
                            **{EXTENSION: extension(reply, turn.ignored)})
                while not final and not deltas.done:
                    reply, final = await snapshots.__anext__()
                    text = deltas.feed(reply.text, final)
                    if text:
                        yield chunk({"content": text}, None)
                reply = reply if final else Reply(deltas.sent, reply.skill)
                finish = await run_in_threadpool(finish_reason, bot, turn, reply, deltas.stopped)
                yield chunk({}, finish)
                if turn.include_usage:
                    usage = await run_in_threadpool(_usage, bot, turn, deltas.sent)
                    yield _sse({"id": ident, "object": "chat.completion.chunk", "created": started, "model": turn.model,
                                "choices": [], "usage": usage})
                yield b"data: [DONE]\n\n"
            except Exception as e:  # the status line has gone: the error travels as an event
                log.exception("streamed chat completion failed")
                error = _bad(one_line(e), None) if isinstance(e, ValueError) else SERVER_ERROR
                yield _sse(error.body())
            finally:
                await snapshots.aclose()

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    router.add_api_route("/v1/models", _guarded(list_models), methods=["GET"], include_in_schema=False)
    router.add_api_route("/v1/models/{model:path}", _guarded(get_model), methods=["GET"], include_in_schema=False)
    router.add_api_route("/v1/chat/completions", _guarded(chat_completions), methods=["POST"], include_in_schema=False)
    return router


def openai_routes(bot: AdapterBot, api_key: str | None = None) -> list[BaseRoute]:
    """The routes of :func:`openai_router`, as ``FastAPI(routes=...)`` takes them (see :func:`ui.app.launch`)."""
    return list(openai_router(bot, api_key).routes)


def openai_app(bot: AdapterBot, api_key: str | None = None) -> FastAPI:
    """The API alone, as its own FastAPI app (tests, or serving it without the web UI)."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(openai_router(bot, api_key))
    return app


__all__ = ["openai_router", "openai_routes", "openai_app", "model_names", "parse_model", "API_KEY_ENV"]
