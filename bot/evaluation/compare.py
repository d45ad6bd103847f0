"""``adapterbot compare``: every adapter kind on every skill at matched trainable-parameter budgets.

For each kind (:mod:`bot.adapter.kinds`) and each budget (by default about 1% and about 3% of the
backbone's parameters), the kind's size setting that lands nearest the budget is found by building
fresh modules (:func:`budget_setting`), and an adapter of that size is trained on every skill with
:func:`bot.training.train_adapter`, for each seed. Full fine-tuning of the whole backbone is the
upper reference, trained skill after skill by :func:`bot.evaluation.forgetting.sequential_finetune`,
whose perplexities after every stage give its forgetting. The bare backbone is the lower one.

The data are the skills' committed splits (``DIR/NAME/{train,valid,test}.jsonl``) with each skill's
knowledge filled in as ``adapterbot eval`` does (:func:`bot.evaluation.runner.skill_examples`); a
knowledge skill's training split gets the recipe's augmentation (counterfactual copies and
abstentions, :func:`bot.recipes.skills.augmentation`) before ``--limit`` samples it. Columns:

- trainable % (and, where it differs, the % its file stores: ``prefix`` drops its MLP);
- test perplexity of the reference replies per skill and their mean (:func:`bot.training.perplexity`);
- the knowledge skill's F1: greedy replies to its test questions with its recorded passages and
  decoding settings, scored by unigram F1 (the ``oracle`` F1 of ``adapterbot eval``);
- training time: :func:`~bot.training.train_adapter`'s wall time per skill (its per-epoch validation
  included); full fine-tuning's is its training steps alone;
- peak training memory, measured as ``adapterbot bench`` does (:mod:`bot.bench.training`): a fresh
  subprocess per setting runs two training steps on a batch of ``batch_size x max_length`` random
  tokens; on CPU the peak resident size over the steps (``VmHWM`` after ``clear_refs``) minus the
  resident size before the model was built;
- generation latency against the bare backbone, and a mixed batch (rows on the kind's different
  skills in one ``generate()``, ``route=list``) against a batch on one skill, raced side by side
  with :func:`bot.bench.latency.generation_figures` on the first seed's adapters.

Everything is written to ``compare.json``, ``compare.md`` and ``compare.png``.
"""
from __future__ import annotations

import json
import math
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from skills.files import atomic_write_text

from .report_markdown import esc, fmt

KINDS = ("bottleneck", "houlsby", "lora", "prefix", "prompt")
BUDGETS = (1.0, 3.0)  # percent of the backbone's parameters
# AdamW learning rates per kind (bottleneck: the recipe's; soft prompts need a far higher one).
LEARNING_RATES = {"bottleneck": 2e-3, "houlsby": 2e-3, "lora": 3e-3, "prefix": 5e-3, "prompt": 3e-2}
FULL_FINETUNE_LR = 1e-4
TOLERANCE = 0.10  # a budget is reached when the trainable count is within 10% of it
PREFIX_LENGTH = 16  # the prefix kind's default length; its MLP's width is what meets the budget
# Defaults sized for a shared 2-core CPU (about 20-30 minutes); the recipe trains far longer.
EPOCHS, LIMIT, SEEDS = 1, 96, 2
LATENCY = {"batch": 8, "prompt_tokens": 32, "new_tokens": 16, "repeats": 3}
F1_BATCH = 16

# kind -> (the setting searched, the settings given its value, its largest value given the backbone config)
KNOBS: dict[str, tuple[str, Callable[[int], dict], Callable[[Any], int]]] = {
    "bottleneck": ("bottleneck", lambda v: {"bottleneck": v}, lambda c: 8 * c.n_embd),
    "houlsby": ("bottleneck", lambda v: {"bottleneck": v}, lambda c: 8 * c.n_embd),
    "lora": ("rank", lambda v: {"rank": v, "alpha": 2.0 * v}, lambda c: c.n_embd),  # alpha / rank = 2, as the defaults
    "prefix": ("reparam_hidden", lambda v: {"length": PREFIX_LENGTH, "reparam_hidden": v}, lambda c: 8 * c.n_embd),
    # the soft prompt takes positions 0..length-1 of the backbone's window
    "prompt": ("length", lambda v: {"length": v}, lambda c: c.n_positions),
}


# ---- budgets ---------------------------------------------------------------------------------


def parameter_counts(model, kind: str, settings: dict) -> tuple[int, int]:
    """``(trainable, stored)`` numbers of a fresh ``kind`` module with ``settings`` (built, then dropped)."""
    config = model.new_config(kind, **settings)
    k = model.kind(kind)
    module = k.new_module(config.settings, for_training=True)
    trainable = sum(p.numel() for p in module.parameters())
    stored = sum(math.prod(shape) for shape in k.file_shapes(config.settings).values())
    return trainable, stored


