"""The dialogue manager's default features: the frozen backbone's own pooled hidden states.

No second encoder sits in memory: the manager reads the bare backbone (no adapter) on the
newest turns, stops after its first blocks, and pools their output twice: over the user's
newest message, and over the turns before it. Two separate halves, rather than one pool over
the whole context, let the head weigh the newest message on its own (a long chit-chat history
must not decide the class) while the turns before still show which exchange a short follow-up
continues. Reading only the first blocks and the newest tokens keeps routing a small share of a turn.

Beside them, hashed word and character n-grams of the newest message (:class:`HashedNgrams`):
a 14M-parameter backbone's first blocks tell topics apart poorly ("my wifi keeps dropping" read
as distress), while the words themselves say it. Optionally, the n-grams of the user's previous
message too, on their own: a follow-up such as "i tried that already" carries no topic, and the
pooled turns before it mix the bot's reply (in use, the bot's own words, not a reference's) into
the message that named the problem. The hashing needs no fitting, so the features
stay the same when a skill is added or removed later and the exemplar memory stays valid.
"""
from __future__ import annotations

import threading

from typing import Sequence

import re

import torch
from sklearn.feature_extraction.text import HashingVectorizer

from .adapter import AdaptedModel
from .dialogue import build_context, pad


NGRAMS = 1024
"""Width of the hashed n-grams of the newest message in the default features, chosen on validation
routing (``docs/DESIGN.md``, the dialogue manager)."""


class HashedNgrams:
    """Callable ``texts -> [B, dim]``: hashed n-gram counts, nothing fitted.

    The first half holds word 1-2-grams, the second character 2-4-grams inside word boundaries
    (they match "wifi" in "wi-fi's"), each half L2-normalised. Lower-cased; scikit-learn's
    ``HashingVectorizer`` (MurmurHash3), so the same text gives the same vector on every machine.
    """

    def __init__(self, dim: int = NGRAMS) -> None:
        if dim < 2 or dim % 2:
            raise ValueError(f"the hashed n-grams' width must be an even number of at least 2, got {dim}")
        self.dim = dim
        common = dict(n_features=dim // 2, alternate_sign=False, norm="l2", lowercase=True)
        self._vectorizers = (
            HashingVectorizer(analyzer="word", ngram_range=(1, 2), token_pattern=r"(?u)\b\w+\b", **common),
            HashingVectorizer(analyzer="char_wb", ngram_range=(2, 4), **common),
        )

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        return torch.cat([torch.from_numpy(v.transform(list(texts)).toarray()).float() for v in self._vectorizers], dim=1)


_NAME = re.compile(r"backbone-lastprev:(?P<backbone>.+):blocks=(?P<layers>\d+):tokens=(?P<tokens>\d+)"
                   r"(?::ngrams=(?P<ngrams>\d+))?(?::previous=(?P<previous>\d+))?")


class _Stop(Exception):
    """Raised by the hook on the last block read, to skip the rest of the forward pass."""


class BackboneFeatures:
    """Callable ``histories -> [B, 2 * hidden + ngrams + previous]`` (the ``manager.FeatureFn`` protocol):
    the mean hidden state over the newest message, then over the turns before it (zeros on a first
    turn), then the newest message's :class:`HashedNgrams` (none when ``ngrams`` is 0), then the
    user's previous message's (``history[-3]``; zeros before it exists; none when ``previous`` is 0).

    Args:
        model: the adapted backbone; features always use the bare backbone.
        tokenizer: the backbone's tokenizer.
        max_tokens: at most this many context tokens are read (the newest ones).
        layers: how many of the backbone's first blocks are run; their output is pooled.
            ``None``: a sixth of them, at least one (1 of the bundled backbone's 6, 2 of
            DialoGPT-small's 12); fewer blocks cost proportionally less. How many blocks to read
            is chosen on validation routing (``python -m bot.recipes.skills`` records the sweep
            in its report).
        ngrams: width of the newest message's hashed n-grams; 0 for none (managers saved before
            they existed).
        previous: width of the user's previous message's hashed n-grams; 0 for none.
    """

    def __init__(self, model: AdaptedModel, tokenizer, max_tokens: int = 64, layers: int | None = None,
                 ngrams: int = NGRAMS, previous: int = 0) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        n = model.signature.num_layers
        self.layers = max(1, n // 6) if layers is None else layers
        if not 1 <= self.layers <= n:
            raise ValueError(f"layers must be between 1 and the backbone's {n} blocks, got {layers}")
        self.ngrams = HashedNgrams(ngrams) if ngrams else None
        self.previous = HashedNgrams(previous) if previous else None
        self.name = (f"backbone-lastprev:{model.signature.backbone}:blocks={self.layers}:tokens={max_tokens}"
                     + (f":ngrams={ngrams}" if ngrams else "") + (f":previous={previous}" if previous else ""))
        self.dim = 2 * model.signature.hidden_size + ngrams + previous

    @classmethod
    def from_name(cls, model: AdaptedModel, tokenizer, name: str) -> "BackboneFeatures | None":
        """The features a manager recorded as ``name`` (its block, token and n-gram counts; no
        ``:ngrams=`` part: none), or ``None`` when ``name`` is not this class's on this backbone."""
        match = _NAME.fullmatch(name)
        if match is None or match["backbone"] != model.signature.backbone:
            return None
        layers, ngrams, previous = int(match["layers"]), int(match["ngrams"] or 0), int(match["previous"] or 0)
        if not 1 <= layers <= model.signature.num_layers or any(w and (w < 2 or w % 2) for w in (ngrams, previous)):
            return None
        return cls(model, tokenizer, max_tokens=int(match["tokens"]), layers=layers, ngrams=ngrams, previous=previous)

    @torch.no_grad()
    def __call__(self, histories: Sequence[Sequence[str]]) -> torch.Tensor:
        contexts, last_lens = [], []
        for history in histories:
            ids = build_context(self.tokenizer, history, self.max_tokens)
            last = build_context(self.tokenizer, list(history)[-1:], self.max_tokens)
            contexts.append(ids)
            last_lens.append(len(last))
        ids, mask = pad(contexts, self.tokenizer.pad_token_id)  # right padding: positions start at 0
        mask = mask.float()
        last_mask = torch.zeros_like(mask)
        for i, (c, n) in enumerate(zip(contexts, last_lens)):
            last_mask[i, len(c) - n : len(c)] = 1
        hidden = self._hidden(ids, mask).float().cpu()

        def pool(m: torch.Tensor) -> torch.Tensor:
            return (hidden * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp(min=1)

        parts = [pool(last_mask), pool(mask - last_mask)]
        if self.ngrams is not None:
            parts.append(self.ngrams([list(history)[-1] for history in histories]))
        if self.previous is not None:
            parts.append(self.previous([history[-3] if len(history) >= 3 else "" for history in map(list, histories)]))
        return torch.cat(parts, dim=-1)

    def _hidden(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The bare backbone's hidden states after block ``self.layers``; later blocks never run."""
        transformer = self.model.backbone.transformer
        device = next(transformer.parameters()).device
        captured: list[torch.Tensor] = []
        caller = threading.get_ident()

        def stop(module, args, output) -> None:
            if threading.get_ident() != caller:  # another thread's forward (the engine's) runs through this block too
                return
            captured.append(output[0] if isinstance(output, tuple) else output)
            raise _Stop

        with self.model.route(None):
            handle = transformer.h[self.layers - 1].register_forward_hook(stop)
            try:
                transformer(input_ids=ids.to(device), attention_mask=mask.to(device))
            except _Stop:
                pass
            finally:
                handle.remove()
        return captured[0]
