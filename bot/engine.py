"""The engine: one thread owns generation and runs every turn in shared, continuously batched steps.

Turns from every caller (web UI, HTTP APIs, Python) are submitted as :class:`Request` objects. The
engine thread admits waiting requests between decoding steps (each is prefilled alone, on its own
skill, then joins the batch's KV cache, left-padded), runs one forward pass per step for all active
rows (each row on its own skill or blend: the route is data, :mod:`bot.adapter.routing`), and lets a
row leave as soon as it ends. Each row keeps its own decoding settings, its own random generator
(sampling with a seed gives the same reply alone or in any batch) and its own token stream.

Why not transformers' ``ContinuousBatchingManager``: it packs all requests' tokens into one row of a
paged cache, so a per-row adapter gather (what lets one pass mix skills) would need a per-token skill
map threaded through its scheduler; the scheduler below is a small decode loop over a batched
``DynamicCache`` with per-row positions and padding masks.
"""
from __future__ import annotations

import inspect
import queue
import threading
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch
from transformers import (DynamicCache, LogitsProcessorList, NoRepeatNGramLogitsProcessor,
                          RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper, TopPLogitsWarper)

from .adapter import AdaptedModel
from .adapter.routing import Row
from .generation import reply_processors

DECODING_KEYS = ("do_sample", "temperature", "top_p", "max_new_tokens", "repetition_penalty", "no_repeat_ngram_size",
                 "reply_no_repeat_ngram_size", "copy_boost")


@dataclass
class Request:
    """One turn to generate.

    Attributes:
        context: the prompt's token ids.
        route: the row's skill, ``None`` (bare backbone) or a ``{skill: weight}`` blend.
        decoding: ``do_sample``, ``temperature``, ``top_p``, ``max_new_tokens``, ``repetition_penalty``,
            ``no_repeat_ngram_size``, ``reply_no_repeat_ngram_size``, ``copy_boost`` (as :meth:`DecodingSpec.generate_kwargs`).
        seed: seed of the row's own generator when sampling (``None``: a fresh random one).
    """

    context: list[int]
    route: Row
    decoding: dict[str, Any]
    seed: int | None = None


class Generation:
    """A submitted request's output: iterate for token ids as they come, or wait for :meth:`result`."""

    def __init__(self) -> None:
        self.tokens: list[int] = []
        self.error: BaseException | None = None
        self.cancelled = False
        self._events: queue.Queue = queue.Queue()
        self._done = threading.Event()

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


class _Row:
    """An active request: its tokens so far, position, logits processors and generator."""

    def __init__(self, request: Request, generation: Generation, eos: int) -> None:
        d = request.decoding
        unknown = sorted(set(d) - set(DECODING_KEYS))
        if unknown:
            raise ValueError(f"unknown decoding setting(s) {unknown}; known: {', '.join(DECODING_KEYS)}")
        self.request, self.generation, self.eos = request, generation, eos
        self.ids = list(request.context)
        self.max_new = int(d.get("max_new_tokens", 40))
        self.sample = bool(d.get("do_sample", False))
        processors = LogitsProcessorList()
        if d.get("repetition_penalty", 1.0) != 1.0:
            processors.append(RepetitionPenaltyLogitsProcessor(float(d["repetition_penalty"])))
        if d.get("no_repeat_ngram_size"):
            processors.append(NoRepeatNGramLogitsProcessor(int(d["no_repeat_ngram_size"])))
        processors.extend(reply_processors(dict(d), [self.ids], len(self.ids), eos))
        if self.sample:
            if d.get("temperature", 1.0) != 1.0:
                processors.append(TemperatureLogitsWarper(float(d["temperature"])))
            if d.get("top_p", 1.0) < 1.0:
                processors.append(TopPLogitsWarper(float(d["top_p"])))
        self.processors = processors
        self.generator = torch.Generator()
        if request.seed is not None:
            self.generator.manual_seed(int(request.seed))
        else:
            self.generator.seed()

    @property
    def position(self) -> int:
        """Position of the next input token (the number of tokens in the cache)."""
        return len(self.ids) - 1

    def choose(self, logits: torch.Tensor) -> bool:
        """Pick the next token from ``logits`` ``[vocab]``; True when the row has ended."""
        scores = self.processors(torch.tensor([self.ids]), logits[None].float())
        if self.sample:
            token = int(torch.multinomial(torch.softmax(scores, -1), 1, generator=self.generator))
        else:
            token = int(scores.argmax(-1))
        if token == self.eos:
            return True
        self.ids.append(token)
        self.generation._push(token)
        return len(self.ids) - len(self.request.context) >= self.max_new


_STALE = object()


@dataclass
class _Batch:
    rows: list[_Row] = field(default_factory=list)
    kv: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)  # per layer [B, heads, T, head_dim]
    mask: torch.Tensor | None = None  # [B, T]: 1 where the cache holds a real token
    plan: Any = _STALE  # the route plan of the current rows (rebuilt when rows join or leave)