def budget_setting(model, kind: str, percent: float) -> dict:
    """The ``kind`` settings whose trainable count lands nearest ``percent`` % of the backbone.

    Every kind's count is affine in its searched setting (:data:`KNOBS`), so the two fresh modules at
    values 1 and 2 give the line; the nearest whole values on it are built and counted again.
    Returns ``{"settings", "knob", "value", "trainable", "stored", "target", "off_by", "reachable"}``
    (``off_by``: relative miss; ``reachable``: within :data:`TOLERANCE`).
    """
    if kind not in KNOBS:
        raise ValueError(f"no budget search for kind {kind!r}; known: {', '.join(KNOBS)}")
    if not percent > 0:
        raise ValueError(f"a budget is a percentage > 0, got {percent}")
    knob, make, largest = KNOBS[kind]
    total = sum(p.numel() for p in model.backbone.parameters())
    target = percent / 100 * total
    top = max(1, largest(model.backbone.config))
    c1, c2 = parameter_counts(model, kind, make(1))[0], parameter_counts(model, kind, make(2))[0]
    slope, base = c2 - c1, c1 - (c2 - c1)
    guess = (target - base) / slope if slope > 0 else 1
    best = None
    for value in sorted({min(top, max(1, int(math.floor(guess)) + d)) for d in (0, 1)}):
        trainable, stored = parameter_counts(model, kind, make(value))
        if best is None or abs(trainable - target) < abs(best[1] - target):
            best = (value, trainable, stored)
    value, trainable, stored = best
    off_by = (trainable - target) / target
    return {"settings": make(value), "knob": knob, "value": value, "trainable": trainable, "stored": stored,
            "target": round(target), "off_by": off_by, "reachable": abs(off_by) <= TOLERANCE}


# ---- data ------------------------------------------------------------------------------------


def skill_splits(bot, name: str, limit: int | None, seed: int = 0) -> dict[str, list]:
    """``{"train", "valid", "test"}`` of skill ``name`` as the recipe trains and the eval scores them.

    Every split carries the skill's knowledge (:func:`~bot.evaluation.runner.skill_examples`). A
    knowledge skill's training split gets the recipe's augmentation first; then ``limit`` examples
    are sampled from it (the same sample for every kind and seed).
    """
    from .runner import skill_examples

    train = skill_examples(bot, name, None, split="train")
    spec = bot.specs[name]
    if spec.knowledge.mode == "retrieval" and spec.knowledge.file:
        from bot.recipes.skills import augmentation

        train = augmentation(name, bot.registry.path(name) / spec.knowledge.file)(train)
    if limit is not None and len(train) > limit:
        train = random.Random(seed).sample(train, limit)
    return {"train": train, "valid": skill_examples(bot, name, None, split="valid"),
            "test": skill_examples(bot, name, None, split="test")}


def _valid(valid: list, epochs: int, batch_size: int) -> list:
    """The validation examples ``train_adapter`` scores after each epoch: with one epoch there is no epoch to
    choose, so one batch of them will do (the figures are the test split's either way)."""
    return valid if epochs > 1 else valid[:batch_size]


def knowledge_skills(bot, names: Sequence[str]) -> list[str]:
    """The skills among ``names`` that answer from a knowledge file (their F1 is the table's)."""
    return [n for n in names if bot.specs[n].knowledge.mode == "retrieval"]


def greedy_f1(model, tokenizer, bot, skill: str, examples: Sequence, route) -> float:
    """Mean unigram F1 of greedy replies to ``examples`` (knowledge filled in) on ``route``, with ``skill``'s
    decoding settings and context turns: the ``oracle`` routing of ``adapterbot eval``, on any model."""
    from bot.dialogue import build_context, context_budget, copy_source
    from bot.generation import generate_ids

    from .metrics import text_metrics
    from .runner import greedy_settings

    decoding = greedy_settings(bot, skill)
    budget = context_budget(tokenizer, model.backbone.config.n_positions, decoding["max_new_tokens"])
    turns = bot.specs[skill].decoding.context_turns
    contexts = [build_context(tokenizer, e.context[-turns:] if turns else e.context, budget, e.knowledge) for e in examples]
    sources = [copy_source(tokenizer, e.knowledge) for e in examples]
    order = sorted(range(len(contexts)), key=lambda i: len(contexts[i]))
    texts = [""] * len(contexts)
    for start in range(0, len(order), F1_BATCH):
        chunk = order[start : start + F1_BATCH]
        ids = generate_ids(model, tokenizer, [contexts[i] for i in chunk], [route] * len(chunk),
                           copy_sources=[sources[i] for i in chunk], **dict(decoding))
        for i, row in zip(chunk, ids):
            texts[i] = tokenizer.decode(row, skip_special_tokens=True).strip()
    return text_metrics(texts, [e.response for e in examples])["f1"]


# ---- peak training memory (a subprocess per setting, as bot.bench.training) ---------------------


def peak_memory(spec: dict) -> dict:
    """Peak memory of two training steps in a fresh interpreter; ``{"peak_bytes", "method"}``."""
    from bot.bench.training import in_child

    return in_child("bot.evaluation.compare:memory_child", spec, f"memory measurement of {spec.get('kind')!r}")


