"""Training one skill's adapter with the backbone frozen: an explicit loop (torchtune style).

Loss is on response tokens only. Each epoch ends with the validation perplexity; the best
epoch's weights are kept and restored, and training stops after ``patience`` epochs
without improvement. Device placement and multi-GPU data parallelism come from
``accelerate`` (launch with ``accelerate launch`` or ``torchrun`` for several GPUs).
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from skills.data import Example
from skills.spec import AdapterTraining

from .adapter import AdaptedModel
from .dialogue import build_context, pad, response_ids

Progress = Callable[[float, str], None]


@dataclass
class TrainResult:
    """What one adapter training run did.

    Attributes:
        best_valid_ppl: validation perplexity of the kept (best) epoch.
        epochs: per epoch ``{"epoch", "train_loss", "valid_ppl"}``.
        seconds: wall time of the run.
        trainable_params: parameters of the new adapter.
        backbone_params: parameters of the frozen backbone.
    """

    best_valid_ppl: float
    epochs: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    trainable_params: int = 0
    backbone_params: int = 0

    @property
    def trainable_fraction(self) -> float:
        return self.trainable_params / self.backbone_params


def window(model: AdaptedModel, max_length: int) -> int:
    """``max_length``, at most the backbone's window: a longer example would index past its positions."""
    return min(max_length, getattr(model.backbone.config, "n_positions", max_length))


def encode_example(tokenizer, example: Example, max_length: int) -> tuple[list[int], list[int]]:
    """``(input_ids, labels)``: formatted context then response, labels ``-100`` on the context."""
    response = response_ids(tokenizer, example.response, max_length // 2)
    context = build_context(tokenizer, example.context, max_length - len(response), example.knowledge)
    return context + response, [-100] * len(context) + response


def batches(encoded: Sequence[tuple[list[int], list[int]]], batch_size: int, pad_id: int, shuffle_seed: int | None = None):
    """Right-padded ``(input_ids, attention_mask, labels)`` batches."""
    order = list(range(len(encoded)))
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(order)
    for start in range(0, len(order), batch_size):
        rows = [encoded[i] for i in order[start : start + batch_size]]
        ids, mask = pad([x for x, _ in rows], pad_id)
        labels, _ = pad([y for _, y in rows], -100, width=ids.shape[1])
        yield ids, mask, labels


def token_nll(model: AdaptedModel, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Summed next-token NLL over the labelled tokens, and how many there are."""
    device = next(model.backbone.parameters()).device
    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits[:, :-1]
    target = labels[:, 1:].to(device)
    nll = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100, reduction="sum")
    return nll, int((target != -100).sum())


@torch.no_grad()
def perplexity(model: AdaptedModel, tokenizer, examples: Sequence[Example], skill: str | None,
               max_length: int = 128, batch_size: int = 16) -> float:
    """Perplexity of the reference responses (response tokens only) with ``skill``'s adapter (``None``: bare)."""
    encoded = [encode_example(tokenizer, e, window(model, max_length)) for e in examples]
    total, count = 0.0, 0
    with model.route(skill):
        for ids, mask, labels in batches(encoded, batch_size, tokenizer.pad_token_id):
            nll, n = token_nll(model, ids, mask, labels)
            total += nll.item()
            count += n
    if count == 0:
        raise ValueError("no response tokens to score")
    return math.exp(total / count)


def train_adapter(model: AdaptedModel, tokenizer, name: str, train: Sequence[Example], valid: Sequence[Example],
                  settings: AdapterTraining, progress: Progress | None = None, show_bar: bool = True,
                  label: str | None = None) -> TrainResult:
    """Train the (already added) adapter ``name`` on ``train``; only its parameters change.

    Args:
        model: the adapted backbone holding a fresh adapter called ``name``.
        train, valid: examples; ``valid`` picks the best epoch and drives early stopping.
        settings: learning rate, epochs, batch size, patience, max length, seed.
        progress: optional ``callback(fraction_done, message)`` (the web UI's progress bar).
        show_bar: show a tqdm bar on the terminal; it counts epochs.
        label: the skill's name in every message, bar and progress report (default: ``name``, which
            may be a temporary adapter name that a user should never see).
    """
    from accelerate import Accelerator

    torch.manual_seed(settings.seed)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    model.to(accelerator.device)
    params = model.adapter_parameters(name)
    model.set_trainable(name, True)
    opt = torch.optim.AdamW(params, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    opt = accelerator.prepare(opt)
    encoded = [encode_example(tokenizer, e, window(model, settings.max_length)) for e in train]
    steps_per_epoch = math.ceil(len(encoded) / settings.batch_size)
    total_steps = steps_per_epoch * settings.epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, total_steps // 10)))
    result = TrainResult(best_valid_ppl=float("inf"), trainable_params=sum(p.numel() for p in params),
                         backbone_params=sum(p.numel() for p in model.backbone.parameters()))
    shown = label or name
    best_state, stale, start, done = None, 0, time.time(), 0
    bar = tqdm(total=settings.epochs, desc=f"training {shown}", unit="epoch", disable=not show_bar)
    try:
        for epoch in range(settings.epochs):
            model.train()
            model.backbone.eval()  # the frozen backbone keeps dropout off
            losses = []
            with model.route(name):
                for ids, mask, labels in batches(encoded, settings.batch_size, tokenizer.pad_token_id, settings.seed + epoch):
                    nll, n = token_nll(model, ids, mask, labels)
                    loss = nll / max(n, 1)
                    accelerator.backward(loss)
                    torch.nn.utils.clip_grad_norm_(params, 1.0)
                    opt.step()
                    schedule.step()
                    opt.zero_grad(set_to_none=True)
                    losses.append(loss.item())
                    done += 1
                    bar.set_postfix(loss=f"{loss.item():.3f}")
                    if progress:
                        progress(done / total_steps, f"{shown}: epoch {epoch + 1}/{settings.epochs}")
            model.eval()
            model.set_trainable(name, False)
            valid_ppl = perplexity(model, tokenizer, valid, name, settings.max_length, settings.batch_size)
            model.set_trainable(name, True)
            result.epochs.append({"epoch": epoch + 1, "train_loss": round(sum(losses) / len(losses), 4), "valid_ppl": round(valid_ppl, 3)})
            bar.update(1)
            if show_bar:
                bar.write(f"{shown} epoch {epoch + 1}: train loss {result.epochs[-1]['train_loss']:.3f}, valid ppl {valid_ppl:.2f}")
            if valid_ppl < result.best_valid_ppl:
                result.best_valid_ppl = valid_ppl
                best_state = [p.detach().clone() for p in params]
                stale = 0
            else:
                stale += 1
                if stale >= settings.patience:
                    break
    finally:
        bar.close()
        if best_state is not None:
            with torch.no_grad():
                for p, best in zip(params, best_state):
                    p.copy_(best)
        model.set_trainable(name, False)
        model.eval()
    result.seconds = time.time() - start
    return result
