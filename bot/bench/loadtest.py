"""Load run of the web chat and the OpenAI API: many client sessions talking to one server at once.

    python -m bot.bench.loadtest [--backbone ID|PATH] [--skills-dir DIR] [--sessions 16] [--turns 10]
                          [--max-new-tokens 24] [--timeout 900] [--client-timeout 60] [--threads N]
                          [--clients mixed|gradio|openai] [--out FILE.json]

The bot is loaded once (the bundled backbone and skills unless told otherwise) and served by
:func:`ui.app.launch` in this process on ``127.0.0.1`` and a free port; no other address is
contacted. A child process then runs ``--sessions`` threads; each opens its own
``gradio_client.Client`` (one Gradio session, so one server-side conversation), waits until all
are connected, and sends ``--turns`` messages through ``/chat``, one after another, waiting for
each reply, then asks for the turn's side panel (``/chat_panel``) as the page does. Messages are tagged with their session and turn
(``"session 7 turn 3: my printer will not print"``) and rotate over skill-flavoured prompts and
the three routing modes (auto, a skill picked by hand, the bare backbone). The tags change what
the dialogue manager reads, so where auto turns were routed is reported but is no measure of
routing quality. With ``--clients mixed`` (the default) the odd-numbered sessions talk through the
official ``openai`` client instead, streaming from ``/v1/chat/completions`` with the model name as
the routing mode (:func:`_talk_openai`); ``--clients gradio`` or ``openai`` puts every session on one.

What is checked, per turn:

- *answered*: the final value of ``/chat`` emptied the textbox and ends with this turn: the user's
  message, the label thought (status ``done``) and a non-empty reply;
- *no mixing*: the session's conversation as returned holds exactly this session's messages in
  order (its user turns are exactly what it sent, three messages per turn), and everything shown
  at the previous turn is unchanged. A message tagged with another session is reported by name.

What is measured: wall time, turns per second, turn latency (submit to final value: queueing
included: the web page runs at most ``ui.app.MODEL_CONCURRENCY`` chat turns at once) as
p50/p95/max, and the resident memory (RSS) of the server's process, sampled every 0.2 s by a
background thread: the baseline after the bot is loaded and served, before any session connects;
once every client is connected, before the first turn; the peak during the run (with a timeline);
and its growth once the first ``WARMUP_TURNS`` turns are answered (a soak: ``--sessions 16 --turns 70``
gives 1,020 turns after the warm-up), both as the most it rose above its first sample then and as its high-water
growth (:func:`high_water_growth`: the peak of the last ``WINDOW_TURNS`` turns minus that of the first after the
warm-up).
The clients live in their own process so that their memory is not counted as the server's; their
peak is reported apart. CPU seconds of server and clients and the machine's load average are
reported beside the figures, since other work on the machine stretches the latencies.

Each client's HTTP timeout is ``--client-timeout`` (60 s by default; gradio_client's own default,
httpx's 5 s, failed turns with ``ReadTimeout`` when a busy 2-core machine kept the server from
answering within 5 s).

Replies are capped at ``--max-new-tokens`` (24 by default, sent as the ``overrides`` of each
turn; the skills' other decoding settings apply) to keep a run of 160 turns to minutes on a
small CPU machine. The run stops at ``--timeout`` seconds (15 minutes by default): turns not sent
by then count as unanswered and ``timed_out`` is set.

Prints a Markdown summary and writes the figures as JSON to ``--out``. Exit status 0 when every
turn was answered with no mixing and no error, 1 otherwise. Needs ``gradio_client`` and
``psutil`` (the ``test`` extra: ``pip install -e ".[test]"``).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import resource
import shutil
import socket
import sys
import tempfile
import threading
import time
from concurrent.futures import TimeoutError as FutureTimeout  # TimeoutError's alias from Python 3.11
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..errors import one_line

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HOST = "127.0.0.1"
PROMPTS = (
    "my printer will not print",
    "I failed my exam today and I feel awful",
    "who wrote hamlet",
    "my laptop will not turn on",
    "hi! how is your day going?",
    "I feel lonely lately",
    "what is the capital of france",
    "my wifi keeps dropping",
)
MODES = ("auto", "skill", "bare")  # "skill": one installed skill picked by hand (auto when none is installed)
SAMPLE_EVERY_S = 0.2
POLL_S = 0.01  # how often a client looks for its turn's first streamed text
MAX_ERRORS_KEPT = 20
TIMELINE_POINTS = 200  # RSS samples kept in the report, evenly spaced: [seconds after the start, MiB]
WARMUP_TURNS = 100  # memory growth is also taken from the moment this many turns have been answered
WINDOW_TURNS = 100  # the high-water growth compares the RSS peaks of the first and the last this many turns after it


# ---- messages and checks ---------------------------------------------------------------------


def message_for(session: int, turn: int) -> str:
    """The tagged message session ``session`` sends at turn ``turn`` (both counted from 0)."""
    return f"session {session} turn {turn}: {PROMPTS[(session + turn) % len(PROMPTS)]}"


def mode_for(session: int, turn: int, skills: Sequence[str]) -> str:
    """The routing mode of that turn: auto, a skill picked by hand (rotating), or bare."""
    kind = MODES[(session + turn) % len(MODES)]
    if kind == "skill":
        return skills[(session + turn) % len(skills)] if skills else "auto"
    return kind


def session_of(text: str) -> int | None:
    """The session a tagged message came from (``None`` for an untagged one)."""
    if not text.startswith("session "):
        return None
    head = text[len("session "):].split(" ", 1)[0]
    return int(head) if head.isdigit() else None


def _text(message: dict) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(block.get("text", "") for block in content if isinstance(block, dict))
    if isinstance(content, dict):
        return str(content.get("text", ""))
    return ""


def _shows_reply(outputs: list) -> bool:
    """Whether the newest streamed ``/chat`` value already holds reply text (the label's thought is not a reply)."""
    if not outputs or not isinstance(outputs[-1], (list, tuple)) or len(outputs[-1]) < 2:
        return False
    messages = outputs[-1][1]
    if not isinstance(messages, list) or not messages or not isinstance(messages[-1], dict):
        return False
    last = messages[-1]
    return last.get("role") == "assistant" and not (last.get("metadata") or {}).get("title") and bool(_text(last).strip())


def _shape(messages: list[dict]) -> list[tuple[str, str, str | None]]:
    """What the page shows of a conversation: (role, text, label title) per message."""
    return [(m.get("role", ""), _text(m), (m.get("metadata") or {}).get("title")) for m in messages]


def check_turn(box: Any, messages: Any, sent: Sequence[str], previous: list | None, session: int) -> tuple[bool, list[str]]:
    """Check one turn's final ``/chat`` value.

    Args:
        box: the textbox value returned (``""`` once a message is accepted).
        messages: the chatbot value returned (the session's whole conversation).
        sent: every message this session has sent so far, this turn's last.
        previous: the conversation returned at the previous turn (``None`` for the first).
        session: this session's number.

    Returns:
        ``(answered, mixing_problems)``: whether this turn got its reply, and a readable line for
        each sign that another session's conversation leaked into this one.
    """
    problems: list[str] = []
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        return False, [f"chatbot value is not a list of messages: {type(messages).__name__}"]
    shown = _shape(messages)
    users = [text for role, text, _ in shown if role == "user"]
    foreign = sorted({s for s in map(session_of, users) if s is not None and s != session})
    if foreign:
        problems.append(f"holds messages of session(s) {foreign}")
    if users != list(sent):
        problems.append(f"user turns {len(users)} differ from the {len(sent)} sent")
    if len(messages) != 3 * len(sent):
        problems.append(f"{len(messages)} messages for {len(sent)} turns (3 per turn expected)")
    if previous is not None and shown[:len(previous)] != _shape(previous):
        problems.append("the earlier turns changed since the previous reply")

    answered = False
    if box == "" and len(messages) >= 3:
        user, label, reply = messages[-3:]
        answered = (user.get("role") == "user" and _text(user) == sent[-1]
                    and label.get("role") == "assistant" and (label.get("metadata") or {}).get("status") == "done"
                    and bool((label.get("metadata") or {}).get("title"))
                    and reply.get("role") == "assistant" and bool(_text(reply).strip()))
    return answered, problems


# ---- memory ----------------------------------------------------------------------------------


class RssSampler:
    """Samples this process's resident memory every ``every`` seconds in a daemon thread."""

    def __init__(self, every: float = SAMPLE_EVERY_S) -> None:
        import psutil

        self.process = psutil.Process()
        self.every = every
        self.peak = self.current()
        self.samples = 0
        self.timeline: list[tuple[float, int]] = []  # (time.monotonic(), RSS bytes) per sample
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def current(self) -> int:
        return self.process.memory_info().rss

    def _run(self) -> None:
        while not self._stop.is_set():
            now = self.current()
            self.peak = max(self.peak, now)
            self.timeline.append((time.monotonic(), now))
            self.samples += 1
            self._stop.wait(self.every)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)
        self.peak = max(self.peak, self.current())