def memory_child(spec_json: str) -> None:
    """The subprocess: ``bot.bench.training``'s peak measurement, for any kind (``kind`` ``None``: full fine-tuning)."""
    import torch

    from bot.adapter import AdaptedModel
    from bot.backbone import load_backbone
    from bot.bench.measure import TINY, random_model
    from bot.bench.training import SKILL, _add_skill, _rss, _trim, peak_of_two_steps, train_step

    spec = json.loads(spec_json)
    device = spec["device"]
    cuda = device.startswith("cuda")
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    warm = random_model(TINY, device, "warm-up")  # torch's lazy kernels and buffers load before the baseline
    _add_skill(warm, 8)
    train_step(warm, "adapter" if spec["kind"] else "full", torch.zeros(2, 8, dtype=torch.long, device=device))()
    del warm
    _trim()
    before = 0 if cuda else _rss()
    backbone, _, name = load_backbone(spec["backbone"], device=device)
    model = AdaptedModel(backbone, name)
    if spec["kind"]:
        model.add_adapter(SKILL, model.new_config(spec["kind"], **spec["settings"]))
    else:
        _add_skill(model, 1)  # train_step switches it off: every backbone weight trains
    model.backbone.eval()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.backbone.config.vocab_size, (spec["rows"], spec["tokens"]), generator=g).to(device)
    print(json.dumps(peak_of_two_steps(train_step(model, "adapter" if spec["kind"] else "full", ids), cuda, before)))


# ---- statistics --------------------------------------------------------------------------------


