"""``adapterbot compare`` on the tiny random GPT-2: every column written, budgets met, full fine-tuning's forgetting."""
from __future__ import annotations

import json
import math

import pytest

from bot.evaluation import compare

KINDS = ["bottleneck", "lora"]
BUDGETS = [8.0]  # percent of the tiny backbone (37k parameters): both kinds reach it within the tolerance


@pytest.fixture(scope="module")
def tiny_compare(tiny_dir, tiny_skills_dir, tmp_path_factory):
    from bot import AdapterBot

    bot = AdapterBot.from_pretrained(tiny_dir, tiny_skills_dir)
    out = tmp_path_factory.mktemp("compare")
    report, paths = compare.run_compare(
        bot, out=out, kinds=KINDS, budgets=BUDGETS, epochs=1, limit=16, seeds=2, f1_skills=["alpha"],
        latency={"batch": 4, "prompt_tokens": 4, "new_tokens": 2, "repeats": 1}, backbone_arg=str(tiny_dir), progress=False)
    return bot, report, paths


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def test_every_column_is_written(tiny_compare):
    bot, report, paths = tiny_compare
    assert [p.name for p in paths] == ["compare.json", "compare.md", "compare.png"]
    assert all(p.stat().st_size > 0 for p in paths)
    assert json.loads(paths[0].read_text(encoding="utf-8"))["settings"]["epochs"] == 1
    rows = report["rows"]
    assert sorted((r["kind"], r["budgets_percent"][0]) for r in rows) == sorted((k, b) for k in KINDS for b in BUDGETS)
    for r in rows:
        assert _finite(r["trainable_percent"]) and r["stored_params"] == r["trainable_params"]
        for skill in ("alpha", "beta"):
            assert _finite(r["ppl"][skill]["mean"]) and r["ppl"][skill]["n"] == 2
            assert _finite(r["ppl"][skill]["sd"])  # two seeds: a spread
        assert _finite(r["ppl_mean"]["mean"])
        assert 0 <= r["f1"]["alpha"]["mean"] <= 1
        assert r["train_seconds"]["mean"] > 0
        assert r["peak_memory_mib"] is not None and r["peak_memory_mib"] > 0, r["memory_method"]
        for key in ("adapter_vs_bare_b1", "adapter_vs_bare_b8", "mixed_vs_single_skill_b8"):
            assert r["latency"][key] > 0
        assert r["learning_rate"] == compare.LEARNING_RATES[r["kind"]]
    assert set(report["bare"]["ppl"]) == {"alpha", "beta"} and 0 <= report["bare"]["f1"]["alpha"] <= 1
    st = report["settings"]
    assert st["limit"] == 16 and st["seeds"] == [0, 1] and st["learning_rates"] == {k: compare.LEARNING_RATES[k] for k in KINDS}
    md = paths[1].read_text(encoding="utf-8")
    assert "Reduced-budget comparison, not the recipe's training" in md
    for column in ("trainable %", "ppl alpha", "ppl beta", "ppl mean", "alpha F1", "train s / skill", "peak train MiB",
                   "latency vs bare (b1 / b8)", "mixed / one-skill batch (b8)"):
        assert column in md
    assert md.count("\n| lora |") == 1 and "| full fine-tuning |" in md and "| bare backbone |" in md
    assert not [s for s in bot.model.skills if s.startswith("_compare_")]  # the compared adapters are gone again


def test_budgets_land_within_the_tolerance(tiny_compare):
    _, report, _ = tiny_compare
    total = report["settings"]["backbone_params"]
    for r in report["rows"]:
        target = r["budgets_percent"][0] / 100 * total
        assert r["reachable"] and abs(r["trainable_params"] - target) <= compare.TOLERANCE * target, r
        assert math.isclose(r["trainable_percent"], 100 * r["trainable_params"] / total)


def test_the_budget_search_picks_the_nearest_setting(tiny):
    model, _ = tiny
    for kind in KINDS:  # the kinds the tiny run compares reach both of these within the tolerance
        for budget in (3.0, 8.0):
            assert compare.budget_setting(model, kind, budget)["reachable"]
    for kind in compare.KINDS:
        found = compare.budget_setting(model, kind, 5.0)
        knob, make, _ = compare.KNOBS[kind]
        target = found["target"]
        for value in (found["value"] - 1, found["value"] + 1):
            if value >= 1:
                assert abs(compare.parameter_counts(model, kind, make(value))[0] - target) >= abs(found["trainable"] - target)
        assert found["reachable"] == (abs(found["off_by"]) <= compare.TOLERANCE)
    prompt = compare.budget_setting(model, "prompt", 50.0)  # more than its longest prompt (the window) can hold
    assert prompt["settings"] == {"length": model.backbone.config.n_positions} and not prompt["reachable"]
    prefix = compare.budget_setting(model, "prefix", 5.0)  # its MLP trains; its file holds the keys and values alone
    config = model.backbone.config
    assert prefix["stored"] == 2 * config.n_layer * compare.PREFIX_LENGTH * config.n_embd != prefix["trainable"]


def test_full_finetuning_reports_its_forgetting(tiny_compare):
    _, report, paths = tiny_compare
    full = report["full_finetune"]
    assert full["trainable_percent"] == 100.0 and full["order"] == ["alpha", "beta"]
    for skill in ("alpha", "beta"):
        f = full["forgetting"][skill]
        assert _finite(f["after_own_stage"]) and _finite(f["after_last_stage"])
        assert math.isclose(f["rise"], f["after_last_stage"] - f["after_own_stage"])
    assert full["stages"]["sequential"]["alpha"][0] == full["forgetting"]["alpha"]["after_own_stage"]
    assert len(full["stages"]["sequential"]["alpha"]) == 2
    assert 0 <= full["f1"]["alpha"] <= 1 and full["train_seconds"] > 0 and full["peak_memory_mib"] > 0
    md = paths[1].read_text(encoding="utf-8")
    assert "ppl after its own stage" in md


def test_bad_arguments_are_refused_before_any_training(tiny_bot, tmp_path):
    with pytest.raises(ValueError, match="unknown adapter kind"):
        compare.run_compare(tiny_bot, out=tmp_path, kinds=["adapterx"], progress=False)
    with pytest.raises(ValueError, match="unknown skill"):
        compare.run_compare(tiny_bot, out=tmp_path, skills=["nope"], progress=False)
    with pytest.raises(ValueError, match="at least 1"):
        compare.run_compare(tiny_bot, out=tmp_path, epochs=0, progress=False)
    assert not (tmp_path / "compare.json").exists()


def test_the_cli_defaults_are_the_modules():
    from bot.cli import build_parser

    args = build_parser().parse_args(["compare", "--out", "x"])
    assert (args.epochs, args.limit, args.seeds) == (compare.EPOCHS, compare.LIMIT, compare.SEEDS)
    assert args.kinds == list(compare.KINDS) and args.budgets == list(compare.BUDGETS)


def test_the_report_renders_again_from_its_json(tiny_compare):
    _, _, paths = tiny_compare
    md = paths[1].read_text(encoding="utf-8")
    paths[1].unlink()
    assert compare.main(["--render", str(paths[0].parent)]) == 0
    assert paths[1].read_text(encoding="utf-8") == md and paths[2].stat().st_size > 0
