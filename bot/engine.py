"""The engine: one thread owns generation and runs every turn in shared, continuously batched steps.

Turns from every caller (web UI, HTTP APIs, Python) are submitted as :class:`Request` objects, or as
:class:`Pending` ones whose route the dialogue manager still has to choose. The engine thread admits
waiting turns between decoding steps (the pending ones routed in one ``route_batch`` call, then all
newcomers prefilled in one pass, each on its own skill, joining the batch's KV cache left-padded),
runs one forward pass per step for all active
rows (each row on its own skill or blend: the route is data, :mod:`bot.adapter.routing`), and lets a
row leave as soon as it ends. Each row keeps its own decoding settings, its own random generator
(sampling with a seed gives the same reply alone or in any batch) and its own token stream.

Why not transformers' ``ContinuousBatchingManager``: it packs all requests' tokens into one row of a
paged cache, so a per-row adapter gather (what lets one pass mix skills) would need a per-token skill
map threaded through its scheduler; the scheduler below is a small decode loop over a batched
``DynamicCache`` with per-row positions and padding masks.
"""
from __future__ import annotations

import atexit
import contextlib
import inspect
import queue
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch
from transformers import (Cache, DynamicCache, DynamicLayer, LogitsProcessorList, NoRepeatNGramLogitsProcessor,
                          RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper)

from .adapter import AdaptedModel
from .adapter.routing import Row
from .generation import TopP, candidate_count, likeliest, reply_processors

DECODING_KEYS = ("do_sample", "temperature", "top_p", "max_new_tokens", "repetition_penalty", "no_repeat_ngram_size",
                 "reply_no_repeat_ngram_size", "copy_boost", "candidates")


@dataclass
class Request:
    """One turn to generate.

    Attributes:
        context: the prompt's token ids.
        route: the row's skill, ``None`` (bare backbone) or a ``{skill: weight}`` blend.
        decoding: ``do_sample``, ``temperature``, ``top_p``, ``max_new_tokens``, ``repetition_penalty``,
            ``no_repeat_ngram_size``, ``reply_no_repeat_ngram_size``, ``copy_boost``, ``candidates`` (as
            :meth:`DecodingSpec.generate_kwargs`). With ``candidates`` k > 1 (sampling), the turn runs as k rows and
            its generation gets the likeliest reply whole, when all k have ended (:class:`_Ranked`).
        seed: seed of the row's own generator when sampling (``None``: a fresh random one); candidate ``i`` of a
            ranked turn uses ``seed + i``.
        copy_source: the tokens ``copy_boost`` may copy (:func:`bot.dialogue.copy_source`; empty: none).
        misfit: for a ranked turn, ``misfit(reply ids)``: a candidate of a lower misfit wins over any of a higher
            one (``None``: all 0; see :func:`bot.social.misfit`).
    """

    context: list[int]
    route: Row
    decoding: dict[str, Any]
    seed: int | None = None
    copy_source: list[int] = field(default_factory=list)
    misfit: Callable[[list[int]], int] | None = None


@dataclass
class Pending:
    """A turn whose request depends on routing: the engine routes the histories of all the pending turns it
    admits together in one ``route_batch`` call (one backbone pass for all), then asks each for its request.

    Attributes:
        history: the conversation to route, oldest turn first.
        route_batch: the router, e.g. ``DialogueManager.route_batch`` (histories -> decisions).
        build: the turn's :class:`Request` for its decision, or ``None`` when only the decision was wanted
            (the generation then ends with no tokens). Runs in the engine thread; an error fails this turn alone.
    """

    history: list[str]
    route_batch: Callable[[list[list[str]]], list[Any]]
    build: Callable[[Any], Request | None]