def spread(values: Sequence[float | None]) -> dict:
    """``{"mean", "sd", "n", "values"}`` (``sd``: sample standard deviation, ``None`` for one value)."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return {"mean": statistics.fmean(vals) if vals else None, "sd": statistics.stdev(vals) if len(vals) > 1 else None,
            "n": len(vals), "values": [None if v is None else float(v) for v in values]}


# ---- the comparison ----------------------------------------------------------------------------


def run_compare(bot, *, out: Path, kinds: Sequence[str] = KINDS, skills: Sequence[str] | None = None,
                budgets: Sequence[float] = BUDGETS, epochs: int = EPOCHS, limit: int | None = LIMIT, seeds: int = SEEDS,
                learning_rates: dict[str, float] | None = None, full_finetune_lr: float = FULL_FINETUNE_LR,
                f1_skills: Sequence[str] | None = None, latency: dict | None = None, full_finetune: bool = True,
                backbone_arg: str | None = None, progress: bool = True) -> tuple[dict, list[Path]]:
    """Train and measure every kind at every budget on every skill; write the report into ``out``.

    Args:
        bot: the loaded bot; the compared adapters are added to its model under temporary names and
            removed again; its skills and files are not changed.
        kinds, skills, budgets: what to compare (default skills: every loaded one); budgets in percent.
        epochs, limit, seeds: training epochs, training examples per skill, and how many seeds (0, 1, ...).
        learning_rates: per kind (default :data:`LEARNING_RATES`).
        f1_skills: the skills whose greedy F1 is measured (default: the knowledge skills).
        latency: :data:`LATENCY` overrides.
        full_finetune: also run the full fine-tuning reference.
        backbone_arg: how the memory subprocess loads the backbone (``None``: the bundled one).

    Returns:
        The report dict and the written paths.
    """
    import torch
    from tqdm.auto import tqdm

    from bot.bench.latency import generation_figures
    from bot.bench.measure import machine
    from bot.training import perplexity, train_adapter
    from skills.spec import AdapterTraining

    started = time.time()
    from bot.adapter.kinds import KINDS as KNOWN

    kinds = list(dict.fromkeys(kinds))
    unknown = [k for k in kinds if k not in KNOWN]
    if unknown or not kinds:
        raise ValueError(f"unknown adapter kind(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(KNOWN)}")
    names = list(dict.fromkeys(skills)) if skills else list(bot.skills)
    missing = [n for n in names if n not in bot.skills]
    if missing or not names:
        raise ValueError(f"unknown skill(s) {', '.join(missing) or '(none loaded)'}; loaded: {', '.join(bot.skills) or 'none'}")
    if epochs < 1 or seeds < 1 or (limit is not None and limit < 1):
        raise ValueError(f"--epochs, --seeds and --limit must be at least 1 (got {epochs}, {seeds}, {limit})")
    budgets = sorted(set(float(b) for b in budgets))
    if not budgets or any(not b > 0 for b in budgets):
        raise ValueError(f"budgets are percentages > 0, got {budgets}")
    rates = dict(LEARNING_RATES, **(learning_rates or {}))
    lat = dict(LATENCY, **(latency or {}))
    f1_names = list(f1_skills) if f1_skills is not None else knowledge_skills(bot, names)
    bad = [n for n in f1_names if n not in names]
    if bad:
        raise ValueError(f"F1 skill(s) {', '.join(bad)} are not among the compared skills {', '.join(names)}")

    model, tok = bot.model, bot.tokenizer
    device = str(next(model.backbone.parameters()).device)
    total = sum(p.numel() for p in model.backbone.parameters())
    data = {n: skill_splits(bot, n, limit) for n in names}

    # every (kind, budget) -> its setting; budgets that resolve to the same setting train once
    plans: list[dict] = []  # budget-major: a run cut short still has every kind at the first budget
    for budget in budgets:
        for kind in kinds:
            found = budget_setting(model, kind, budget)
            same = next((p for p in plans if p["kind"] == kind and p["settings"] == found["settings"]), None)
            if same is not None:
                same["budgets"].append(budget)
                continue
            plans.append({"kind": kind, "budgets": [budget], **found})

    def assemble(rows: list[dict], bare: dict, full: dict | None, partial: bool) -> dict:
        return {"rows": rows, "bare": bare, "full_finetune": full, "partial": partial, "settings": {
            "skills": names, "kinds": kinds, "budgets_percent": budgets, "epochs": epochs, "limit": limit,
            "seeds": list(range(seeds)), "learning_rates": {k: rates[k] for k in kinds},
            "full_finetune_lr": full_finetune_lr if full_finetune else None, "tolerance": TOLERANCE,
            "prefix_length": PREFIX_LENGTH, "f1_skills": f1_names,
            "batch_size": {n: bot.specs[n].adapter.batch_size for n in names},
            "max_length": {n: bot.specs[n].adapter.max_length for n in names},
            "train_examples": {n: len(data[n]["train"]) for n in names},
            "valid_examples": {n: len(data[n]["valid"]) for n in names},
            "test_examples": {n: len(data[n]["test"]) for n in names},
            "backbone": model.signature.backbone, "backbone_params": total, "latency": lat,
            "memory_batch": _memory_batch(bot), "machine": machine(device),
            "seconds": round(time.time() - started, 1), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        }}

    runs_total = len(plans) * len(names) * seeds
    bar = tqdm(total=runs_total + len(plans) + (len(names) if full_finetune else 0) + 1, desc="compare", unit="run",
               disable=not progress)
    rows: list[dict] = []
    try:
        bar.set_postfix_str("bare backbone")
        bare = {"ppl": {n: perplexity(model, tok, data[n]["test"], None, bot.specs[n].adapter.max_length,
                                      bot.specs[n].adapter.batch_size) for n in names}}
        bare["ppl_mean"] = statistics.fmean(bare["ppl"].values())
        bare["f1"] = {n: greedy_f1(model, tok, bot, n, data[n]["test"], None) for n in f1_names}
        bar.write(f"bare backbone: test ppl {bare['ppl']}, F1 {bare['f1']}")
        bar.update(1)
        full = None
        if full_finetune:
            full = _full_finetune(bot, names, f1_names, data, epochs, full_finetune_lr, backbone_arg, device, bar, progress)
            bar.write(f"full fine-tuning: test ppl after own stage {full['ppl']}, after all {full['ppl_after_all']}, "
                      f"F1 {full['f1']}, peak memory {full['peak_memory_mib']} MiB")
        for plan in plans:
            kind, settings = plan["kind"], plan["settings"]
            per_seed: list[dict] = []
            kept: list[str] = []
            for seed in range(seeds):
                figures: dict = {"ppl": {}, "f1": {}, "seconds": {}, "epochs": {}}
                for n in names:
                    spec = bot.specs[n].adapter
                    temp = f"_compare_{kind}_{plan['value']}_{n}_s{seed}"
                    bar.set_postfix_str(f"{kind} {'/'.join(f'{b:g}%' for b in plan['budgets'])} {n} seed {seed}")
                    torch.manual_seed(seed)  # the fresh module's initialisation
                    model.add_adapter(temp, model.new_config(kind, **settings))
                    training = AdapterTraining(kind=kind, settings=settings, learning_rate=rates[kind], epochs=epochs,
                                               batch_size=spec.batch_size, patience=spec.patience,
                                               max_length=spec.max_length, seed=seed)
                    result = train_adapter(model, tok, temp, data[n]["train"], _valid(data[n]["valid"], epochs, spec.batch_size),
                                           training, show_bar=False)
                    if result.trainable_params != plan["trainable"]:
                        raise RuntimeError(f"{kind} trained {result.trainable_params} parameters, "
                                           f"its budget search counted {plan['trainable']}")
                    figures["ppl"][n] = perplexity(model, tok, data[n]["test"], temp, spec.max_length, spec.batch_size)
                    figures["seconds"][n] = result.seconds
                    figures["epochs"][n] = result.epochs
                    if n in f1_names:
                        figures["f1"][n] = greedy_f1(model, tok, bot, n, data[n]["test"], temp)
                    bar.write(f"{kind} {settings} {n} seed {seed}: test ppl {figures['ppl'][n]:.2f}"
                              + (f", F1 {figures['f1'][n]:.3f}" if n in figures["f1"] else "") + f", trained in {result.seconds:.0f}s")
                    if seed == 0:
                        kept.append(temp)
                    else:
                        model.remove_adapter(temp)
                    bar.update(1)
                per_seed.append(figures)
            bar.set_postfix_str(f"{kind} {settings}: latency and memory")
            figs, context = generation_figures(model, [kept[i % len(kept)] for i in range(lat["batch"])],
                                               repeats=lat["repeats"], new_tokens=lat["new_tokens"],
                                               prompt_tokens=lat["prompt_tokens"])
            for temp in kept:
                model.remove_adapter(temp)
            memory = _memory(backbone_arg, device, kind, settings, bot)
            bar.write(f"{kind} {settings}: latency vs bare b8 {figs['adapter_vs_bare_latency_b8'].value:.2f}x, mixed/one-skill "
                      f"{figs['mixed_vs_single_skill_latency_b8'].value:.2f}x, peak memory {memory['peak_mib']} MiB")
            bar.update(1)
            rows.append(_row(plan, rates[kind], names, f1_names, per_seed, figs, context, memory, total))
            write_compare(assemble(rows, bare, full, partial=True), Path(out))  # what has run so far, should the rest not
    finally:
        bar.close()
        for name in [s for s in model.skills if s.startswith("_compare_")]:
            model.remove_adapter(name)

    report = assemble(rows, bare, full, partial=False)
    return report, write_compare(report, Path(out))


def _memory_batch(bot) -> list[int]:
    """``[rows, tokens]`` of the memory measurement's batch: the first skill's batch size and max length."""
    first = bot.specs[bot.skills[0]].adapter
    return [first.batch_size, min(first.max_length, bot.model.backbone.config.n_positions)]


def _memory(backbone_arg, device: str, kind: str | None, settings: dict | None, bot) -> dict:
    import torch

    rows, tokens = _memory_batch(bot)
    spec = {"backbone": None if backbone_arg is None else str(backbone_arg), "device": device, "kind": kind,
            "settings": settings, "rows": rows, "tokens": tokens, "threads": torch.get_num_threads()}
    try:
        found = peak_memory(spec)
        return {"peak_mib": found["peak_bytes"] / 2**20, "method": found["method"]}
    except (RuntimeError, OSError, ValueError) as e:
        return {"peak_mib": None, "method": f"not measured: {str(e).splitlines()[0]}"}


def _row(plan: dict, lr: float, names: list[str], f1_names: list[str], per_seed: list[dict], figs: dict, context: dict,
         memory: dict, total: int) -> dict:
    def fig(key: str):
        return None if key not in figs else figs[key].value

    return {
        "kind": plan["kind"], "budgets_percent": plan["budgets"], "settings": plan["settings"], "knob": plan["knob"],
        "trainable_params": plan["trainable"], "trainable_percent": 100 * plan["trainable"] / total,
        "stored_params": plan["stored"], "stored_percent": 100 * plan["stored"] / total,
        "target_params": plan["target"], "off_by": plan["off_by"], "reachable": plan["reachable"], "learning_rate": lr,
        "ppl": {n: spread([s["ppl"][n] for s in per_seed]) for n in names},
        "ppl_mean": spread([statistics.fmean(s["ppl"].values()) for s in per_seed]),
        "f1": {n: spread([s["f1"][n] for s in per_seed]) for n in f1_names},
        "train_seconds": spread([statistics.fmean(s["seconds"].values()) for s in per_seed]),
        "epochs_log": [s["epochs"] for s in per_seed],
        "peak_memory_mib": memory["peak_mib"], "memory_method": memory["method"],
        "latency": {"adapter_vs_bare_b1": fig("adapter_vs_bare_latency_b1"), "adapter_vs_bare_b8": fig("adapter_vs_bare_latency_b8"),
                    "mixed_vs_single_skill_b8": fig("mixed_vs_single_skill_latency_b8"),
                    "mixed_vs_per_skill_loop_speedup": fig("mixed_vs_per_skill_loop_speedup"),
                    **{k: v[0] for k, v in context.items() if k.startswith("latency_")}},
    }


def _full_finetune(bot, names: list[str], f1_names: list[str], data: dict, epochs: int, lr: float, backbone_arg,
                   device: str, bar, progress: bool) -> dict:
    """The whole backbone fine-tuned on ``names`` in turn (seed 0): each skill's test perplexity after its
    own stage (the upper reference), after the last stage (forgetting), F1 after the F1 skill's stage."""
    import torch

    from .forgetting import sequential_finetune

    seconds: dict[str, float] = {}
    f1: dict[str, float] = {}

    def on_stage(stage: int, name: str, model, took: float) -> None:
        seconds[name] = took
        if name in f1_names:
            bar.set_postfix_str(f"full fine-tuning: {name} F1")
            f1[name] = greedy_f1(model, bot.tokenizer, bot, name, data[name]["test"], None)
        bar.update(1)

    bar.set_postfix_str("full fine-tuning")
    torch.manual_seed(0)
    forgetting = sequential_finetune(bot, names, {n: data[n]["test"] for n in names}, seed=0, max_epochs=epochs,
                                     learning_rate=lr, train={n: data[n]["train"] for n in names}, progress=False,
                                     on_stage=on_stage)
    own = {n: forgetting["sequential"][n][i] for i, n in enumerate(names)}
    last = {n: forgetting["sequential"][n][-1] for n in names}
    memory = _memory(backbone_arg, device, None, None, bot)
    total = sum(p.numel() for p in bot.model.backbone.parameters())
    return {
        "order": names, "learning_rate": lr, "seed": 0, "trainable_params": total, "trainable_percent": 100.0,
        "ppl": own, "ppl_mean": statistics.fmean(own.values()), "ppl_after_all": last,
        "ppl_after_all_mean": statistics.fmean(last.values()),
        "forgetting": {n: {"after_own_stage": own[n], "after_last_stage": last[n], "rise": last[n] - own[n],
                           "rise_percent": 100 * (last[n] - own[n]) / own[n]} for n in names},
        "stages": forgetting, "f1": f1, "train_seconds": statistics.fmean(seconds.values()), "stage_seconds": seconds,
        "peak_memory_mib": memory["peak_mib"], "memory_method": memory["method"],
        # the installed skills' own adapters (their full training), on the same test examples
        "installed": {n: {"kind": bot.model.configs[n].kind, "ppl": forgetting["adapters"][n][0],
                          "trainable_percent": 100 * sum(p.numel() for p in bot.model.adapter_parameters(n)) / total}
                      for n in names},
    }


