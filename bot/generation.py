"""Batched generation where every row may use a different skill's adapter."""
from __future__ import annotations

import logging
from typing import Sequence

import torch
from transformers import LogitsProcessorList, NoRepeatNGramLogitsProcessor

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


class ReplyNoRepeatNGram(NoRepeatNGramLogitsProcessor):
    """Hugging Face's n-gram ban applied to the generated tokens only (from ``prompt_length`` on).

    The reply never repeats one of its own n-grams, but may still copy any n-gram of the
    context, such as a knowledge passage's answer.
    """

    def __init__(self, ngram_size: int, prompt_length: int) -> None:
        super().__init__(ngram_size)
        self.prompt_length = prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        return super().__call__(input_ids[:, self.prompt_length :], scores)


@torch.no_grad()
def generate_ids(model: AdaptedModel, tokenizer, contexts: Sequence[Sequence[int]], skills: Sequence[Row],
                 streamer=None, **decoding) -> list[list[int]]:
    """New token ids for each context, row ``b`` generated with the adapter of ``skills[b]`` (a skill, ``None``
    for the bare backbone, or a ``{skill: weight}`` blend).

    All rows run in one ``generate()`` call: the adapters are gathered per row inside each
    block, so a batch that mixes skills costs one pass, not one per skill. ``decoding`` holds
    ``generate()``'s keyword arguments, plus ``reply_no_repeat_ngram_size`` (see :class:`ReplyNoRepeatNGram`).
    """
    device = next(model.backbone.parameters()).device
    ids, mask = pad(contexts, tokenizer.pad_token_id, left=True)
    reply_ngram = decoding.pop("reply_no_repeat_ngram_size", 0)
    if reply_ngram:
        decoding["logits_processor"] = LogitsProcessorList([ReplyNoRepeatNGram(reply_ngram, ids.shape[1])])
    eos = tokenizer.eos_token_id
    out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=eos, streamer=streamer, route=list(skills), **decoding)
    new = out[:, ids.shape[1]:].tolist()
    return [row[: row.index(eos)] if eos in row else row for row in new]