class Generation:
    """A submitted request's output: iterate for token ids as they come, or wait for :meth:`result`."""

    def __init__(self) -> None:
        self.tokens: list[int] = []
        self.error: BaseException | None = None
        self.cancelled = False
        self._events: queue.Queue = queue.Queue()
        self._done = threading.Event()

    @classmethod
    def finished(cls) -> "Generation":
        """A generation that is already over, with no tokens (a turn with nothing to generate)."""
        generation = cls()
        generation._finish()
        return generation

    def cancel(self) -> None:
        """Stop generating (a client went away, a stop string ended the reply): the row leaves at the next step."""
        self.cancelled = True

    def _push(self, token: int) -> None:
        self.tokens.append(token)
        self._events.put(token)

    def _finish(self, error: BaseException | None = None) -> None:
        self.error = error
        self._done.set()
        self._events.put(None)

    def __iter__(self) -> Iterator[int]:
        while True:
            token = self._events.get()
            if token is None:
                if self.error is not None:
                    raise self.error
                return
            yield token

    def result(self, timeout: float | None = None) -> list[int]:
        if not self._done.wait(timeout):
            raise TimeoutError(f"no reply within {timeout} s")
        if self.error is not None:
            raise self.error
        return list(self.tokens)


class _Ranked:
    """The candidate rows of one sample-and-rank turn: when the last has ended, the likeliest reply goes to
    the turn's generation in one piece (a candidate's tokens are never streamed)."""

    def __init__(self, generation: Generation, count: int) -> None:
        self.generation, self.left, self.ended = generation, count, []

    def end(self, row: _Row) -> None:
        self.ended.append(row)
        self.left -= 1
        if self.left == 0:
            misfit = self.ended[0].request.misfit or (lambda ids: 0)
            keys = [(row.stopped, row.logprob / max(row.scored, 1)) for row in self.ended]
            best = self.ended[likeliest(keys, [misfit(row.ids[len(row.request.context):]) for row in self.ended])]
            for token in best.ids[len(best.request.context):]:
                self.generation._push(token)
            self.generation._finish()


class _Row:
    """An active request (or one candidate of a ranked one): its tokens so far, position, logits processors
    and generator."""

    def __init__(self, request: Request, generation: Generation, eos: int, ranked: _Ranked | None = None,
                 seed_offset: int = 0) -> None:
        d = request.decoding
        unknown = sorted(set(d) - set(DECODING_KEYS))
        if unknown:
            raise ValueError(f"unknown decoding setting(s) {unknown}; known: {', '.join(DECODING_KEYS)}")
        self.request, self.generation, self.eos, self.ranked = request, generation, eos, ranked
        self.stopped = False  # ended with end-of-text, not cut at max_new_tokens
        self.ended = False  # finished; its row stays in the batch, unused, until the next compaction
        self.logprob, self.scored = 0.0, 0  # a candidate's summed raw log-probability, over this many tokens
        self.ids = list(request.context)
        self.max_new = int(d.get("max_new_tokens", 40))
        self.sample = bool(d.get("do_sample", False))
        processors = LogitsProcessorList()
        if d.get("repetition_penalty", 1.0) != 1.0:
            processors.append(RepetitionPenaltyLogitsProcessor(float(d["repetition_penalty"])))
        if d.get("no_repeat_ngram_size"):
            processors.append(NoRepeatNGramLogitsProcessor(int(d["no_repeat_ngram_size"])))
        processors.extend(reply_processors(dict(d), [request.copy_source], len(self.ids)))
        if self.sample:
            if d.get("temperature", 1.0) != 1.0:
                processors.append(TemperatureLogitsWarper(float(d["temperature"])))
            if d.get("top_p", 1.0) < 1.0:
                processors.append(TopP(float(d["top_p"])))
        self.processors = processors
        self.generator = torch.Generator()
        if request.seed is not None:
            self.generator.manual_seed(int(request.seed) + seed_offset)
        else:
            self.generator.seed()

    @property
    def position(self) -> int:
        """Position of the next input token (the number of tokens in the cache)."""
        return len(self.ids) - 1

    def take(self, scores: torch.Tensor, logprobs: torch.Tensor | None) -> bool:
        """Pick the next token from the processed ``scores`` ``[1, vocab]`` (a candidate adds its raw
        ``logprobs`` ``[vocab]``); True when the row has ended."""
        if self.sample:  # drawn among the tokens top-p and the bans left, not over the whole vocabulary
            allowed = (scores[0] > -float("inf")).nonzero()[:, 0]
            token = int(allowed[torch.multinomial(torch.softmax(scores[0, allowed], -1), 1, generator=self.generator)])
        else:
            token = int(scores.argmax(-1))
        if logprobs is not None:
            self.logprob += float(logprobs[token])
            self.scored += 1
        if token == self.eos:
            self.stopped = True
            return True
        self.ids.append(token)
        if self.ranked is None:
            self.generation._push(token)
        return len(self.ids) - len(self.request.context) >= self.max_new

    def finish(self) -> None:
        """The row has ended: its turn ends too, or, for a candidate, waits for its other candidates."""
        self.ended = True
        if self.ranked is None:
            self.generation._finish()
        else:
            self.ranked.end(self)