# ---- the report --------------------------------------------------------------------------------


def _pm(s: dict | None, digits: int | str = 2) -> str:
    """``mean ± sd`` of a :func:`spread` (just the mean for one value; ``–`` for none)."""
    if not s or s.get("mean") is None:
        return "–"
    return fmt(s["mean"], digits) + (f" ± {fmt(s['sd'], digits)}" if s.get("sd") is not None else "")


def _ratio(value) -> str:
    return "–" if value is None else f"{fmt(float(value), 2)}x"


def compare_table(report: dict) -> str:
    """The comparison table (Markdown): one row per kind and setting, with the bare backbone and full fine-tuning."""
    st = report["settings"]
    names, f1_names = st["skills"], st["f1_skills"]
    header = (["kind", "budget", "setting", "trainable %"] + [f"ppl {n}" for n in names] + ["ppl mean"]
              + [f"{n} F1" for n in f1_names] + ["train s / skill", "peak train MiB", "latency vs bare (b1 / b8)",
                                                 "mixed / one-skill batch (b8)"])
    lines = ["| " + " | ".join(esc(h) for h in header) + " |", "|" + "---|" * len(header)]
    bare = report["bare"]
    lines.append("| " + " | ".join(["bare backbone", "–", "–", "0"] + [fmt(bare["ppl"][n], 2) for n in names]
                                   + [fmt(bare["ppl_mean"], 2)] + [fmt(bare["f1"].get(n), 3) for n in f1_names]
                                   + ["–", "–", "1x", "–"]) + " |")
    for r in report["rows"]:
        budget = ", ".join(f"{b:g}%" for b in r["budgets_percent"])
        if not r["reachable"]:
            budget += " (not reached)"
        pct = fmt(r["trainable_percent"], 2)
        if r["stored_params"] != r["trainable_params"]:
            pct += f" (stored {fmt(r['stored_percent'], 2)})"
        setting = ", ".join(f"{k} {v:g}" if isinstance(v, (int, float)) else f"{k} {v}" for k, v in r["settings"].items())
        lat = r["latency"]
        lines.append("| " + " | ".join(
            [r["kind"], budget, setting, pct] + [_pm(r["ppl"][n]) for n in names] + [_pm(r["ppl_mean"])]
            + [_pm(r["f1"].get(n), 3) for n in f1_names]
            + [_pm(r["train_seconds"], 0), fmt(r["peak_memory_mib"], 0),
               f"{_ratio(lat['adapter_vs_bare_b1'])} / {_ratio(lat['adapter_vs_bare_b8'])}", _ratio(lat["mixed_vs_single_skill_b8"])])
            + " |")
    full = report.get("full_finetune")
    if full:
        lines.append("| " + " | ".join(
            ["full fine-tuning", "100%", f"lr {full['learning_rate']:g}, sequential", "100"] + [fmt(full["ppl"][n], 2) for n in names]
            + [fmt(full["ppl_mean"], 2)] + [fmt(full["f1"].get(n), 3) for n in f1_names]
            + [fmt(full["train_seconds"], 0), fmt(full["peak_memory_mib"], 0), "1x (a copy per skill)", "no mixed batch"]) + " |")
    installed = (full or {}).get("installed")
    if installed:
        kinds = sorted({v["kind"] for v in installed.values()})
        pcts = sorted({round(v["trainable_percent"], 2) for v in installed.values()})
        mean = sum(v["ppl"] for v in installed.values()) / len(installed)
        lines.append("| " + " | ".join(
            [f"installed skills ({', '.join(kinds)}; their own full training)", "–", "as installed",
             ", ".join(f"{p:g}" for p in pcts)] + [fmt(installed[n]["ppl"], 2) for n in names] + [fmt(mean, 2)]
            + ["–" for _ in f1_names] + ["–", "–", "–", "–"]) + " |")
    return "\n".join(lines)


