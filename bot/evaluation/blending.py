"""Should Auto mode blend the top two skills when the manager's calibrated scores are close?

    python -m bot.evaluation.blending [--backbone ID|PATH] [--skills-dir DIR] [--out DIR] [--seed 0]

Two sets are built from the installed skills' test splits (fixed seed): conversations that mix two
skills (one exchange of skill A, its last user turn and A's reply, then a test turn of skill B), and
single-skill turns (B's test turn alone). B's reference reply is scored. The manager scores each
history; its top-1 route (a skill, or the bare backbone under the threshold) is compared with a
blend of its two best skills weighted by their calibrated probabilities, applied only where the
manager answers with a skill and the second skill is within a margin of it. Both are scored by the
perplexity of the reference reply (lower is better), per margin and set.

Writes ``blending.json`` and ``blending.md``. The recommendation is the margin that lowers the mixed
conversations' perplexity most while the single-skill turns' rises by no more than 1%, or "off"
when no margin lowers the mixed set's by at least 1%.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
from pathlib import Path
from typing import Sequence

import torch

from skills.data import Example
from skills.files import atomic_write_text

from ..chatbot import top_two_blend
from ..training import encode_example, token_nll, window
from .runner import skill_examples

MARGINS = (0.1, 0.2, 0.3, 0.5, 1.0)
PER_PAIR = 12  # conversations per ordered pair of skills


def conversation_sets(bot, seed: int = 0, per_pair: int = PER_PAIR) -> dict[str, list[tuple[str, Example]]]:
    """``{"mixed": [...], "single": [...]}`` of ``(skill B, example)``: A's exchange then B's test turn, or B's turn alone."""
    rng = random.Random(seed)
    tests = {name: skill_examples(bot, name) for name in bot.skills}
    sets: dict[str, list[tuple[str, Example]]] = {"mixed": [], "single": []}
    for a in sorted(tests):
        for b in sorted(tests):
            if a == b or not tests[a] or not tests[b]:
                continue
            for _ in range(per_pair):
                first, second = rng.choice(tests[a]), rng.choice(tests[b])
                context = [first.context[-1], first.response, second.context[-1]]
                sets["mixed"].append((b, Example(context, second.response, second.knowledge)))
                sets["single"].append((b, Example([second.context[-1]], second.response, second.knowledge)))
    return sets


@torch.no_grad()
def reply_nll(bot, example: Example, route) -> tuple[float, int]:
    """Summed NLL of the reference reply's tokens under ``route``, and their count."""
    ids, labels = encode_example(bot.tokenizer, example, window(bot.model, 128))
    with bot.model.route([route]):
        nll, n = token_nll(bot.model, torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long), torch.tensor([labels]))
    return float(nll), n


def score_rows(bot, conversations: list[tuple[str, Example]]) -> list[dict]:
    """Per conversation: the top-1 route, the blend (where one applies), the score gap, and both NLLs."""
    rows = []
    for target, example in conversations:
        decision = bot.manager.route(example.context)
        top1 = decision.skill if decision.skill in bot.specs else None
        _, gap = top_two_blend(decision.scores, bot.skills)
        with_margin = bot.blend_margin
        bot.blend_margin = 1.0  # every blend Auto mode could make; the margins are applied below
        try:
            blend = bot.auto_blend(top1, decision.scores)
        finally:
            bot.blend_margin = with_margin
        nll1, n = reply_nll(bot, example, top1)
        nll2 = reply_nll(bot, example, blend)[0] if blend else nll1
        rows.append({"target": target, "top1": top1, "blend": blend, "gap": round(gap, 4),
                     "nll_top1": nll1, "nll_blend": nll2, "tokens": n})
    return rows


def _ppl(nll: float, n: int) -> float | None:
    return round(math.exp(nll / n), 3) if n else None