_STALE = object()
ROOM = 64  # most tokens a batch's cache grows by before its buffers are copied into larger ones
ROW_ROOM = 8  # spare rows a batch's cache buffers hold, so that turns can join without a copy (a ranked turn's 8)
# A batch is compacted (its cache copied without its ended rows) when, after the waiting turns have joined, no more than
# this share of its rows is live. Until then an ended row is decoded and ignored, and the next turn to join takes its
# row in place. A copy of a 26-row cache cost about as much as a decoding step, a row in a step a 26th of one:
# compacting at every ended row took 19 s of a 105 s load run (python -m bot.bench.loadtest under py-spy).
COMPACT_AT = 0.75


class _GrowingLayer(DynamicLayer):
    """A layer's keys and values ``[B, heads, T, head_dim]`` in buffers with room to grow, in columns and in rows: a
    step writes its token in place (``DynamicLayer`` copies the whole cache into a new tensor at every step), and a
    joining row is written into a free row in place (:meth:`place`)."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, rows: int, length: int) -> None:
        super().__init__()
        self.device, self.is_initialized = keys.device, True
        self._buffers, self._rows, self._length = (keys, values), rows, length
        self._views()

    def _views(self) -> None:
        keys, values = self._buffers
        self.keys, self.values = keys[: self._rows, :, : self._length], values[: self._rows, :, : self._length]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        end = self._length + key_states.shape[2]
        if end > self._buffers[0].shape[2]:
            room = self.row_capacity - self._rows
            self._buffers = (_stacked([self.keys], self._length, room), _stacked([self.values], self._length, room))
        keys, values = self._buffers
        keys[: self._rows, :, self._length:end] = key_states
        values[: self._rows, :, self._length:end] = value_states
        self._length = end
        self._views()
        return self.keys, self.values

    def place(self, slots: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Write rows ``keys`` and ``values`` ``[m, heads, w, head_dim]`` (``w`` no wider than the cache) into rows
        ``slots`` (free rows, or the next spare ones), right-aligned, the columns before them zeroed."""
        start = self._length - keys.shape[2]
        for buffer, new in zip(self._buffers, (keys, values)):
            buffer[slots, :, :start] = 0
            buffer[slots, :, start : self._length] = new
        self._rows = max(self._rows, int(slots.max()) + 1)
        self._views()

    @property
    def row_capacity(self) -> int:
        return self._buffers[0].shape[0]


class _GrowingCache(DynamicCache):
    def __init__(self, kv: list[tuple[list[torch.Tensor], list[torch.Tensor]]], width: int) -> None:
        """Per layer, the keys and the values of row groups, each group left-padded to ``width``."""
        Cache.__init__(self, layers=[_GrowingLayer(_stacked(k, width, ROW_ROOM), _stacked(v, width, ROW_ROOM),
                                                   sum(p.shape[0] for p in k), width) for k, v in kv])


def _stacked(parts: list[torch.Tensor], width: int, row_room: int = 0) -> torch.Tensor:
    """``parts`` ``[b, heads, t, head_dim]`` stacked along the batch, each left-padded with zeros to ``width``
    columns, in a buffer with room for more columns after them and ``row_room`` more rows (uninitialised: a step
    writes a column, and :meth:`_GrowingLayer.place` a row, before any view reaches it). Only the padding is zeroed
    (masked out, but attention multiplies it by 0, so it must be finite): zeroing whole buffers took a tenth of the
    engine thread's time under load (py-spy, session 13)."""
    first = parts[0]
    rows = sum(p.shape[0] for p in parts)
    out = first.new_empty(rows + row_room, first.shape[1], width + ROOM, first.shape[3])
    row = 0
    for p in parts:
        taken, start = slice(row, row + p.shape[0]), width - p.shape[2]
        out[taken, :, :start] = 0
        out[taken, :, start:width] = p
        row += p.shape[0]
    return out