def forgetting_table(report: dict) -> str:
    full = report.get("full_finetune")
    if not full:
        return ""
    lines = ["| skill | ppl after its own stage | ppl after the last stage | rise |", "|---|---|---|---|"]
    for n, f in full["forgetting"].items():
        lines.append(f"| {esc(n)} | {fmt(f['after_own_stage'], 2)} | {fmt(f['after_last_stage'], 2)} | "
                     f"{f['rise']:+.2f} ({f['rise_percent']:+.1f}%) |")
    return "\n".join(lines)


def settings_line(report: dict) -> str:
    """One sentence of the settings actually used (the README shows it under the table)."""
    st = report["settings"]
    lrs = ", ".join(f"{k} {v:g}" for k, v in st["learning_rates"].items())
    m = st["machine"]
    def n(count: int, what: str) -> str:
        return f"{count} {what}{'' if count == 1 else 's'}"

    return (f"Reduced-budget comparison, not the recipe's training: {n(st['epochs'], 'epoch')} on at most {st['limit']} training "
            f"examples per skill, seeds {', '.join(map(str, st['seeds']))} (mean ± sd over seeds), learning rates {lrs}"
            + (f", full fine-tuning {st['full_finetune_lr']:g} (seed 0)" if st.get("full_finetune_lr") else "")
            + f"; {m['cpu']}, {n(m['cores'], 'core')}, {n(m['torch_threads'], 'torch thread')}, {st['seconds'] / 60:.0f} minutes.")


