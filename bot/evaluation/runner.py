"""``adapterbot eval``: per-skill perplexity and response metrics, routing, predictions files, forgetting.

For each evaluated skill, on the test split recorded in its folder at install time
(``DIR/NAME/test.jsonl``):

* **perplexity** of the reference responses (response tokens only) with the skill's adapter
  (``ppl``) and with the bare backbone (``ppl_backbone``), on the same formatted contexts
  (knowledge included where the skill has some), at the skill's training ``max_length``;
* **responses** generated greedily with the skill's decoding settings (``max_new_tokens``,
  ``repetition_penalty``, ``no_repeat_ngram_size``, ``reply_no_repeat_ngram_size``; never
  sampling), scored against the references with :func:`~bot.evaluation.metrics.text_metrics`,
  under three routings:

  - ``backbone``: every turn answered by the bare backbone (route ``None``, no knowledge);
  - ``oracle``: every turn answered by the gold skill's adapter (and the gold skill's knowledge);
  - ``auto``: every turn answered where the dialogue manager sends it (the routed skill's adapter
    and knowledge, or the bare backbone), as :meth:`AdapterBot.respond` would; without a manager,
    ``auto`` is the bare backbone.

  All three use the gold skill's decoding settings, so that they differ only in the route.
  Each route brings its own knowledge, as in the running bot: the gold skill uses the passage
  recorded with the test example (else its retriever's best passage for the last turn, or its
  static text); another skill uses its retriever or static text; the bare backbone none.
  Rows of all three routings share batches (one ``generate()`` pass per batch, each row on its
  own adapter), and a row whose route and context equal another's is generated once.

Routing (accuracy, per-class precision/recall/F1, confusion) is measured on the held-out
histories of :func:`bot.manager_training.first_turn_data` (the skills' test contexts as they stand,
and Chit-Chat's test histories as ``none``); routing inside conversations is in ``report["conversations"]``. ``report["skills"][NAME]`` holds the docs/DESIGN.md keys, the text metrics
being the oracle routing's; ``report["routings"]`` holds all three routings side by side.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from tqdm.auto import tqdm

from skills.data import Example, read_source

from .conversation_routing import conversation_routing
from .knowledge_check import knowledge_check, out_of_knowledge
from .metrics import text_metrics
from .predictions import read_predictions, score_predictions
from .open_chitchat import chitchat_samples
from .reply_proxies import PROXIES, proxy_report

__all__ = ["evaluate_bot", "run_eval", "skill_examples", "split_examples_of", "knowledge_for", "BATCH_SIZE", "ROUTINGS"]

BATCH_SIZE = 16
ROUTINGS = ("backbone", "oracle", "auto")
BASELINES = ("sequential-finetune",)
SAMPLES_PER_SKILL = 3
NO_MANAGER = "no dialogue manager installed: 'auto' is the bare backbone; routing not measured"


# ---- data ------------------------------------------------------------------------------------


def split_examples_of(bot, name: str, split: str) -> list[Example]:
    """The examples of skill ``name``'s ``split`` (``train``, ``valid``, ``test``) recorded at install."""
    path = bot.registry.path(name) / f"{split}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: skill {name!r} has no recorded {split} split; reinstall it with "
                                f"`adapterbot skill add {name} --replace`")
    return read_source(str(path), Path(".")).examples


def knowledge_for(bot, route: str | None, example: Example, gold: str | None) -> str | None:
    """The passage that skill ``route`` puts first in the context of ``example`` (``None``: none).

    The gold skill uses the passage recorded with the example when there is one; otherwise a
    skill's passage is what :meth:`AdapterBot.knowledge` gives the running bot for the example's
    context (none when it is not used). The bare backbone (``route=None``) has none.
    """
    if route is None:
        return None
    if route == gold and example.knowledge:
        return example.knowledge
    text, used = bot.knowledge(route, example.context)
    return text if used else None


def skill_examples(bot, name: str, limit: int | None = None, split: str = "test") -> list[Example]:
    """The first ``limit`` examples of ``name``'s split, each with the skill's own knowledge filled in."""
    examples = split_examples_of(bot, name, split)
    if limit is not None:
        examples = examples[:limit]
    return [Example(e.context, e.response, knowledge_for(bot, name, e, name)) for e in examples]