def _mib(n: float) -> float:
    return round(n / 2**20, 1)


def _max_rss_mib() -> float:
    """The process's lifetime high-water mark (loading included), from getrusage (KiB on Linux)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return _mib(kib if sys.platform == "darwin" else kib * 1024)


# ---- the run ---------------------------------------------------------------------------------


@dataclass
class TurnRecord:
    session: int
    turn: int
    mode: str
    client: str = "gradio"  # "gradio" (gradio_client on the page's /chat) or "openai" (the openai client on /v1)
    start_s: float | None = None  # when it was sent, seconds after the sessions started
    latency_s: float | None = None
    first_token_s: float | None = None  # submit to the first streamed reply text
    answered: bool = False
    label: str | None = None
    reply_chars: int = 0
    error: str | None = None


@dataclass
class SessionResult:
    session: int
    turns: list[TurnRecord] = field(default_factory=list)
    mixing: list[str] = field(default_factory=list)
    error: str | None = None  # a failure outside any turn (connecting)


def free_port(host: str = HOST) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) by linear interpolation; ``None`` for no values."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _talk(url: str, session: int, turns: int, skills: list[str], overrides: dict, deadline: float,
          stop: threading.Event, start_gate: threading.Barrier | None, client_timeout: float,
          origin: float) -> SessionResult:
    """One session: its own client, ``turns`` tagged messages in a row, each reply checked."""
    from gradio_client import Client

    result = SessionResult(session)
    try:
        client = Client(url, verbose=False, download_files=False, httpx_kwargs={"timeout": client_timeout})
    except Exception as e:  # reported, never raised: the other sessions go on
        result.error = f"connect: {one_line(e, limit=300, where=True)}"
        if start_gate is not None:
            start_gate.abort()  # let the others start instead of waiting for this one
        return result
    try:
        if start_gate is not None:
            try:
                start_gate.wait(timeout=max(1.0, deadline - time.monotonic()))
            except threading.BrokenBarrierError:
                pass  # another session failed to connect; start anyway
        sent: list[str] = []
        previous: list | None = None
        for turn in range(turns):
            if stop.is_set() or time.monotonic() >= deadline:
                break
            mode = mode_for(session, turn, skills)
            record = TurnRecord(session, turn, mode)
            result.turns.append(record)
            message = message_for(session, turn)
            sent.append(message)
            t0 = time.perf_counter()
            record.start_s = round(t0 - origin, 3)
            job = None
            try:
                job = client.submit(message, mode, overrides, api_name="/chat")
                while not job.done() and record.first_token_s is None and time.monotonic() < deadline:
                    if _shows_reply(job.outputs()):
                        record.first_token_s = round(time.perf_counter() - t0, 4)
                    time.sleep(POLL_S)
                out = job.result(timeout=max(1.0, deadline - time.monotonic()))
            except Exception as e:
                record.error = one_line(e, limit=300, where=True)
                if isinstance(e, (TimeoutError, FutureTimeout)) or time.monotonic() >= deadline:
                    if job is not None:
                        job.cancel()
                    stop.set()
                break  # the server's idea of this conversation is unknown now: stop this session
            record.latency_s = round(time.perf_counter() - t0, 4)
            try:
                client.predict(api_name="/chat_panel")  # the side panel the page asks for after each turn
            except Exception as e:
                record.error = f"chat panel: {one_line(e, limit=300, where=True)}"
            box, messages = out[0], out[1]
            record.answered, problems = check_turn(box, messages, sent, previous, session)
            result.mixing.extend(f"turn {turn}: {p}" for p in problems)
            if isinstance(messages, list) and len(messages) >= 2:
                record.label = (messages[-2].get("metadata") or {}).get("title")
                record.reply_chars = len(_text(messages[-1]))
            if not record.answered:
                record.error = "no reply for this turn"
            previous = messages if isinstance(messages, list) else previous
    finally:
        try:
            client.close()
        except Exception:
            pass
    return result


def model_for(mode: str) -> str:
    """The OpenAI API's model name for a routing mode: ``adapterbot`` (auto), ``adapterbot:bare``, ``adapterbot:SKILL``."""
    from ui.openai_api import BARE, MODEL

    return MODEL if mode == "auto" else f"{MODEL}:{BARE if mode == 'bare' else mode}"