def by_margin(rows: list[dict]) -> dict[str, dict]:
    out = {}
    tokens = sum(r["tokens"] for r in rows)
    for margin in MARGINS:
        close = [r["blend"] is not None and r["gap"] <= margin for r in rows]
        blended = sum(r["nll_blend"] if c else r["nll_top1"] for r, c in zip(rows, close))
        close_rows = [r for r, c in zip(rows, close) if c]
        close_tokens = sum(r["tokens"] for r in close_rows)
        out[str(margin)] = {
            "turns_blended": len(close_rows),
            "ppl_all_top1": _ppl(sum(r["nll_top1"] for r in rows), tokens), "ppl_all_with_blending": _ppl(blended, tokens),
            "ppl_blended_turns_top1": _ppl(sum(r["nll_top1"] for r in close_rows), close_tokens),
            "ppl_blended_turns_blend": _ppl(sum(r["nll_blend"] for r in close_rows), close_tokens),
        }
    return out


def measure(bot, seed: int = 0) -> dict:
    if bot.manager is None:
        raise ValueError("blending is an Auto-mode choice: install a dialogue manager first (adapterbot manager train)")
    rows = {name: score_rows(bot, convs) for name, convs in conversation_sets(bot, seed).items()}
    margins = {name: by_margin(r) for name, r in rows.items()}
    good = []
    for margin in margins["mixed"]:
        mixed, single = margins["mixed"][margin], margins["single"][margin]
        if mixed["ppl_all_with_blending"] <= 0.99 * mixed["ppl_all_top1"] \
                and single["ppl_all_with_blending"] <= 1.01 * single["ppl_all_top1"]:
            good.append((mixed["ppl_all_with_blending"], margin))
    helps = bool(good)
    return {"conversations": {k: len(v) for k, v in rows.items()}, "seed": seed, "per_pair": PER_PAIR,
            "by_margin": margins, "helps": helps, "margin": min(good)[1] if helps else None,
            "recommendation": f"blend when the top two are within {min(good)[1]}" if helps else "off", "rows": rows}


def markdown(report: dict) -> str:
    n = report["conversations"]
    lines = ["# Blending the top two skills in Auto mode", "",
             f"{n['mixed']} conversations that mix two skills (an exchange of skill A, then a test turn of skill B) and "
             f"{n['single']} single-skill turns (B's turn alone), {report['per_pair']} per ordered pair, seed "
             f"{report['seed']}. Perplexity of B's reference reply (lower is better): top-1 routing vs a blend of the "
             "two best skills weighted by their calibrated probabilities, where the manager answers with a skill and "
             "the second is within the margin.", "",
             "| set | margin | turns blended | ppl, all turns: top-1 | ppl, all turns: with blending | ppl, blended turns: top-1 | ppl, blended turns: blend |",
             "|---|---|---|---|---|---|---|"]
    for name, margins in report["by_margin"].items():
        for margin, m in margins.items():
            lines.append(f"| {name} | {margin} | {m['turns_blended']} | {m['ppl_all_top1']} | {m['ppl_all_with_blending']} | "
                         f"{m['ppl_blended_turns_top1']} | {m['ppl_blended_turns_blend']} |")
    lines += ["", f"**Recommendation: {report['recommendation']}.**" +
              ("" if report["helps"] else " No margin lowered the mixed conversations' perplexity by 1% without raising "
                                           "the single-skill turns' by more than 1%, so Auto mode routes to one skill.")]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot.evaluation.blending", description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default=None, help="hub id or local folder (default: the bundled backbone)")
    parser.add_argument("--skills-dir", default=None, help="installed skills (default: bundled)")
    parser.add_argument("--out", type=Path, default=Path("docs/reports/blending"), help="folder for blending.json and .md")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from bot import AdapterBot

    bot = AdapterBot.from_pretrained(args.backbone, args.skills_dir)
    report = measure(bot, args.seed)
    report["command"] = "python -m bot.evaluation.blending " + " ".join(argv if argv is not None else sys.argv[1:])
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "blending.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(args.out / "blending.md", markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
