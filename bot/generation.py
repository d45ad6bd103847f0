"""Batched generation where every row may use a different skill's adapter."""
from __future__ import annotations

import logging
from collections import Counter
from typing import Sequence

import torch
from transformers import LogitsProcessor, LogitsProcessorList, TopPLogitsWarper

from .adapter import AdaptedModel
from .adapter.routing import Row
from .dialogue import pad


class _NoPaddingMaskNoise(logging.Filter):
    """Drops transformers' "pass an attention_mask" warning, which ``generate()`` triggers itself.

    :func:`generate_ids` always passes the mask; the warning comes from the forward calls of
    ``generate()``'s own decoding steps.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "recommend passing in an `attention_mask`" not in record.getMessage()


logging.getLogger("transformers.modeling_utils").addFilter(_NoPaddingMaskNoise())


class ReplyNoRepeatNGram(LogitsProcessor):
    """Hugging Face's n-gram ban (``no_repeat_ngram_size``) applied to the generated tokens only (from
    ``prompt_length`` on), and never to an n-gram the row's copy source holds more often than the reply has said it.

    The reply never repeats one of its own n-grams, but may still copy any n-gram of the context, such as a knowledge
    passage's answer, as often as the answer has it: "Five: Dopey, Grumpy, Sneezy, Sleepy, Happy" came out "...Sneezy,
    Jruce, Happy" (the bigram ", S" was banned the second time) and "J.R.R. Tolkein" as "J.R.". ``sources`` as in
    :class:`CopyBoost`.
    """

    def __init__(self, ngram_size: int, prompt_length: int, sources: Sequence[Sequence[int]] = ((),)) -> None:
        self.n, self.prompt_length = ngram_size, prompt_length
        n = ngram_size  # each source's n-grams and how often it holds them, counted once, not at every step
        self.held = [Counter(tuple(source[i : i + n]) for i in range(len(source) - n + 1)) for source in sources]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        held_by_row = self.held * input_ids.shape[0] if len(self.held) == 1 else self.held
        n = self.n
        for b, held in enumerate(held_by_row):
            reply = input_ids[b, self.prompt_length :].tolist()
            if len(reply) < n:
                continue
            said = Counter(tuple(reply[i : i + n]) for i in range(len(reply) - n + 1))
            prefix = tuple(reply[len(reply) - n + 1 :])
            banned = [gram[-1] for gram, count in said.items() if gram[:-1] == prefix and count >= held[gram]]
            if banned:
                scores[b, banned] = -float("inf")
        return scores


class CopyBoost(LogitsProcessor):
    """Raises by ``boost`` the score of every token that continues, somewhere in the row's source, the
    longest suffix of the reply (up to ``max_ngram`` tokens) found there; at the first step, the
    source's first token.

    The source is what the reply may copy: a knowledge passage's answer and its end-of-text
    (:func:`bot.dialogue.copy_source`), never the conversation. A small backbone starts a copy in
    the wrong place ("B cable and plug it..." for "Use a USB cable and plug it...") or drops off
    mid-word ("Toron" for "Toronto"); the bonus starts the copy at the answer's start and carries
    it to the answer's own end. A row with an empty source gets no bonus. ``sources`` holds one source
    per row, or one for every row (the candidates of one sample-and-rank turn).
    """

    def __init__(self, boost: float, sources: Sequence[Sequence[int]], prompt_length: int, max_ngram: int = 8) -> None:
        self.boost, self.prompt_length, self.max_ngram = boost, prompt_length, max_ngram
        self.sources = [list(source) for source in sources]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        sources = self.sources * input_ids.shape[0] if len(self.sources) == 1 else self.sources
        for b, source in enumerate(sources):
            if not source:
                continue
            reply = input_ids[b, self.prompt_length :].tolist()
            if not reply:
                scores[b, source[0]] += self.boost
                continue
            for n in range(min(self.max_ngram, len(reply)), 0, -1):
                suffix = reply[-n:]
                following = {source[i + n] for i in range(len(source) - n) if source[i : i + n] == suffix}
                if following:
                    scores[b, sorted(following)] += self.boost
                    break
        return scores


class TopP(TopPLogitsWarper):
    """Hugging Face's top-p warper (the same tokens kept: each one whose likelier tokens hold less than ``top_p``
    of the probability), looked for among the ``k`` likeliest tokens first, then, for the rows whose ``k`` likeliest
    hold less than ``top_p``, among the ``wide_k`` likeliest: sorting the whole vocabulary is the costlier search (8
    rows of 8,192 tokens: 5 ms against 0.2 ms for the 64 likeliest and 1 ms for the 1,024). In a load run 1,143 of
    6,676 sampled rows needed more than 64 tokens, 143 more than 256 and none more than 1,024. A row whose
    ``wide_k`` likeliest still hold less goes through the full sort."""

    def __init__(self, top_p: float, k: int = 64, wide_k: int = 1024) -> None:
        super().__init__(top_p)
        self.k, self.wide_k = k, wide_k

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        out, wide = self._within(scores, self.k)
        if wide.any():
            out[wide], wider = self._within(scores[wide], self.wide_k)
            if wider.any():
                rows = wide.nonzero()[:, 0][wider]
                out[rows] = super().__call__(input_ids[rows], scores[rows])
        return out

    def _within(self, scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The warped scores as found among each row's ``k`` likeliest tokens, and which rows need more than those."""
        top, index = scores.topk(min(k, scores.shape[-1]), dim=-1)
        probs = (top - scores.logsumexp(-1, keepdim=True)).exp()
        keep = probs.cumsum(-1) - probs < self.top_p  # the mass of the likelier tokens, below top_p
        keep[:, 0] = True
        out = torch.full_like(scores, -float("inf")).scatter(-1, index, top.masked_fill(~keep, -float("inf")))
        return out, probs.sum(-1) < self.top_p