def _talk_openai(url: str, session: int, turns: int, skills: list[str], overrides: dict, deadline: float,
                 stop: threading.Event, start_gate: threading.Barrier | None, client_timeout: float,
                 origin: float) -> SessionResult:
    """One session through the official ``openai`` client on ``/v1/chat/completions``, streamed: the client
    keeps the conversation and sends it whole each turn (the API holds no state). A turn is answered when
    its stream ends with reply text; its route, from the ``adapterbot`` extension field, must be the skill
    (or the bare backbone) the model name forced, else it counts as mixed."""
    from openai import OpenAI

    from ui.chat import CHITCHAT
    from ui.openai_api import EXTENSION

    result = SessionResult(session)
    client = OpenAI(base_url=url.rstrip("/") + "/v1", api_key="loadtest", timeout=client_timeout, max_retries=0)
    try:
        if start_gate is not None:
            try:
                start_gate.wait(timeout=max(1.0, deadline - time.monotonic()))
            except threading.BrokenBarrierError:
                pass
        conversation: list[dict] = []
        for turn in range(turns):
            if stop.is_set() or time.monotonic() >= deadline:
                break
            mode = mode_for(session, turn, skills)
            record = TurnRecord(session, turn, mode, client="openai")
            result.turns.append(record)
            conversation.append({"role": "user", "content": message_for(session, turn)})
            t0 = time.perf_counter()
            record.start_s = round(t0 - origin, 3)
            parts, route = [], None
            try:
                stream = client.chat.completions.create(model=model_for(mode), messages=conversation, stream=True,
                                                        max_tokens=int(overrides["max_new_tokens"]))
                for chunk in stream:
                    extra = (chunk.model_extra or {}).get(EXTENSION)
                    if extra is not None:
                        route = extra.get("skill")
                    text = chunk.choices[0].delta.content if chunk.choices else None
                    if text:
                        if record.first_token_s is None:
                            record.first_token_s = round(time.perf_counter() - t0, 4)
                        parts.append(text)
            except Exception as e:
                record.error = one_line(e, limit=300, where=True)
                if time.monotonic() >= deadline:
                    stop.set()
                break
            record.latency_s = round(time.perf_counter() - t0, 4)
            reply = "".join(parts)
            record.answered, record.reply_chars = bool(reply.strip()), len(reply)
            record.label = route or CHITCHAT
            forced = None if mode in ("auto", "bare") else mode
            if mode != "auto" and route != forced:
                result.mixing.append(f"turn {turn}: asked for {model_for(mode)}, answered by {route or 'the bare backbone'}")
            if not record.answered:
                record.error = "no reply for this turn"
            conversation.append({"role": "assistant", "content": reply})
    finally:
        client.close()
    return result


