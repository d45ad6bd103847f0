"""Forgetting: the ``sequential-finetune`` baseline against the installed adapters.

The baseline is what Adapter-Bot avoids: one copy of the whole backbone (every parameter
trainable) fine-tuned on the skills one after another, with the adapters' loss (next-token
NLL on response tokens only). After each stage, every skill's test perplexity is measured,
so a skill's figure rising after later stages is forgetting.

Beside it, the ``adapters`` method measures, at every stage, each skill's installed adapter on
the same test examples. Adapters are trained independently on a frozen backbone, so these
figures cannot depend on the stage: they come out equal to the last digit, which is the point.

The bot's model, adapters and files are never touched: the fine-tune works on a deep copy.
The result is the forgetting dict of :mod:`bot.evaluation.report`::

    {"order": [SKILL, ...], "metric": "ppl",
     "sequential": {SKILL: [ppl after stage 0, after stage 1, ...]},
     "adapters":   {SKILL: [...]}}
"""
from __future__ import annotations

import copy
import math
import time
from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm

from skills.data import Example

__all__ = ["sequential_finetune", "finetune_copy", "LEARNING_RATE", "MAX_EPOCHS"]

LEARNING_RATE = 5e-5
MAX_EPOCHS = 3
_ADAPTER_HOOK_MODULE = "bot.adapter.model"


def finetune_copy(model):
    """A trainable deep copy of ``model``'s backbone (an ``AdaptedModel``), wrapped with no adapters.

    ``copy.deepcopy`` shares the forward hooks' functions, which would still apply the original
    bot's adapter layers; those hooks are taken off the copy before it is wrapped again.
    """
    from bot.adapter import AdaptedModel

    backbone = copy.deepcopy(model.backbone)
    for module in backbone.modules():
        hooks = getattr(module, "_forward_hooks", None)
        if hooks:
            for key, fn in list(hooks.items()):
                if getattr(fn, "__module__", None) == _ADAPTER_HOOK_MODULE:
                    del hooks[key]
    clone = AdaptedModel(backbone, model.signature.backbone)
    for p in clone.backbone.parameters():
        p.requires_grad_(True)
    return clone


def _train_stage(model, tokenizer, examples: list[Example], spec, seed: int, max_epochs: int, lr: float, bar) -> None:
    """Fine-tune every backbone parameter on one skill's examples (loss on response tokens)."""
    from bot.training import batches, encode_example, token_nll, window

    settings = spec.adapter
    encoded = [encode_example(tokenizer, e, window(model, settings.max_length)) for e in examples]
    params = [p for p in model.backbone.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr)
    model.backbone.train()
    try:
        with model.route(None):
            for epoch in range(min(settings.epochs, max_epochs)):
                for ids, mask, labels in batches(encoded, settings.batch_size, tokenizer.pad_token_id, seed + epoch):
                    nll, n = token_nll(model, ids, mask, labels)
                    loss = nll / max(n, 1)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(params, 1.0)
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss.item():.3f}")
    finally:
        model.backbone.eval()


def sequential_finetune(bot, order: Sequence[str], test: dict[str, list[Example]], *, seed: int = 0,
                        max_epochs: int = MAX_EPOCHS, learning_rate: float = LEARNING_RATE,
                        train: dict[str, list[Example]] | None = None, progress: bool = True,
                        on_stage: Callable[[int, str, object, float], None] | None = None) -> dict:
    """Fine-tune a copy of the backbone on ``order``'s skills in turn; perplexities after every stage.

    Args:
        bot: the loaded bot; its model and files are left unchanged.
        order: skills in training order.
        test: each skill's test examples (knowledge filled in), the same as the report's.
        seed: seeds each stage's shuffling and dropout.
        max_epochs: each stage runs ``min(skill's adapter epochs, max_epochs)`` epochs.
        learning_rate: AdamW learning rate of the whole backbone.
        train: each skill's training examples (default: its recorded train split with its knowledge).
        progress: show a tqdm bar (only on a terminal).
        on_stage: called as ``on_stage(stage, skill, model, seconds)`` after each stage's training, with the
            fine-tuned copy (an ``AdaptedModel`` without adapters) and that stage's training wall time
            (``adapterbot compare`` scores the copy's replies there).

    Returns:
        The forgetting dict: ``order``, ``metric`` (``"ppl"``), ``sequential`` and ``adapters``.
    """
    from bot.training import perplexity

    from .runner import skill_examples

    order = list(order)
    if not order:
        raise ValueError("the forgetting baseline needs at least one skill")
    missing = [s for s in order if s not in test]
    if missing:
        raise ValueError(f"no test examples given for {', '.join(missing)}")
    train = train if train is not None else {s: skill_examples(bot, s, None, split="train") for s in order}
    specs = {s: bot.specs[s] for s in order}
    model = finetune_copy(bot.model)
    steps = sum(math.ceil(len(train[s]) / specs[s].adapter.batch_size) * min(specs[s].adapter.epochs, max_epochs) for s in order)
    result: dict = {"order": order, "metric": "ppl", "sequential": {s: [] for s in order}, "adapters": {s: [] for s in order}}
    bar = tqdm(total=steps, desc="sequential fine-tune", unit="step", disable=None if progress else True)
    try:
        for stage, name in enumerate(order):
            bar.set_description(f"sequential fine-tune: {name}")
            torch.manual_seed(seed + stage)
            started = time.perf_counter()
            _train_stage(model, bot.tokenizer, train[name], specs[name], seed, max_epochs, learning_rate, bar)
            if on_stage is not None:
                on_stage(stage, name, model, time.perf_counter() - started)
            for skill in order:
                max_length = specs[skill].adapter.max_length
                result["sequential"][skill].append(perplexity(model, bot.tokenizer, test[skill], None, max_length))
                result["adapters"][skill].append(perplexity(bot.model, bot.tokenizer, test[skill], skill, max_length))
    finally:
        bar.close()
        del model
    return result