def markdown(report: dict) -> str:
    st = report["settings"]
    total = st["backbone_params"]
    lat = st["latency"]
    memory = next((r["memory_method"] for r in report["rows"] if r["peak_memory_mib"] is not None), "not measured")
    rows = report["rows"]
    notes = []
    for name in st["f1_skills"]:
        best = max((r["f1"][name]["mean"] for r in rows if r["f1"].get(name, {}).get("mean") is not None), default=None)
        bare_f1 = report["bare"]["f1"].get(name)
        if best is not None and bare_f1 is not None and best - bare_f1 < 0.05:
            notes.append(f"At this budget no kind lifts {name}'s F1 by 0.05 over the bare backbone's {fmt(bare_f1, 3)} "
                         f"(best {fmt(best, 3)}): copying the answer from the passage is learned over the recipe's epochs, "
                         "so the F1 column tells the kinds apart only at a larger training budget.")
    for r in rows:
        if not r["reachable"]:
            notes.append(f"`{r['kind']}` cannot reach {' or '.join(f'{b:g}%' for b in r['budgets_percent'])}: its nearest "
                         f"setting ({r['knob']} {r['settings'][r['knob']]}) trains {r['trainable_params']:,} parameters, "
                         f"{fmt(r['trainable_percent'], 2)}% of the backbone.")
    lines = [
        "# Adapter kinds compared at matched trainable-parameter budgets",
        "",
        f"**{settings_line(report)}** The figures show how far each kind gets on a short, equal training budget; "
        "the bundled skills' own figures (the recipe's 4 to 15 epochs on every example) are in `docs/reports/eval`.",
        "",
        *(["**Partial: the run stopped before every kind, budget and the full fine-tuning were measured; "
           "these rows are what ran.**", ""] if report.get("partial") else []),
        compare_table(report),
        "",
        "![mean test perplexity and F1 against trainable parameters](compare.png)",
        "",
        "## Method",
        "",
        f"Backbone `{st['backbone']}`, {total:,} parameters. Skills {', '.join(st['skills'])}: their committed splits "
        f"(training examples used: {', '.join(f'{n} {k}' for n, k in st['train_examples'].items())}; test: "
        f"{', '.join(f'{n} {k}' for n, k in st['test_examples'].items())}), knowledge filled in as `adapterbot eval` does; "
        "a knowledge skill's training split gets the recipe's counterfactual and abstention examples before the "
        "sample is drawn (one sample, the same for every kind and seed).",
        "",
        f"Budgets: {', '.join(f'{b:g}%' for b in st['budgets_percent'])} of the backbone. For each kind, the searched setting "
        f"(bottleneck width; Houlsby width; LoRA rank with alpha = 2 x rank on all four projections; the prefix MLP's "
        f"width at prefix length {st['prefix_length']}; prompt length) is the whole value whose freshly built module's "
        f"trainable count is nearest the budget; a budget counts as reached within {100 * st['tolerance']:g}%. "
        "Prefix tuning trains through its reparameterisation MLP, which dominates its count (each prefix vector "
        "adds only one hidden-size embedding), so the MLP's width meets the budget; the file keeps only the "
        "prefix's keys and values (\"stored\"). A soft prompt occupies positions of the backbone's window, so "
        "its length is at most the window; where two budgets give one setting it is trained once.",
        "",
        "Each adapter trains with `bot.training.train_adapter` (AdamW, the skill's batch size and max length, loss on "
        "reply tokens, warm-up over the first tenth of the steps, the best validation epoch kept). Test perplexity "
        "is that of the reference replies; \"ppl mean\" is the arithmetic mean over skills per seed. "
        + (f"{', '.join(st['f1_skills'])} F1: greedy replies to the test questions with the recorded passages and the "
           "skill's decoding settings, scored by unigram F1 (the eval's oracle routing; the bare backbone and full "
           "fine-tuning get the same passages). " if st["f1_skills"] else "")
        + "Training time is `train_adapter`'s wall time per skill, its per-epoch validation included (full fine-tuning: its "
        "training steps only). Peak training memory: a fresh subprocess per setting runs two training steps on a "
        f"batch of {st['memory_batch'][0]} x {st['memory_batch'][1]} random tokens, as `adapterbot bench` "
        f"does: {memory}. Latency: `adapterbot bench`'s generation race on the first seed's adapters "
        f"(greedy, exactly {lat['new_tokens']} new tokens after {lat['prompt_tokens']}-token random prompts, "
        f"{lat['repeats']} interleaved repeats after a warm-up, median of per-repeat ratios); b1 is one row, b8 "
        f"{lat['batch']} rows on one skill; the mixed batch puts the kind's skills in turn on {lat['batch']} rows in one "
        "`generate()` (`route=list`).",
        "",
    ]
    full = report.get("full_finetune")
    if full:
        lines += [
            "## Full fine-tuning and its forgetting",
            "",
            f"Every backbone weight trains (AdamW, lr {full['learning_rate']:g}, the same epochs and examples), skill after "
            f"skill in the order {', '.join(full['order'])} (`bot.evaluation.forgetting.sequential_finetune`, seed 0). "
            "The table's figures are each skill's right after its own stage (the later skills start from the earlier "
            "stages' weights); after later stages they rise:",
            "",
            forgetting_table(report),
            "",
            "An adapter's figures cannot move when another skill is trained: the backbone is frozen.",
            "",
        ]
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    lines += [f"Reproduce: `adapterbot compare --out DIR --epochs {st['epochs']} --limit {st['limit']} "
              f"--seeds {len(st['seeds'])}` ({st['date']}).", ""]
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    """``compare.png``: mean test perplexity (left) and F1 (right) against trainable %, one line per kind."""
    from matplotlib import colormaps

    from .report_plots import _new_figure, _save_figure

    f1_name = next(iter(report["settings"]["f1_skills"]), None)
    panels = 2 if f1_name else 1
    fig = _new_figure(5.5 * panels, 4.4)
    cmap = colormaps["tab10"]
    kinds = list(dict.fromkeys(r["kind"] for r in report["rows"]))
    full, bare = report.get("full_finetune"), report["bare"]
    for p in range(panels):
        ax = fig.add_subplot(1, panels, p + 1)
        for i, kind in enumerate(kinds):
            rows = sorted((r for r in report["rows"] if r["kind"] == kind), key=lambda r: r["trainable_percent"])
            key = (lambda r: r["ppl_mean"]) if p == 0 else (lambda r: r["f1"].get(f1_name))
            xs = [r["trainable_percent"] for r in rows if key(r) and key(r)["mean"] is not None]
            ys = [key(r)["mean"] for r in rows if key(r) and key(r)["mean"] is not None]
            es = [key(r)["sd"] or 0.0 for r in rows if key(r) and key(r)["mean"] is not None]
            if xs:
                ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=kind, color=cmap(i % 10))
        ref_bare = bare["ppl_mean"] if p == 0 else bare["f1"].get(f1_name)
        if ref_bare is not None:
            ax.axhline(ref_bare, color="#888888", linestyle=":", label="bare backbone")
        if full:
            ref_full = full["ppl_mean"] if p == 0 else full["f1"].get(f1_name)
            if ref_full is not None:
                ax.axhline(ref_full, color="black", linestyle="--", label="full fine-tuning (100%)")
        ax.set_xscale("log")
        shown = sorted({round(r["trainable_percent"], 2) for r in report["rows"] if not r["reachable"]}
                       | set(report["settings"]["budgets_percent"]))  # the budgets, and where a kind fell short of them
        ax.set_xticks(shown, [f"{x:g}" for x in shown])
        ax.minorticks_off()
        ax.set_xlabel("trainable parameters, % of the backbone")
        ax.set_ylabel("mean test perplexity (lower is better)" if p == 0 else f"{f1_name} F1 (higher is better)")
        ax.set_title("Test perplexity, mean over skills" if p == 0 else f"{f1_name}: F1 of greedy answers")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    fig.suptitle("Adapter kinds at matched budgets (reduced training budget; error bars: sd over seeds)")
    _save_figure(fig, path)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_compare(report: dict, out: Path) -> list[Path]:
    """``compare.json``, ``compare.md`` and ``compare.png`` in ``out``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "compare.json", out / "compare.md", out / "compare.png"]
    atomic_write_text(paths[0], json.dumps(_jsonable(report), indent=1) + "\n")
    atomic_write_text(paths[1], markdown(report))
    plot(report, paths[2])
    return paths


def main(argv: list[str] | None = None) -> int:
    """``python -m bot.evaluation.compare --render DIR``: rewrite ``compare.md`` and ``compare.png`` from ``DIR/compare.json``
    (the comparison itself runs as ``adapterbot compare``)."""
    import argparse

    p = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    p.add_argument("--render", type=Path, required=True, metavar="DIR", help="folder holding compare.json")
    args = p.parse_args(argv)
    report = json.loads((args.render / "compare.json").read_text(encoding="utf-8"))
    paths = write_compare(report, args.render)
    print("wrote " + ", ".join(str(x) for x in paths[1:]))
    return 0


def run(args) -> list[Path]:
    """``adapterbot compare``: load the bot named by ``args`` and run :func:`run_compare`."""
    import torch

    from bot.chatbot import AdapterBot

    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    device = getattr(args, "device", None) or ("cuda" if torch.cuda.is_available() else "cpu")
    bot = AdapterBot.from_pretrained(args.backbone, args.skills_dir, device=device, trust_remote_code=args.trust_remote_code)
    _, paths = run_compare(bot, out=Path(args.out), kinds=args.kinds, skills=args.skills, budgets=args.budgets,
                           epochs=args.epochs, limit=args.limit, seeds=args.seeds, backbone_arg=args.backbone,
                           full_finetune=not args.no_full_finetune, progress=True)
    return paths


if __name__ == "__main__":
    sys.exit(main())