class Engine:
    """Continuous batching of generation requests on one :class:`AdaptedModel` (one engine per model).

    Args:
        model, tokenizer: the model every request runs on.
        max_batch: most rows decoding at once; more requests wait for a free row.
    """

    def __init__(self, model: AdaptedModel, tokenizer, max_batch: int = 16) -> None:
        self.model, self.tokenizer, self.max_batch = model, tokenizer, max_batch
        self.eos = tokenizer.eos_token_id
        self._waiting: queue.Queue = queue.Queue()
        self._wake = threading.Event()
        self._step_lock = threading.RLock()  # held for each step; paused() holds it to change skills in between
        self._pauses = 0  # callers waiting in paused(): the loop lets them in before its next step
        self._pause_done = threading.Condition()
        self._batch = _Batch()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.steps = 0  # decoding steps run, for tests and the load report
        forward = inspect.signature(model.backbone.forward).parameters
        self._cache_arg = "cache" if "cache" in forward else "past_key_values"  # renamed in transformers 5.24

    # ---- callers ------------------------------------------------------------------
    def submit(self, request: Request) -> Generation:
        """Queue ``request``; it joins the running batch at the next step boundary."""
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

    @property
    def active(self) -> int:
        return len(self._batch.rows)

    # ---- the engine thread ------------------------------------------------------------
    def _ensure_thread(self) -> None:
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="adapterbot-engine", daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while True:
            if not self._batch.rows and self._waiting.empty():
                self._wake.wait()  # sleep until a request comes
            self._wake.clear()
            with self._pause_done:
                self._pause_done.wait_for(lambda: self._pauses == 0)
            with self._step_lock:
                try:
                    self._admit()
                    if self._batch.rows:
                        self._step()
                except BaseException as e:  # a failed step fails its rows; the engine goes on
                    for row in self._batch.rows:
                        row.generation._finish(e)
                    self._batch = _Batch()

    @torch.no_grad()
    def _admit(self) -> None:
        while len(self._batch.rows) < self.max_batch:
            try:
                request, generation = self._waiting.get_nowait()
            except queue.Empty:
                return
            if generation.cancelled:
                generation._finish()
                continue
            try:
                row = _Row(request, generation, self.eos)
                self._prefill(row)
            except BaseException as e:
                generation._finish(e)

    def _prefill(self, row: _Row) -> None:
        """Run the row's prompt alone on its own route, pick its first token, and join the batch cache."""
        device = next(self.model.backbone.parameters()).device
        ids = torch.tensor([row.ids], device=device)
        out = self.model(input_ids=ids, use_cache=True, route=[row.request.route])
        if row.choose(out.logits[0, -1]) or row.max_new <= 0:
            row.generation._finish()
            return
        cache = out.to_tuple()[1]
        kv = [(layer.keys, layer.values) for layer in cache.layers]
        self._join(row, kv, torch.ones(1, ids.shape[1], dtype=torch.long, device=device))

    def _join(self, row: _Row, kv: list, mask: torch.Tensor) -> None:
        b = self._batch
        if not b.rows:
            b.rows, b.kv, b.mask = [row], kv, mask
        else:
            t_old, t_new = b.mask.shape[1], mask.shape[1]
            width = max(t_old, t_new)
            b.kv = [(torch.cat([_left_pad(k0, width), _left_pad(k1, width)]), torch.cat([_left_pad(v0, width), _left_pad(v1, width)]))
                    for (k0, v0), (k1, v1) in zip(b.kv, kv)]
            b.mask = torch.cat([_left_pad_mask(b.mask, width), _left_pad_mask(mask, width)])
            b.rows.append(row)
        b.plan = _STALE

    @torch.no_grad()
    def _step(self) -> None:
        b = self._batch
        device = b.mask.device
        if b.plan is _STALE:
            self._drop_unroutable()
            if not b.rows:
                return
            b.plan = self.model.plan([row.request.route for row in b.rows])
        inputs = torch.tensor([[row.ids[-1]] for row in b.rows], device=device)
        positions = torch.tensor([[row.position] for row in b.rows], device=device)
        mask = torch.cat([b.mask, torch.ones(len(b.rows), 1, dtype=b.mask.dtype, device=device)], dim=1)
        cache = {self._cache_arg: DynamicCache(ddp_cache_data=b.kv)}
        with self.model.route(b.plan):
            out = self.model.backbone(input_ids=inputs, attention_mask=mask, position_ids=positions, use_cache=True, **cache)
        self.steps += 1
        b.kv = [(layer.keys, layer.values) for layer in out.to_tuple()[1].layers]
        b.mask = mask
        finished = [i for i, row in enumerate(b.rows) if row.generation.cancelled or row.choose(out.logits[i, -1])]
        if finished:
            for i in finished:
                b.rows[i].generation._finish()
            keep = [i for i in range(len(b.rows)) if i not in set(finished)]
            self._keep(keep)

    def _drop_unroutable(self) -> None:
        """End, with the error, each row whose skill went away (removed between steps); the others go on."""
        keep = []
        for i, row in enumerate(self._batch.rows):
            try:
                self.model.plan([row.request.route])
                keep.append(i)
            except (KeyError, ValueError) as e:
                row.generation._finish(e)
        if len(keep) < len(self._batch.rows):
            self._keep(keep)

    def _keep(self, keep: list[int]) -> None:
        """Keep only rows ``keep``; drop cache columns no remaining row uses."""
        b = self._batch
        if not keep:
            self._batch = _Batch()
            return
        index = torch.tensor(keep, device=b.mask.device)
        b.rows = [b.rows[i] for i in keep]
        b.mask = b.mask[index]
        start = int((b.mask.sum(0) > 0).nonzero()[0])  # leading columns that are padding in every row
        b.mask = b.mask[:, start:]
        b.kv = [(k[index, :, start:], v[index, :, start:]) for k, v in b.kv]
        b.plan = _STALE


def _left_pad(t: torch.Tensor, width: int) -> torch.Tensor:
    """``[B, heads, T, head_dim]`` padded with zeros on the left of ``T`` to ``width``."""
    if t.shape[2] == width:
        return t
    pad = t.new_zeros(t.shape[0], t.shape[1], width - t.shape[2], t.shape[3])
    return torch.cat([pad, t], dim=2)


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