CLIENTS = ("gradio", "openai", "mixed")


def client_of(session: int, clients: str) -> str:
    """The client a session talks through: ``clients`` itself, or with ``"mixed"`` openai for odd sessions."""
    if clients not in CLIENTS:
        raise ValueError(f"clients must be one of {', '.join(CLIENTS)}, got {clients!r}")
    return ("openai" if session % 2 else "gradio") if clients == "mixed" else clients


def _drive(url: str, sessions: int, turns: int, skills: list[str], overrides: dict, timeout_s: float,
           client_timeout_s: float, server_pid: int, clients: str = "gradio") -> dict:
    """The client side: ``sessions`` threads with a client each, started together once all are connected.
    ``clients``: every session through ``gradio_client`` (``"gradio"``), the ``openai`` client
    (``"openai"``), or the odd-numbered sessions through ``openai`` (``"mixed"``).

    Runs in its own process (see :func:`run_load`); returns plain data: the sessions' results,
    the wall time, the server's RSS once every client was connected, and this process's own
    RSS and CPU figures.
    """
    import psutil

    server = psutil.Process(server_pid)
    deadline = time.monotonic() + timeout_s
    stop = threading.Event()
    connected: list[int] = []  # the server's RSS once every client is connected, before the first turn
    gate = threading.Barrier(sessions, action=lambda: connected.append(server.memory_info().rss))
    results: dict[int, SessionResult] = {}

    def worker(i: int) -> None:
        try:
            talk = _talk_openai if client_of(i, clients) == "openai" else _talk
            results[i] = talk(url, i, turns, skills, overrides, deadline, stop, gate, client_timeout_s, origin)
        except BaseException as e:  # noqa: BLE001 - reported in the figures
            results[i] = SessionResult(i, error=f"session crashed: {one_line(e, limit=300, where=True)}")
            gate.abort()

    with RssSampler() as rss:
        start_rss, cpu0 = rss.current(), rss.process.cpu_times()
        threads = [threading.Thread(target=worker, args=(i,), name=f"session-{i}", daemon=True) for i in range(sessions)]
        origin, started_at = time.perf_counter(), time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()) + 30)
        wall = time.perf_counter() - origin
        stop.set()
        cpu1 = rss.process.cpu_times()
    return {
        "sessions": [asdict(results.get(i, SessionResult(i, error="did not finish before the timeout")))
                     for i in range(sessions)],
        "wall_s": wall, "started_at": started_at,
        "timed_out": time.monotonic() >= deadline or any(t.is_alive() for t in threads),
        "server_rss_connected": connected[0] if connected else None,
        "rss_start": start_rss, "rss_peak": rss.peak,
        "cpu_s": (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system),
    }


def _client_process(queue, *args) -> None:
    """Entry point of the client process: :func:`_drive`, its result (or its failure) put on ``queue``."""
    try:
        queue.put(_drive(*args))
    except BaseException as e:  # noqa: BLE001 - reported by the parent
        queue.put({"failed": one_line(e, limit=300, where=True)})


class TrainingBeside:
    """A skill added from ``data`` in a training child process, as the Skills tab adds one, while a load runs.

    Entering starts it and returns once its training steps have begun (the child's first progress report
    past loading), so the load that follows meets a training process at work. Leaving kills the child if
    it is still training (the server goes on serving: :class:`bot.training_process.TrainingStopped` is
    expected, and nothing is installed) and records how it ended in :attr:`figures`.
    """

    NAME = "loadtest-training"

    def __init__(self, bot, data: Path, start_timeout_s: float = 600.0) -> None:
        self.bot, self.data, self.start_timeout_s = bot, Path(data), start_timeout_s
        self.started, self.stopping = threading.Event(), False
        self.outcome: str | None = None
        self.figures: dict = {}
        self._thread = threading.Thread(target=self._run, name="loadtest-training", daemon=True)

    def _run(self) -> None:
        from bot.training_process import TrainingStopped, add_skill_in_child

        try:
            add_skill_in_child(self.bot, self.NAME, self.data, description="load run: a skill training beside chat",
                               progress=lambda fraction, message: 0 < fraction < 1 and self.started.set())
            self.outcome = "finished during the load"
        except TrainingStopped as e:
            self.outcome = "stopped after the load" if self.stopping else f"stopped: {one_line(e)}"
        except Exception as e:  # reported in the figures
            self.outcome = f"failed: {one_line(e, limit=300)}"
        finally:
            self.started.set()  # a child that fails before training must not keep the load waiting

    def __enter__(self) -> "TrainingBeside":
        self._thread.start()
        if not self.started.wait(self.start_timeout_s) or self.outcome is not None:
            self.__exit__(None, None, None)
            raise RuntimeError(f"the training beside the load never began training: {self.outcome or 'timed out'}")
        return self

    def __exit__(self, *exc) -> None:
        from bot.training_process import running

        through = self._thread.is_alive()
        if through:
            self.stopping = True
            for child in running():
                child.kill()
        self._thread.join(120)
        self.figures = {"data": str(self.data), "trained_through_the_load": through, "outcome": self.outcome}