def reply_processors(decoding: dict, sources: Sequence[Sequence[int]], prompt_length: int) -> LogitsProcessorList:
    """The project's own logits processors for ``decoding``'s ``reply_no_repeat_ngram_size`` and
    ``copy_boost`` (popped from it), for rows whose replies start at column ``prompt_length`` and may
    copy from ``sources`` (one per row, see :class:`CopyBoost`)."""
    processors = LogitsProcessorList()
    if ngram := int(decoding.pop("reply_no_repeat_ngram_size", 0) or 0):
        processors.append(ReplyNoRepeatNGram(ngram, prompt_length, sources))
    if boost := float(decoding.pop("copy_boost", 0.0) or 0.0):
        processors.append(CopyBoost(boost, sources, prompt_length))
    return processors


def candidate_count(decoding: dict) -> int:
    """How many replies a turn with ``decoding`` samples and ranks: its ``candidates`` when sampling, else one."""
    return max(1, int(decoding.get("candidates", 1) or 1)) if decoding.get("do_sample") else 1


def likeliest(candidates: Sequence[tuple[bool, float]], misfits: Sequence[int] | None = None) -> int:
    """Index of the candidate a sample-and-rank reply keeps, from each one's ``(ended, mean log-probability
    per token)``: among those of the lowest ``misfit`` (default: all 0), the likeliest of those that ended
    before ``max_new_tokens``, else the likeliest of all."""
    misfits = misfits or [0] * len(candidates)
    return max(range(len(candidates)), key=lambda i: (-misfits[i], *candidates[i]))


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Log-probabilities ``[...]`` of ``tokens`` under raw ``logits`` ``[..., vocab]`` (before penalties and temperature)."""
    return torch.log_softmax(logits.float(), -1).gather(-1, tokens[..., None])[..., 0]


@torch.no_grad()
def generate_ids(model: AdaptedModel, tokenizer, contexts: Sequence[Sequence[int]], skills: Sequence[Row],
                 streamer=None, copy_sources: Sequence[Sequence[int]] | None = None, **decoding) -> list[list[int]]:
    """New token ids for each context, row ``b`` generated with the adapter of ``skills[b]`` (a skill, ``None``
    for the bare backbone, or a ``{skill: weight}`` blend).

    All rows run in one ``generate()`` call: the adapters are gathered per row inside each
    block, so a batch that mixes skills costs one pass, not one per skill. ``decoding`` holds
    ``generate()``'s keyword arguments, plus ``reply_no_repeat_ngram_size`` and ``copy_boost`` (see
    :func:`reply_processors`); ``copy_sources`` are what each row may copy (default: nothing).
    ``candidates`` (with ``do_sample``) samples that many replies per row and keeps the likeliest (:func:`likeliest`).
    """
    k = candidate_count(decoding)
    decoding.pop("candidates", None)
    if k > 1:
        if streamer is not None:
            raise ValueError("a streamer cannot follow sample-and-rank (candidates > 1): the reply is known at the end")
        contexts = [c for c in contexts for _ in range(k)]
        skills = [s for s in skills for _ in range(k)]
        copy_sources = copy_sources and [c for c in copy_sources for _ in range(k)]
    device = next(model.backbone.parameters()).device
    ids, mask = pad(contexts, tokenizer.pad_token_id, left=True)
    eos = tokenizer.eos_token_id
    processors = reply_processors(decoding, copy_sources or [[]] * len(contexts), ids.shape[1])
    if processors:
        decoding["logits_processor"] = processors
    out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=eos, streamer=streamer, route=list(skills), return_dict_in_generate=True,
                         output_logits=k > 1, **decoding)
    new = out.sequences[:, ids.shape[1]:]
    rows = [row[: row.index(eos)] if eos in row else row for row in new.tolist()]
    if k == 1:
        return rows
    logprobs = token_logprobs(torch.stack(out.logits, 1), new)  # [B * k, steps]
    ranked = []
    for b in range(0, len(rows), k):
        scored = [(eos in new[i].tolist(), float(logprobs[i, : len(rows[i]) + 1].mean())) for i in range(b, b + k)]
        ranked.append(rows[b + likeliest(scored)])
    return ranked