# ---- generation ------------------------------------------------------------------------------


def greedy_settings(bot, name: str) -> dict:
    """Skill ``name``'s decoding settings, greedy, with ``max_new_tokens`` at most half the window."""
    decoding = bot.specs[name].decoding.generate_kwargs()
    decoding["do_sample"] = False
    decoding.pop("temperature", None)
    decoding.pop("top_p", None)
    window = bot.model.backbone.config.n_positions
    decoding["max_new_tokens"] = max(1, min(int(decoding["max_new_tokens"]), window // 2))
    return decoding


@dataclass(frozen=True)
class _Job:
    route: str | None
    context: tuple[int, ...]
    copy_source: tuple[int, ...] = ()


def _generate(bot, jobs: list[_Job], decoding: dict, batch_size: int, bar) -> dict[_Job, str]:
    """Text of every (unique) job, ``batch_size`` rows per ``generate()`` pass, rows sorted by length."""
    from bot.generation import generate_ids

    todo = sorted(set(jobs), key=lambda j: (len(j.context), j.route or "", j.context))
    out: dict[_Job, str] = {}
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        ids = generate_ids(bot.model, bot.tokenizer, [list(j.context) for j in chunk], [j.route for j in chunk],
                           copy_sources=[list(j.copy_source) for j in chunk], **decoding)
        for job, row in zip(chunk, ids):
            out[job] = bot.tokenizer.decode(row, skip_special_tokens=True).strip()
        bar.update(len(chunk))
    return out


def _auto_routes(bot, examples: Sequence[Example]) -> list[str | None]:
    """Auto mode's skill for each example (:meth:`AdapterBot.route_batch`; ``None``: bare backbone, also for a class
    whose skill is not loaded)."""
    if bot.manager is None or not examples:
        return [None] * len(examples)
    decisions = bot.route_batch([list(e.context) for e in examples])
    return [d.skill if d.skill in bot.specs else None for d in decisions]


def _skill_responses(bot, name: str, examples: list[Example], auto: list[str | None], batch_size: int, bar) -> dict:
    """Generated replies of ``examples`` under every routing: ``{routing: [text, ...]}``."""
    from bot.dialogue import build_context, context_budget, copy_source

    decoding = greedy_settings(bot, name)
    budget = context_budget(bot.tokenizer, bot.model.backbone.config.n_positions, decoding["max_new_tokens"])
    routes = {"backbone": [None] * len(examples), "oracle": [name] * len(examples), "auto": auto}
    jobs: dict[str, list[_Job]] = {}
    cache: dict[tuple, _Job] = {}
    for routing, per_row in routes.items():
        jobs[routing] = []
        for example, route in zip(examples, per_row):
            key = (route, id(example))
            if key not in cache:
                knowledge = knowledge_for(bot, route, example, name)
                turns = bot.specs[route].decoding.context_turns if route is not None else 0
                context = example.context[-turns:] if turns else example.context
                cache[key] = _Job(route, tuple(build_context(bot.tokenizer, context, budget, knowledge)),
                                  tuple(copy_source(bot.tokenizer, knowledge)))
            jobs[routing].append(cache[key])
    every = [j for js in jobs.values() for j in js]
    texts = _generate(bot, every, decoding, batch_size, bar)
    bar.update(len(every) - len(texts))  # rows answered by an identical row count as done
    return {routing: [texts[j] for j in js] for routing, js in jobs.items()}


# ---- routing ---------------------------------------------------------------------------------


def _empty_routing() -> dict:
    return {"accuracy": None, "labels": [], "confusion": [], "per_skill": {}}


def _routing(bot, skills: list[str], limit: int | None) -> tuple[dict, str]:
    """The routing block on held-out contexts of ``skills`` and ``none``, and a note for the settings."""
    from manager import NONE, routing_report

    from bot.manager_training import first_turn_data

    if bot.manager is None:
        return _empty_routing(), NO_MANAGER
    if not skills:
        return _empty_routing(), "no skill evaluated: routing not measured"
    classes = set(bot.manager.classes)
    held_out = first_turn_data(bot, "test")
    keep = [NONE] + [s for s in skills if s in classes]
    data = {k: held_out[k][:limit] for k in keep if held_out.get(k)}
    note = f"classes {', '.join(bot.manager.classes)}"
    unknown = [s for s in skills if s not in classes]
    if unknown:
        note += f"; not known to the manager (left out of routing): {', '.join(unknown)}"
    gold = [name for name, histories in data.items() for _ in histories]
    predicted = [d.skill or NONE for d in bot.route_batch([h for histories in data.values() for h in histories])]
    return routing_report(gold, predicted, bot.manager.classes), note


# ---- the evaluation --------------------------------------------------------------------------


def _select_skills(bot, skills: Sequence[str] | None) -> list[str]:
    if skills is None:
        return list(bot.skills)
    chosen = []
    for name in skills:
        if name in chosen:
            continue
        if name not in bot.skills:
            if name in getattr(bot, "skipped", {}):
                raise ValueError(f"skill {name!r} could not be loaded: {bot.skipped[name]}")
            raise ValueError(f"unknown skill {name!r}; installed in {bot.registry.root}: {', '.join(bot.skills) or 'none'}")
        chosen.append(name)
    return chosen


def _metrics(predictions: list[str], references: list[str]) -> dict:
    return {"n": len(predictions), **text_metrics(predictions, references)}


def evaluate_bot(bot, skills: Sequence[str] | None = None, limit: int | None = None, predictions: str | Path | None = None,
                 baseline: str | None = None, seed: int = 0, progress: bool = True,
                 batch_size: int = BATCH_SIZE) -> tuple[dict, dict | None]:
    """Evaluate ``bot``; returns ``(report, forgetting)`` for :func:`~bot.evaluation.report.write_report`.

    Args:
        bot: a loaded :class:`~bot.chatbot.AdapterBot`; it is not changed, nor are its files.
        skills: the skills to evaluate, in this order (default: every loaded skill). The
            forgetting baseline trains them in this order.
        limit: at most this many test examples per skill (the first ones), and per routing class.
        predictions: a JSONL of another system's replies to score (see
            :mod:`bot.evaluation.predictions`); read first, so a bad line fails before any work.
        baseline: ``"sequential-finetune"`` for the forgetting comparison
            (:mod:`bot.evaluation.forgetting`); ``None`` for none.
        seed: ``torch.manual_seed`` for the run.
        progress: show a tqdm bar (only on a terminal).
        batch_size: rows per generation / perplexity pass.

    Returns:
        ``report`` with ``skills``, ``routing`` (the docs/DESIGN.md keys), ``routings``, ``settings``,
        ``samples`` and, given ``predictions``, ``predictions``; and the forgetting dict (or ``None``).
    """
    from bot.training import perplexity

    start = time.time()
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be at least 1, got {limit}")
    if baseline is not None and baseline not in BASELINES:
        raise ValueError(f"unknown baseline {baseline!r}; use one of {', '.join(BASELINES)}")
    scored = score_predictions(read_predictions(predictions)) if predictions is not None else None
    names = _select_skills(bot, skills)
    if not names and scored is None:
        skipped = "; ".join(f"{k}: {v}" for k, v in getattr(bot, "skipped", {}).items())
        raise ValueError(f"nothing to evaluate: no skills are loaded from {bot.registry.root}"
                         + (f" (skipped: {skipped})" if skipped else "") + " and no --predictions file was given")
    if baseline is not None and not names:
        raise ValueError(f"--baseline {baseline} needs at least one installed skill")
    torch.manual_seed(seed)

    data = {name: skill_examples(bot, name, limit) for name in names}
    rows = sum(len(v) for v in data.values())
    bar = tqdm(total=rows * 5 + 1, desc="evaluating", unit="row", disable=None if progress else True)
    report: dict = {"skills": {}, "routings": {r: {} for r in ROUTINGS}, "samples": {}, "proxies": {}, "knowledge": {}}
    try:
        for name, examples in data.items():
            spec = bot.specs[name]
            bar.set_postfix_str(name)
            ppl = perplexity(bot.model, bot.tokenizer, examples, name, spec.adapter.max_length, batch_size)
            bar.update(len(examples))
            ppl_bare = perplexity(bot.model, bot.tokenizer, examples, None, spec.adapter.max_length, batch_size)
            bar.update(len(examples))
            auto = _auto_routes(bot, examples)
            texts = _skill_responses(bot, name, examples, auto, batch_size, bar)
            refs = [e.response for e in examples]
            for routing in ROUTINGS:
                report["routings"][routing][name] = _metrics(texts[routing], refs)
            report["routings"]["auto"][name]["gold_routed"] = sum(r == name for r in auto) / len(auto)
            report["routings"]["auto"][name]["bare_routed"] = sum(r is None for r in auto) / len(auto)
            report["skills"][name] = {"n": len(examples), "ppl": ppl, "ppl_backbone": ppl_bare,
                                      **{k: v for k, v in report["routings"]["oracle"][name].items() if k != "n"}}
            if name in PROXIES:
                report["proxies"][name] = proxy_report(name, [e.context for e in examples],
                                                       {r: texts[r] for r in ("oracle", "auto")})
            if spec.knowledge.mode == "retrieval":
                bar.set_postfix_str(f"{name}: knowledge")
                report["knowledge"][name] = knowledge_check(bot, name, examples, out_of_knowledge("test")[:limit])
            report["samples"][name] = [
                {"context": e.context, "knowledge": e.knowledge, "reference": e.response,
                 **{routing: texts[routing][i] for routing in ROUTINGS}, "auto_skill": auto[i]}
                for i, e in enumerate(examples[:SAMPLES_PER_SKILL])
            ]
        bar.set_postfix_str("routing")
        report["routing"], routing_note = _routing(bot, names, limit)
        if bot.manager is not None and names:
            bar.set_postfix_str("routing in conversations")
            report["conversations"] = conversation_routing(bot, seed)
            bar.set_postfix_str("open chit-chat")
            report["chitchat"] = chitchat_samples(bot, seed)
        bar.update(1)
    finally:
        bar.close()
    if not names:  # a predictions file alone: no routing table to show
        del report["routings"], report["samples"], report["proxies"], report["knowledge"]
    if scored is not None:
        report["predictions"] = scored

    forgetting = None
    seconds_forgetting = None
    if baseline == "sequential-finetune":
        from .forgetting import sequential_finetune

        t0 = time.time()
        forgetting = sequential_finetune(bot, names, {n: data[n] for n in names}, seed=seed, progress=progress)
        seconds_forgetting = round(time.time() - t0, 1)

    device = next(bot.model.backbone.parameters()).device
    report["settings"] = {
        "backbone": bot.model.signature.backbone,
        "skills_dir": str(bot.registry.root),
        "skills": ", ".join(names) or "none",
        "limit": limit,
        "seed": seed,
        "decoding": f"greedy, batch {batch_size}; max_new_tokens, repetition_penalty, no_repeat_ngram_size, "
                    "reply_no_repeat_ngram_size from each skill's spec",
        "manager": routing_note,
        "predictions": str(predictions) if predictions is not None else None,
        "baseline": baseline,
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "seconds": round(time.time() - start, 1),
    }
    if seconds_forgetting is not None:
        report["settings"]["seconds_baseline"] = seconds_forgetting
    skipped = getattr(bot, "skipped", {})
    if skipped:
        report["settings"]["skipped_skills"] = "; ".join(f"{k}: {v}" for k, v in skipped.items())
    return report, forgetting


def run_eval(args) -> list[Path]:
    """``adapterbot eval``: load the bot named by ``args``, evaluate it, write the report; returns the written paths."""
    from bot.chatbot import AdapterBot

    from .report import write_report

    device = getattr(args, "device", None) or ("cuda" if torch.cuda.is_available() else "cpu")
    bot = AdapterBot.from_pretrained(getattr(args, "backbone", None), getattr(args, "skills_dir", None), device=device,
                                     trust_remote_code=getattr(args, "trust_remote_code", False))
    report, forgetting = evaluate_bot(
        bot, skills=getattr(args, "skills", None), limit=getattr(args, "limit", None),
        predictions=getattr(args, "predictions", None), baseline=getattr(args, "baseline", None),
        seed=getattr(args, "seed", 0) or 0, progress=sys.stderr.isatty(),
    )
    return write_report(report, Path(args.out), forgetting)