def run_load(bot, *, sessions: int = 16, turns: int = 10, max_new_tokens: int = 24, timeout_s: float = 900.0,
             client_timeout_s: float = 60.0, host: str = HOST, port: int | None = None, max_batch: int | None = None,
             clients: str = "mixed", training: Path | None = None) -> dict:
    """Serve ``bot`` on ``host`` and drive it with ``sessions`` concurrent clients of ``turns`` turns each.

    ``max_batch`` sets the engine's most rows decoding together for this run (1: one turn at a time,
    the server without batching); ``None`` keeps the bot's. ``clients``: see :func:`client_of` (by
    default half the sessions use the web page's API through ``gradio_client``, half the OpenAI API).
    ``training``: a skill's data file; the load then runs while that skill trains in a child process
    (:class:`TrainingBeside`: it is installed into the bot's skills folder if it finishes first, so
    give the bot a folder of its own).

    The server runs in this process; the clients run in a child process (spawned, so it holds no
    copy of the model), so this process's RSS is the server's alone. Returns the report (see the
    module docstring); the server is closed and the child gone before returning.
    """
    import multiprocessing
    import queue as queue_module

    from ui.app import launch  # the web app under load (bot -> ui, as for ``adapterbot chat``)

    if sessions < 1 or turns < 1:
        raise ValueError("sessions and turns must be at least 1")
    client_of(0, clients)  # a bad ``clients`` is refused before the server starts
    skills = list(bot.skills)
    overrides = {"max_new_tokens": int(max_new_tokens)}
    context = multiprocessing.get_context("spawn")
    kept_batch = bot.engine.max_batch
    if max_batch is not None:
        bot.engine.max_batch = max_batch
    demo = launch(bot, host=host, port=port or free_port(host), prevent_thread_lock=True, quiet=True)
    counts = (bot.engine.steps, bot.engine.row_steps, bot.engine.prefills)
    busy = dict(bot.engine.seconds)
    beside = TrainingBeside(bot, training) if training is not None else contextlib.nullcontext()
    try:
        with beside, RssSampler() as rss:
            time.sleep(2 * SAMPLE_EVERY_S)
            baseline = rss.current()
            rss.peak = baseline  # the peak is taken over the load only
            cpu0, load0 = rss.process.cpu_times(), os.getloadavg()
            results = context.Queue()
            child = context.Process(target=_client_process, name="loadtest-clients", daemon=True,
                                    args=(results, demo.local_url, sessions, turns, skills, overrides, timeout_s,
                                          client_timeout_s, os.getpid(), clients))
            child.start()
            try:
                # Spawning and connecting take a while on a busy machine: a minute of grace past the timeout.
                got = results.get(timeout=timeout_s + 60)
            except queue_module.Empty:
                got = {"failed": f"the client process gave no result within {timeout_s + 60:.0f} s"}
            finally:
                child.join(10)
                if child.is_alive():
                    child.terminate()
                    child.join(5)
            cpu1, load1 = rss.process.cpu_times(), os.getloadavg()
            after = rss.current()
    finally:
        demo.close()
        bot.engine.max_batch = kept_batch

    steps, row_steps, prefills = (now - then for now, then in
                                  zip((bot.engine.steps, bot.engine.row_steps, bot.engine.prefills), counts))
    busy = {what: round(seconds - busy[what], 2) for what, seconds in bot.engine.seconds.items()}
    failed = got.get("failed")
    per_session = [SessionResult(d["session"], [TurnRecord(**r) for r in d["turns"]], d["mixing"], d["error"])
                   for d in got.get("sessions", [])]
    wall = got.get("wall_s", 0.0)
    timed_out = bool(got.get("timed_out")) or failed is not None
    records = [r for s in per_session for r in s.turns]
    latencies = [r.latency_s for r in records if r.latency_s is not None]
    first_tokens = [r.first_token_s for r in records if r.first_token_s is not None]
    answered = sum(r.answered for r in records)
    errors = ([f"client process: {failed}"] if failed else [])
    errors += [f"session {r.session} turn {r.turn}: {r.error}" for r in records if r.error]
    errors += [f"session {s.session}: {s.error}" for s in per_session if s.error]
    mixed = {s.session: s.mixing for s in per_session if s.mixing}
    by_mode: dict[str, dict[str, int]] = {}
    routed: dict[str, int] = {}
    by_client = {kind: _client_figures([r for r in records if r.client == kind])
                 for kind in sorted({r.client for r in records})}
    for r in records:
        kind = r.mode if r.mode in ("auto", "bare") else "skill"
        entry = by_mode.setdefault(kind, {"sent": 0, "answered": 0})
        entry["sent"] += 1
        entry["answered"] += int(r.answered)
        if r.label and kind == "auto":
            name = r.label.split(" · ")[0]
            routed[name] = routed.get(name, 0) + 1
    requested = sessions * turns
    origin = got.get("started_at", 0.0)
    timeline = [(at, b) for at, b in rss.timeline if at >= origin]
    step = max(1, len(timeline) // TIMELINE_POINTS)
    done = sorted(origin + r.start_s + r.latency_s for r in records if r.answered and r.start_s is not None)
    warm_growth, high_water = growth_after_warmup(timeline, done), high_water_growth(timeline, done)
    cpu_s = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    cores = os.cpu_count() or 1
    ok = answered == requested and not mixed and not errors and not timed_out
    connected = got.get("server_rss_connected")

    def rnd(x: float | None, n: int = 3) -> float | None:
        return None if x is None else round(x, n)

    return {
        "ok": ok,
        "config": {"sessions": sessions, "turns": turns, "max_new_tokens": int(max_new_tokens), "timeout_s": timeout_s,
                   "client_http_timeout_s": client_timeout_s,
                   "backbone": bot.model.signature.backbone, "skills": skills, "manager": bot.manager is not None,
                   "server": f"{host}, this process", "clients": "one child process, a thread per session",
                   "modes": list(MODES), "prompts": list(PROMPTS), "client_kinds": clients},
        "turns": {"requested": requested, "sent": len(records), "answered": answered,
                  "unanswered": requested - answered, "by_mode": by_mode, "auto_routed_to": routed},
        "by_client": by_client,
        "mixing": {"sessions_checked": len(per_session), "mixed_sessions": sorted(mixed), "problems": mixed},
        "errors": {"count": len(errors), "first": errors[:MAX_ERRORS_KEPT]},
        "timed_out": timed_out,
        "wall_s": round(wall, 2),
        "turns_per_s": round(answered / wall, 3) if wall > 0 else None,
        "latency_s": {"p50": rnd(_percentile(latencies, 50)), "p95": rnd(_percentile(latencies, 95)),
                      "max": rnd(max(latencies) if latencies else None),
                      "mean": rnd(sum(latencies) / len(latencies) if latencies else None)},
        "first_token_s": {"p50": rnd(_percentile(first_tokens, 50)), "p95": rnd(_percentile(first_tokens, 95)),
                          "n": len(first_tokens)},
        "engine": {"max_batch": bot.engine.max_batch if max_batch is None else max_batch, "threads": bot.engine.threads,
                   "steps": steps, "prefills": prefills, "rows_per_step": round(row_steps / steps, 2) if steps else None,
                   "busy_s": busy},
        "memory_mib": {"baseline": _mib(baseline), "clients_connected": _mib(connected) if connected else None,
                       "peak": _mib(rss.peak), "growth": _mib(rss.peak - baseline), "after": _mib(after),
                       "warmup_turns": WARMUP_TURNS, "turns_after_warmup": max(0, len(done) - WARMUP_TURNS),
                       "growth_after_warmup": None if warm_growth is None else _mib(warm_growth),
                       "window_turns": WINDOW_TURNS, "high_water_growth": None if high_water is None else _mib(high_water),
                       "lifetime_max": _max_rss_mib(), "samples": rss.samples, "every_s": SAMPLE_EVERY_S,
                       "client_process_peak": _mib(got["rss_peak"]) if "rss_peak" in got else None,
                       "timeline": [[round(at - origin, 1), _mib(b)] for at, b in timeline[::step]]},
        "cpu": {"server_s": round(cpu_s, 1), "clients_s": rnd(got.get("cpu_s"), 1),
                "server_share_of_machine": round(cpu_s / wall / cores, 3) if wall > 0 else None,
                "loadavg_1min_start": round(load0[0], 2), "loadavg_1min_end": round(load1[0], 2)},
        "machine": _machine(),
        "training": beside.figures if training is not None else None,
        "records": [asdict(r) for r in records],
    }


def high_water_growth(timeline: Sequence[tuple[float, int]], done: Sequence[float], warmup: int = WARMUP_TURNS,
                      window: int = WINDOW_TURNS) -> int | None:
    """How much the RSS's high-water mark rose (bytes) from the ``window`` turns after the warm-up to the last
    ``window`` turns: the peak of the samples in each stretch of turns, the later minus the earlier. Unlike
    :func:`growth_after_warmup`, a server whose RSS swings with the batch it holds (a 32-row cache, then a few
    rows) but does not grow reads near 0 whichever point of a swing the warm-up ends on; a leak reads as the
    growth it adds. ``None`` with fewer than ``warmup + 2 * window`` turns answered."""
    if len(done) < warmup + 2 * window:
        return None

    def peak(start: float, end: float) -> int:
        return max(b for at, b in timeline if start <= at <= end)

    return peak(done[len(done) - window - 1], done[-1]) - peak(done[warmup - 1], done[warmup + window - 1])


def growth_after_warmup(timeline: Sequence[tuple[float, int]], done: Sequence[float], warmup: int = WARMUP_TURNS) -> int | None:
    """The most the RSS rose (bytes) above its first sample once ``warmup`` turns had been answered: ``timeline``
    holds (time, RSS) samples, ``done`` the turns' answer times (sorted, the same clock); ``None`` when no
    turn was answered after the warm-up."""
    if len(done) <= warmup:
        return None
    after = [b for at, b in timeline if at >= done[warmup - 1]]
    return max(after) - after[0] if after else None


def _client_figures(records: list[TurnRecord]) -> dict:
    """Turns sent and answered, and turn latency and time to first token (p50, p95), of one client kind's turns."""
    latencies = [r.latency_s for r in records if r.latency_s is not None]
    first = [r.first_token_s for r in records if r.first_token_s is not None]

    def rnd(x: float | None) -> float | None:
        return None if x is None else round(x, 3)

    return {"sent": len(records), "answered": sum(r.answered for r in records),
            "latency_s": {"p50": rnd(_percentile(latencies, 50)), "p95": rnd(_percentile(latencies, 95))},
            "first_token_s": {"p50": rnd(_percentile(first, 50)), "p95": rnd(_percentile(first, 95))}}


def _machine() -> dict:
    import gradio

    from bot.bench.measure import machine

    return machine("cpu") | {"gradio": gradio.__version__}


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def engine_ratios(engine: dict, one_at_a_time: dict) -> dict:
    """Throughput and p95 latency of the batching engine over the one-at-a-time server, on the same load."""
    return {"throughput": _ratio(engine["turns_per_s"], one_at_a_time["turns_per_s"]),
            "p95_latency": _ratio(engine["latency_s"]["p95"], one_at_a_time["latency_s"]["p95"]),
            "p95_first_token": _ratio(engine["first_token_s"]["p95"], one_at_a_time["first_token_s"]["p95"])}


def summary_markdown(report: dict) -> str:
    """A short Markdown summary of :func:`run_load`'s report."""
    c, t, lat, mem, cpu = report["config"], report["turns"], report["latency_s"], report["memory_mib"], report["cpu"]
    fmt = lambda x, unit="s": "n/a" if x is None else f"{x:.2f} {unit}"  # noqa: E731
    mixed = report["mixing"]["mixed_sessions"]
    connected = "n/a" if mem["clients_connected"] is None else f"{mem['clients_connected']:.1f} MiB"
    share = 100 * (cpu["server_share_of_machine"] or 0)
    clients_cpu = "n/a" if cpu["clients_s"] is None else f"{cpu['clients_s']:.0f} s"
    clients_rss = "n/a" if mem["client_process_peak"] is None else f"{mem['client_process_peak']:.1f} MiB"
    modes = ", ".join(f"{k} {v['answered']}/{v['sent']}" for k, v in sorted(t["by_mode"].items()))
    lines = [
        f"## Load run: {c['sessions']} sessions x {c['turns']} turns, engine batch {report['engine']['max_batch']}"
        f"{', while a skill trains' if report.get('training') else ''} ({'PASS' if report['ok'] else 'FAIL'})",
        "",
        f"Backbone `{c['backbone']}`, skills {c['skills'] or 'none'}, manager {'on' if c['manager'] else 'off'}, "
        f"replies capped at {c['max_new_tokens']} new tokens, server on {c['server']}, clients in {c['clients']} ({c.get('client_kinds', 'gradio')}); "
        f"{report['machine']['cores']} cores, torch threads {report['machine']['torch_threads']}, "
        f"engine threads {report['engine']['threads'] or 'torch threads'}.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| turns answered | {t['answered']} / {t['requested']} (sent {t['sent']}) |",
        f"| sessions with mixed history | {len(mixed)}{' ' + str(mixed) if mixed else ''} |",
        f"| errors | {report['errors']['count']} |",
        f"| timed out | {'yes' if report['timed_out'] else 'no'} |",
        f"| wall time | {fmt(report['wall_s'])} |",
        f"| throughput | {fmt(report['turns_per_s'], 'turns/s')} |",
        f"| turn latency p50 / p95 / max | {fmt(lat['p50'])} / {fmt(lat['p95'])} / {fmt(lat['max'])} |",
        f"| time to first token p50 / p95 | {fmt(report['first_token_s']['p50'])} / {fmt(report['first_token_s']['p95'])} |",
        f"| server RSS: baseline (served, idle) | {mem['baseline']:.1f} MiB |",
        f"| server RSS: all clients connected | {connected} |",
        f"| server RSS: peak under load | {mem['peak']:.1f} MiB (+{mem['growth']:.1f} MiB) |",
        f"| server RSS: growth over the {mem['turns_after_warmup']} turns after the first {mem['warmup_turns']} | "
        f"{fmt(mem['growth_after_warmup'], 'MiB')} (most above its first sample) |",
        *([f"| server RSS: high-water growth, peak of the last {mem['window_turns']} turns minus peak of the "
           f"{mem['window_turns']} after the first {mem['warmup_turns']} | {fmt(mem['high_water_growth'], 'MiB')} |"]
          if mem.get("high_water_growth") is not None else []),
        f"| CPU: server / clients | {cpu['server_s']:.0f} s ({share:.0f}% of the machine) / {clients_cpu} |",
        f"| load average (1 min) | {cpu['loadavg_1min_start']:.1f} at start, {cpu['loadavg_1min_end']:.1f} at end |",
        f"| client process RSS peak (not in the server's) | {clients_rss} |",
        f"| by mode (answered/sent) | {modes} |",
        *(f"| {kind} clients: answered/sent, turn latency p50 / p95, first token p50 / p95 | {b['answered']}/{b['sent']}, "
          f"{fmt(b['latency_s']['p50'])} / {fmt(b['latency_s']['p95'])}, {fmt(b['first_token_s']['p50'])} / "
          f"{fmt(b['first_token_s']['p95'])} |" for kind, b in report.get("by_client", {}).items()),
        f"| engine: decoding steps / rows per step / prefill passes | {report['engine']['steps']} / "
        f"{report['engine']['rows_per_step']} / {report['engine']['prefills']} |",
        *([f"| engine thread busy: routing / prefill and join / decoding steps | "
           + " / ".join(f"{report['engine']['busy_s'][k]:.1f} s" for k in ('routing', 'prefill', 'decoding')) + " |"]
          if report["engine"].get("busy_s") else []),
    ]
    if report.get("training"):
        training = report["training"]
        lines.append(f"| training beside the load | {training['outcome']}; trained through the whole load: "
                     f"{'yes' if training['trained_through_the_load'] else 'no'} |")
    if t["auto_routed_to"]:
        routed = ", ".join(f"{k} {v}" for k, v in sorted(t["auto_routed_to"].items()))
        lines.append(f"| auto turns routed to | {routed} |")
    for e in report["errors"]["first"][:5]:
        lines.append(f"\n- error: {e}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot.bench.loadtest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default=None, help="hub id or local folder (default: the bundled backbone)")
    parser.add_argument("--skills-dir", default=None, help="installed skills (default: bundled, or $ADAPTERBOT_SKILLS_DIR)")
    parser.add_argument("--sessions", type=int, default=16, help="concurrent client sessions (default 16)")
    parser.add_argument("--turns", type=int, default=10, help="turns per session (default 10)")
    parser.add_argument("--max-new-tokens", type=int, default=24, help="reply length cap sent with every turn (default 24)")
    parser.add_argument("--timeout", type=float, default=900.0, help="stop the run after this many seconds (default 900)")
    parser.add_argument("--client-timeout", type=float, default=60.0,
                        help="each client's HTTP timeout in seconds (gradio_client/httpx default: 5; default here 60)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-batch", type=int, default=32, help="the engine's most rows decoding together (default 32, the engine's own)")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the same load on the one-at-a-time server (engine batch 1) run beside it for the ratios")
    parser.add_argument("--clients", choices=CLIENTS, default="mixed",
                        help="the sessions' client: gradio_client on the web page's API, the openai client on /v1, "
                             "or mixed: odd-numbered sessions on openai (default mixed)")
    parser.add_argument("--during-training", type=Path, default=None, metavar="DATA",
                        help="also run the load while a skill trains from DATA in a child process, as the Skills tab "
                             "trains one, on a copy of the skills folder (the ratio of p95 turn latencies is reported)")
    parser.add_argument("--out", type=Path, default=None, help="write the report as JSON here")
    args = parser.parse_args(argv)
    if args.sessions < 1 or args.turns < 1 or not 1 <= args.max_new_tokens <= 256 or args.timeout <= 0 \
            or args.client_timeout <= 0:
        parser.error("--sessions and --turns must be >= 1, --max-new-tokens in 1..256, --timeout and --client-timeout > 0")
    try:
        import gradio_client  # noqa: F401
        import openai  # noqa: F401
        import psutil  # noqa: F401
    except ImportError as e:
        parser.error(f"{e.name} is needed for the load run: pip install -e '.[test]'")

    import torch

    from bot import AdapterBot

    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    copy = None
    if args.during_training:  # the skill that trains is installed if it finishes: never into the real folder
        from skills import default_skills_dir

        copy = Path(tempfile.mkdtemp(prefix="adapterbot-loadtest-")) / "skills"
        shutil.copytree(args.skills_dir or default_skills_dir(), copy)
    try:
        return _runs(args, argv, AdapterBot.from_pretrained(args.backbone, copy or args.skills_dir, device=args.device))
    finally:
        if copy is not None:
            shutil.rmtree(copy.parent, ignore_errors=True)


def _runs(args: argparse.Namespace, argv: Sequence[str] | None, bot) -> int:
    """The load runs :func:`main` asked for, side by side, their summary printed and the report written."""
    load = dict(sessions=args.sessions, turns=args.turns, max_new_tokens=args.max_new_tokens, timeout_s=args.timeout,
                client_timeout_s=args.client_timeout, clients=args.clients)
    report = run_load(bot, max_batch=args.max_batch, **load)
    if not args.no_baseline:  # the same load, one turn at a time, in the same run: the gain is a ratio
        baseline = run_load(bot, max_batch=1, **load)
        report["baseline"] = {k: v for k, v in baseline.items() if k != "records"}
        report["ratios"] = engine_ratios(report, baseline)
        report["ok"] = report["ok"] and baseline["ok"]
    if args.during_training:
        beside = run_load(bot, max_batch=args.max_batch, training=args.during_training, **load)
        report["during_training"] = {k: v for k, v in beside.items() if k != "records"}
        report.setdefault("ratios", {})["p95_latency_training"] = _ratio(beside["latency_s"]["p95"], report["latency_s"]["p95"])
        report["ok"] = report["ok"] and beside["ok"]
    report["command"] = "python -m bot.bench.loadtest " + " ".join(argv if argv is not None else sys.argv[1:])
    print(summary_markdown(report))
    if "baseline" in report:
        print("\n" + summary_markdown(report["baseline"]))
        r = report["ratios"]
        print(f"\nEngine vs one at a time: throughput {r['throughput']}x (target >= 2.5), "
              f"p95 turn latency {r['p95_latency']}x (target <= 0.5)")
    if "during_training" in report:
        print("\n" + summary_markdown(report["during_training"]))
        print(f"\nWhile a skill trains ({report['during_training']['training']['outcome']}) vs not: p95 turn latency "
              f"{report['ratios']['p95_latency_training']}x (target <= 1.5)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"\nreport: {args.out}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