@dataclass
class _Batch:
    rows: list[_Row] = field(default_factory=list)
    cache: _GrowingCache | None = None
    mask: torch.Tensor | None = None  # [B, T]: 1 where the cache holds a real token
    plan: Any = _STALE  # the route plan of the current rows (rebuilt when rows join or leave)


class Engine:
    """Continuous batching of generation requests on one :class:`AdaptedModel` (one engine per model).

    Args:
        model, tokenizer: the model every request runs on.
        max_batch: most rows decoding at once; more requests wait for free rows (a sample-and-rank turn takes one
            per candidate; one larger than ``max_batch`` runs alone). 32: 16 concurrent sessions, a quarter of them
            on the bare backbone's 8 candidates, mostly fit (``python -m bot.bench.loadtest``).
        threads: torch intra-op threads, set by the engine thread when it starts (``None``: leave torch's).
            One by default: the serving shapes are too small to gain from a second thread, and an OpenMP team
            of two waits at every op for its other thread, which a busy machine (the web server's own threads,
            other processes) keeps descheduled: a reply took 1.85 s instead of 0.24 s on a loaded 2-core
            machine. torch's setting is the process's: threads that start torch work later get it too.
    """

    def __init__(self, model: AdaptedModel, tokenizer, max_batch: int = 32, threads: int | None = 1) -> None:
        self.model, self.tokenizer, self.max_batch, self.threads = model, tokenizer, max_batch, threads
        self.eos = tokenizer.eos_token_id
        self._waiting: queue.Queue = queue.Queue()
        self._wake = threading.Event()
        self._step_lock = threading.RLock()  # held for each step; paused() holds it to change skills in between
        self._pauses = 0  # callers waiting in paused(): the loop lets them in before its next step
        self._pause_done = threading.Condition()
        self._batch = _Batch()
        self._deferred: list[tuple[Request, Generation]] = []  # routed turns that did not fit: first in line
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.steps = 0  # decoding steps run, for tests and the load report
        self.row_steps = 0  # rows decoded, summed over the steps
        self.prefills = 0  # prefill passes run (one per group of turns admitted together)
        self.seconds = {"routing": 0.0, "prefill": 0.0, "decoding": 0.0}  # the engine thread's time, by what it did
        forward = inspect.signature(model.backbone.forward).parameters
        self._cache_arg = "cache" if "cache" in forward else "past_key_values"  # renamed in transformers 5.24
        self._closed = False
        atexit.register(_close_at_exit, weakref.ref(self))

    # ---- callers ------------------------------------------------------------------
    def submit(self, request: Request | Pending) -> Generation:
        """Queue ``request``; it joins the running batch at the next step boundary."""
        if self._closed:
            raise RuntimeError("the engine is closed")
        generation = Generation()
        self._waiting.put((request, generation))
        self._wake.set()
        self._ensure_thread()
        return generation

    def generate(self, request: Request) -> list[int]:
        return self.submit(request).result()

    def paused(self):
        """A context in which no step runs: load or remove skills inside it (rows see the change at the next step)."""
        return _Paused(self)

    def close(self, timeout: float = 10.0) -> None:
        """Stop the engine thread after its current step; turns still running or waiting end with an error. Called
        at interpreter exit: a daemon thread still inside a torch op while the interpreter is torn down can abort
        the process ("terminate called without an active exception")."""
        self._closed = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    @property
    def active(self) -> int:
        """Rows decoding now (ended rows awaiting compaction not counted)."""
        return sum(not row.ended for row in self._batch.rows)

    # ---- the engine thread ------------------------------------------------------------
    def _ensure_thread(self) -> None:
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="adapterbot-engine", daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        if self.threads:
            torch.set_num_threads(self.threads)
        while True:
            if not self._batch.rows and not self._deferred and self._waiting.empty() and not self._closed:
                self._wake.wait()  # sleep until a request comes
            self._wake.clear()
            with self._pause_done:
                self._pause_done.wait_for(lambda: self._pauses == 0)
            if self._closed:
                self._fail_all(RuntimeError("the engine is closed"))
                return
            with self._step_lock:
                try:
                    self._admit()
                    self._compact()
                    if self._batch.rows:
                        with self._timed("decoding"):
                            self._step()
                except BaseException as e:  # a failed step fails its rows; the engine goes on
                    for row in self._batch.rows:
                        row.generation._finish(e)
                    self._batch = _Batch()

    def _fail_all(self, error: BaseException) -> None:
        """End every running and waiting turn with ``error``."""
        for row in self._batch.rows:
            if not row.ended:
                row.generation._finish(error)
        self._batch = _Batch()
        waiting = self._deferred
        self._deferred = []
        while True:
            try:
                waiting.append(self._waiting.get_nowait())
            except queue.Empty:
                break
        for _, generation in waiting:
            generation._finish(error)

    @torch.no_grad()
    def _admit(self) -> None:
        """Take the waiting turns there are free rows for (a ranked turn takes one per candidate, a pending one is
        counted as one until routed), route the pending ones, and prefill them all together. A routed turn that
        no longer fits waits, first in line, for a later step; an empty batch always takes its first turn."""
        busy, planned, taken = self.active, 0, []
        while busy + planned < self.max_batch:
            if self._deferred:
                request, generation = self._deferred.pop(0)
            else:
                try:
                    request, generation = self._waiting.get_nowait()
                except queue.Empty:
                    break
            if generation.cancelled:
                generation._finish()
            else:
                taken.append((request, generation))
                planned += _rows_needed(request)
        rows = []
        with self._timed("routing"):
            routed = self._routed(taken)
        for request, generation in routed:
            if (busy or rows) and busy + len(rows) + _rows_needed(request) > self.max_batch:
                self._deferred.append((request, generation))
                continue
            try:
                self.model.plan([request.route])  # an unknown skill or a bad blend fails this turn alone
                rows.extend(self._rows(request, generation))
            except BaseException as e:
                generation._finish(e)
        if rows:
            with self._timed("prefill"):
                self._prefill(rows)

    @contextlib.contextmanager
    def _timed(self, what: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[what] += time.perf_counter() - start

    def _rows(self, request: Request, generation: Generation) -> list[_Row]:
        """The turn's row, or its candidates' rows for sample-and-rank."""
        k = _rows_needed(request)
        if k == 1:
            return [_Row(request, generation, self.eos)]
        ranked = _Ranked(generation, k)
        return [_Row(request, generation, self.eos, ranked, i) for i in range(k)]

    def _routed(self, taken: list[tuple[Request | Pending, Generation]]) -> list[tuple[Request, Generation]]:
        """The requests of ``taken``, the pending ones routed: one ``route_batch`` call per router."""
        decisions: dict[int, Any] = {}
        groups: dict[Callable, list[int]] = {}
        for i, (item, _) in enumerate(taken):
            if isinstance(item, Pending):
                groups.setdefault(item.route_batch, []).append(i)
        for route_batch, members in groups.items():
            try:
                decisions.update(zip(members, route_batch([taken[i][0].history for i in members])))
            except BaseException as e:
                for i in members:
                    taken[i][1]._finish(e)
        ready = []
        for i, (item, generation) in enumerate(taken):
            if isinstance(item, Pending):
                if i not in decisions:
                    continue  # its routing failed
                try:
                    item = item.build(decisions[i])
                except BaseException as e:
                    generation._finish(e)
                    continue
                if item is None:
                    generation._finish()
                    continue
            ready.append((item, generation))
        return ready

    def _prefill(self, rows: list[_Row]) -> None:
        """Run the new rows' prompts in one pass, left-padded, each on its own route; pick each row's first
        token; the rows that go on join the batch's cache."""
        device = next(self.model.backbone.parameters()).device
        turns = [id(row.ranked or row) for row in rows]  # a ranked turn's candidates share one prompt
        prompts = list(dict.fromkeys(turns))
        source = torch.tensor([prompts.index(turn) for turn in turns])  # row -> its prompt's row in the pass
        prompted = [rows[turns.index(turn)] for turn in prompts]
        width = max(len(row.ids) for row in prompted)
        ids = torch.full((len(prompted), width), self.eos, dtype=torch.long)
        mask = torch.zeros(len(prompted), width, dtype=torch.long)
        for i, row in enumerate(prompted):
            ids[i, width - len(row.ids):] = torch.tensor(row.ids)
            mask[i, width - len(row.ids):] = 1
        ids, mask = ids.to(device), mask.to(device)
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1,
                         route=[row.request.route for row in prompted])
        self.prefills += 1
        going = []
        for i, ended in enumerate(_choose(rows, out.logits[source, -1])):
            if ended or rows[i].max_new <= 0:
                rows[i].finish()
            else:
                going.append(i)
        if not going:
            return
        index = source[going].to(device)
        mask = mask[index]
        start = int((mask.sum(0) > 0).nonzero()[0])  # leading columns that are padding in every row
        pad = (mask[:, None, start:, None] == 0)
        kv = [(layer.keys[index, :, start:].masked_fill(pad, 0), layer.values[index, :, start:].masked_fill(pad, 0))
              for layer in out.to_tuple()[1].layers]
        self._join([rows[i] for i in going], kv, mask[:, start:])

    def _join(self, rows: list[_Row], kv: list[tuple[torch.Tensor, torch.Tensor]], mask: torch.Tensor) -> None:
        """Add ``rows`` to the batch: into ended rows' places and the cache's spare rows, in place, when they are no
        wider than the cache; else the cache is copied once, without its ended rows, with them."""
        b = self._batch
        if b.rows and mask.shape[1] <= b.mask.shape[1]:
            free = [i for i, row in enumerate(b.rows) if row.ended]
            free += range(len(b.rows), b.cache.layers[0].row_capacity)
            if len(free) >= len(rows):
                slots = free[: len(rows)]
                index = torch.tensor(slots, device=mask.device)
                for layer, (k, v) in zip(b.cache.layers, kv):
                    layer.place(index, k, v)
                mask = _left_pad_mask(mask, b.mask.shape[1])
                appended = [slot for slot in slots if slot >= len(b.rows)]
                if appended:
                    b.mask = torch.cat([b.mask, mask.new_zeros(len(appended), mask.shape[1])])
                    b.rows = b.rows + [None] * len(appended)
                b.mask[index] = mask
                for slot, row in zip(slots, rows):
                    b.rows[slot] = row
                b.plan = _STALE
                return
        if any(row.ended for row in b.rows):
            self._keep([i for i, row in enumerate(b.rows) if not row.ended], copy=False)
            b = self._batch
        if not b.rows:
            b.rows, b.mask = rows, mask
            b.cache = _GrowingCache([([k], [v]) for k, v in kv], mask.shape[1])
        else:
            width = max(b.mask.shape[1], mask.shape[1])
            b.cache = _GrowingCache([([old.keys, k], [old.values, v]) for old, (k, v) in zip(b.cache.layers, kv)], width)
            b.mask = torch.cat([_left_pad_mask(b.mask, width), _left_pad_mask(mask, width)])
            b.rows = b.rows + rows
        b.plan = _STALE

    def _compact(self) -> None:
        """Copy the cache without its ended rows once no more than :data:`COMPACT_AT` of the rows are live (turns that
        joined have taken ended rows' places first)."""
        left = [i for i, row in enumerate(self._batch.rows) if not row.ended]
        if len(left) <= COMPACT_AT * len(self._batch.rows):
            self._keep(left)

    @torch.no_grad()
    def _step(self) -> None:
        b = self._batch
        device = b.mask.device
        if b.plan is _STALE:
            try:
                b.plan = self.model.plan([row.request.route for row in b.rows])
            except (KeyError, ValueError):  # a skill went away: its rows end, the others go on
                self._drop_unroutable()
                if not b.rows:
                    return
                b.plan = self.model.plan([row.request.route for row in b.rows])
        inputs = torch.tensor([[row.ids[-1]] for row in b.rows], device=device)
        positions = torch.tensor([[row.position] for row in b.rows], device=device)
        mask = torch.cat([b.mask, torch.ones(len(b.rows), 1, dtype=b.mask.dtype, device=device)], dim=1)
        with self.model.route(b.plan):
            out = self.model.backbone(input_ids=inputs, attention_mask=mask, position_ids=positions, use_cache=True,
                                      **{self._cache_arg: b.cache})  # the cache grows in place
        self.steps += 1
        self.row_steps += len(b.rows)
        b.mask = mask
        for i, ended in enumerate(_choose(b.rows, out.logits[:, -1])):
            if ended and not b.rows[i].ended:
                b.rows[i].finish()

    def _drop_unroutable(self) -> None:
        """End, with the error, each row whose skill went away (removed between steps); the others go on."""
        keep = []
        for i, row in enumerate(self._batch.rows):
            if row.ended:
                continue
            try:
                self.model.plan([row.request.route])
                keep.append(i)
            except (KeyError, ValueError) as e:
                row.generation._finish(e)
        if len(keep) < len(self._batch.rows):
            self._keep(keep)

    def _keep(self, keep: list[int], copy: bool = True) -> None:
        """Keep only rows ``keep``; drop cache columns no remaining row uses. ``copy=False``: leave the kept keys and
        values as (indexed) tensors in ``layers``' ``keys`` and ``values``, for :meth:`_join` to copy once."""
        b = self._batch
        if not keep:
            self._batch = _Batch()
            return
        index = torch.tensor(keep, device=b.mask.device)
        b.rows = [b.rows[i] for i in keep]
        b.mask = b.mask[index]
        start = int((b.mask.sum(0) > 0).nonzero()[0])  # leading columns that are padding in every row
        b.mask = b.mask[:, start:]
        kv = [([layer.keys[index, :, start:]], [layer.values[index, :, start:]]) for layer in b.cache.layers]
        if copy:
            b.cache = _GrowingCache(kv, b.mask.shape[1])
        else:
            for layer, (k, v) in zip(b.cache.layers, kv):
                layer.keys, layer.values = k[0], v[0]
        b.plan = _STALE


def _choose(rows: list[_Row], logits: torch.Tensor) -> list[bool]:
    """Each row's next token from its logits (row ``i`` of ``logits`` ``[len(rows), vocab]``); True where a row
    has ended or its turn was cancelled.

    The live candidates of one ranked turn share their settings and their length, so their logits go through
    the processors in one call: a sampled row's cost (top-p sorts the vocabulary) is paid once a step per turn,
    not once per candidate.
    """
    ended = [row.ended or row.generation.cancelled for row in rows]
    turns: dict[int, list[int]] = {}
    for i, row in enumerate(rows):
        if not ended[i]:
            turns.setdefault(id(row.ranked or row), []).append(i)
    for members in turns.values():
        first = rows[members[0]]
        raw = logits[torch.tensor(members, device=logits.device)].float()
        scores = first.processors(torch.tensor([rows[i].ids for i in members]), raw.clone())
        logprobs = torch.log_softmax(raw, -1) if first.ranked is not None else None
        for j, i in enumerate(members):
            ended[i] = rows[i].take(scores[j : j + 1], None if logprobs is None else logprobs[j])
    return ended


def _close_at_exit(ref: weakref.ref) -> None:
    engine = ref()
    if engine is not None:
        engine.close()


def _rows_needed(request: Request | Pending) -> int:
    """Rows a turn takes: its candidates when it samples and ranks, else one (a pending turn: one, until routed)."""
    return 1 if isinstance(request, Pending) else candidate_count(request.decoding)


def _left_pad_mask(mask: torch.Tensor, width: int) -> torch.Tensor:
    if mask.shape[1] == width:
        return mask
    return torch.cat([mask.new_zeros(mask.shape[0], width - mask.shape[1]), mask], dim=1)


class _Paused:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def __enter__(self) -> None:
        engine = self.engine
        with engine._pause_done:
            engine._pauses += 1
        engine._step_lock.acquire()
        engine._batch.plan = _STALE  # skills may change: the rows' slots are looked up again

    def __exit__(self, *exc) -> None:
        engine = self.engine
        engine._step_lock.release()
        with engine._pause_done:
            engine._pauses -= 1
            engine._pause_done.notify_all()
