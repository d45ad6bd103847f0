"""`adapterbot eval` on the tiny backbone and toy skills: report keys, routings, predictions, forgetting, CLI."""
from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from bot.evaluation.report import PER_SKILL_KEYS, ROUTING_KEYS, SKILL_KEYS, write_report
from bot.evaluation.runner import ROUTINGS, evaluate_bot, skill_examples

LIMIT = 4
TOY = ["alpha", "beta"]


def folder_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def module_bot(tiny_dir, tiny_skills_dir, tmp_path_factory):
    from bot import AdapterBot

    root = tmp_path_factory.mktemp("eval") / "skills"
    shutil.copytree(tiny_skills_dir, root)
    return AdapterBot.from_pretrained(tiny_dir, root)


@pytest.fixture(scope="module")
def full_run(module_bot, tmp_path_factory):
    """One evaluation with the forgetting baseline; the bot's weights and files are recorded around it."""
    bot = module_bot
    weights = {k: v.clone() for k, v in bot.model.state_dict().items()}
    files = folder_digest(bot.registry.root)
    report, forgetting = evaluate_bot(bot, limit=LIMIT, baseline="sequential-finetune", seed=0, progress=False)
    out = tmp_path_factory.mktemp("report")
    paths = write_report(report, out, forgetting)
    return {"report": report, "forgetting": forgetting, "out": out, "paths": paths, "weights": weights, "files": files}


def test_report_json_has_the_design_keys(full_run, module_bot):
    data = json.loads((full_run["out"] / "report.json").read_text())
    assert set(data["skills"]) == set(TOY)
    for name in TOY:
        entry = data["skills"][name]
        assert set(SKILL_KEYS) <= set(entry)
        assert entry["n"] == len(skill_examples(module_bot, name, LIMIT)) > 0
        assert math.isfinite(entry["ppl"]) and math.isfinite(entry["ppl_backbone"])
        assert entry["ppl"] < entry["ppl_backbone"]  # the trained adapter fits its own skill better than the bare backbone
        assert 0 <= entry["f1"] <= 1 and 0 <= entry["bleu"] <= 100
    routing = data["routing"]
    assert set(ROUTING_KEYS) <= set(routing)
    assert routing["labels"] == ["none", *TOY]
    assert len(routing["confusion"]) == 3 and all(len(row) == 3 for row in routing["confusion"])
    assert sum(map(sum, routing["confusion"])) == LIMIT + sum(data["skills"][s]["n"] for s in TOY)  # none + skills, limited
    assert 0 <= routing["accuracy"] <= 1
    for name in routing["labels"]:
        assert set(PER_SKILL_KEYS) <= set(routing["per_skill"][name])
    chitchat = data["chitchat"]  # the bare backbone's replies to out-of-set first messages, printed to be read
    assert len(chitchat) == len({c["message"] for c in chitchat}) == 12
    assert all(c["default"] == module_bot.respond([c["message"]], None, seed=i).text for i, c in enumerate(chitchat[:2]))
    assert "Open chit-chat" in (full_run["out"] / "report.md").read_text()
    settings = data["settings"]
    assert settings["limit"] == LIMIT and settings["seed"] == 0 and settings["seconds"] >= 0
    assert settings["backbone"] == module_bot.model.signature.backbone


def test_three_routings_side_by_side(full_run):
    report = full_run["report"]
    assert list(report["routings"]) == list(ROUTINGS)
    for routing in ROUTINGS:
        assert set(report["routings"][routing]) == set(TOY)
        for m in report["routings"][routing].values():
            assert {"n", "bleu", "f1", "rougeL", "distinct1", "distinct2", "length"} <= set(m)
    for name in TOY:  # the skill's headline metrics are the oracle routing's
        oracle = report["routings"]["oracle"][name]
        assert all(report["skills"][name][k] == oracle[k] for k in ("bleu", "f1", "rougeL", "distinct1", "distinct2"))
        assert 0 <= report["routings"]["auto"][name]["gold_routed"] <= 1
    md = (full_run["out"] / "report.md").read_text()
    assert "Responses by routing" in md and "oracle" in md and "auto" in md


def test_auto_routing_follows_the_manager(module_bot, monkeypatch):
    from manager import Decision

    def all_to_alpha(histories):
        return [Decision("alpha", 1.0, {"none": 0.0, "alpha": 1.0, "beta": 0.0}) for _ in histories]

    monkeypatch.setattr(module_bot.manager, "route_batch", all_to_alpha)
    report, _ = evaluate_bot(module_bot, skills=["alpha", "beta"], limit=2, progress=False)
    auto, oracle, bare = (report["routings"][r] for r in ("auto", "oracle", "backbone"))
    assert auto["alpha"] == {**oracle["alpha"], "gold_routed": 1.0, "bare_routed": 0.0}
    assert auto["beta"]["gold_routed"] == 0.0
    assert auto["alpha"] != bare["alpha"] or report["samples"]["alpha"][0]["oracle"] != report["samples"]["alpha"][0]["backbone"]
    # beta's turns are answered by alpha's adapter, as the bot would answer them
    samples = report["samples"]["beta"]
    assert samples and all(s["auto_skill"] == "alpha" for s in samples)
    assert all(s["auto"] == s["oracle"] for s in report["samples"]["alpha"])


def test_without_a_manager_auto_is_the_bare_backbone(module_bot, monkeypatch, tmp_path):
    monkeypatch.setattr(module_bot, "manager", None)
    report, _ = evaluate_bot(module_bot, skills=["beta"], limit=2, progress=False)
    auto, bare = report["routings"]["auto"]["beta"], report["routings"]["backbone"]["beta"]
    assert {k: v for k, v in auto.items() if k not in ("gold_routed", "bare_routed")} == bare
    assert auto["bare_routed"] == 1.0
    assert report["routing"] == {"accuracy": None, "labels": [], "confusion": [], "per_skill": {}}
    write_report(report, tmp_path, None)
    assert "no dialogue manager installed" in (tmp_path / "report.md").read_text()


def test_forgetting_adapters_stay_put_and_sequential_forgets(full_run, module_bot):
    f = full_run["forgetting"]
    assert f["order"] == TOY and f["metric"] == "ppl"
    for name in TOY:
        values = f["adapters"][name]
        assert len(values) == len(TOY)
        assert all(v == values[0] for v in values)  # unchanged to the last digit
        assert values[0] == full_run["report"]["skills"][name]["ppl"]  # the same figure as the report's
    first = f["sequential"]["alpha"]
    assert len(first) == 2 and all(math.isfinite(v) for v in first)
    assert first[0] != first[1]  # stage 2 (beta) moved the first skill
    assert first[0] != full_run["report"]["skills"]["alpha"]["ppl_backbone"]  # stage 1 did train the copy
    # the fine-tune worked on a copy: the bot's weights and skill files are as they were
    after = module_bot.model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in full_run["weights"].items())
    assert folder_digest(module_bot.registry.root) == full_run["files"]
    assert (full_run["out"] / "forgetting.png").is_file()
    assert "Forgetting" in (full_run["out"] / "report.md").read_text()


def _write(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def test_predictions_file_scored_without_any_skill(tiny_dir, tmp_path):
    from bot import AdapterBot

    bot = AdapterBot.from_pretrained(tiny_dir, tmp_path / "no_skills")
    assert bot.skills == []
    preds = _write(tmp_path / "preds.jsonl", [
        {"context": ["hi"], "prediction": "hello there", "reference": "hello there", "skill": "x"},
        {"context": "how are you", "prediction": "fine", "reference": "i am well"},
    ])
    report, forgetting = evaluate_bot(bot, predictions=preds, progress=False)
    assert forgetting is None and report["skills"] == {}
    assert report["predictions"]["all"]["n"] == 2
    assert report["predictions"]["all"]["f1"] == pytest.approx(0.5)
    assert report["predictions"]["skills"]["x"]["f1"] == 1.0
    write_report(report, tmp_path / "out")
    assert "Scored predictions file" in (tmp_path / "out" / "report.md").read_text()
    with pytest.raises(ValueError, match="nothing to evaluate"):
        evaluate_bot(bot, progress=False)


def test_bad_predictions_file_names_the_line(tiny_dir, tmp_path, capsys):
    from bot.cli import main

    bad = _write(tmp_path / "bad.jsonl", [
        {"context": ["hi"], "prediction": "a", "reference": "b"},
        '{"context": ["hi"], "prediction": "a"',
    ])
    code = main(["eval", "--out", str(tmp_path / "out"), "--backbone", str(tiny_dir),
                 "--skills-dir", str(tmp_path / "none"), "--predictions", str(bad)])
    assert code == 2
    assert "line 2" in capsys.readouterr().err
    assert not (tmp_path / "out" / "report.json").exists()


def test_unknown_skill_and_bad_limit_are_clear_errors(module_bot):
    with pytest.raises(ValueError, match="alpha, beta"):
        evaluate_bot(module_bot, skills=["gamma"], progress=False)
    with pytest.raises(ValueError, match="limit"):
        evaluate_bot(module_bot, limit=0, progress=False)


def test_cli_eval_writes_the_report(tiny_dir, tiny_skills_dir, tmp_path):
    from bot.cli import main

    before = folder_digest(tiny_skills_dir)
    out = tmp_path / "out"
    assert main(["eval", "--out", str(out), "--backbone", str(tiny_dir), "--skills-dir", str(tiny_skills_dir), "--limit", "3"]) == 0
    assert (out / "report.md").is_file() and (out / "ppl.png").is_file() and (out / "confusion.png").is_file()
    data = json.loads((out / "report.json").read_text())
    assert all(data["skills"][s]["n"] <= 3 for s in TOY)
    assert data["settings"]["limit"] == 3
    assert folder_digest(tiny_skills_dir) == before  # evaluation writes nothing into the skills folder


def test_follow_up_turns_are_a_set_of_their_own_outside_the_calibration_union(tiny_bot):
    from bot.evaluation.conversation_routing import CALIBRATION_SETS, conversation_routing, routing_sets

    test_file = tiny_bot.registry.path("alpha") / "test.jsonl"
    follow_up = ["my wifi keeps dropping", "Restart the router.", "i tried that already, still nothing"]
    with test_file.open("a", encoding="utf-8") as f:
        f.write(json.dumps({"context": follow_up, "response": "Then check the cable."}) + "\n")
    sets = routing_sets(tiny_bot)
    assert [gold for gold, _ in sets["follow_up"]] == ["alpha", "alpha"]
    as_is, after_chat = (h for _, h in sets["follow_up"])
    assert as_is == follow_up and after_chat[-3:] == follow_up and len(after_chat) > 3
    result = conversation_routing(tiny_bot)
    assert result["sets"]["follow_up"]["n"] == 2
    assert result["calibration"]["n"] == sum(len(sets[name]) for name in CALIBRATION_SETS)


def test_out_of_set_histories_count_each_distinct_history_once():
    from bot.evaluation.conversation_routing import out_of_set_histories
    from skills.corpora import chatterbot_conversations

    histories = out_of_set_histories()
    assert len({tuple(h) for h in histories}) == len(histories) and ["stock market"] in histories
    openings = [conv.turns[0] for conv in chatterbot_conversations(["money"])]
    assert openings.count("stock market") > 1  # the corpus repeats it; the set holds it once


def test_routing_sets_of_the_validation_split_hold_no_outside_check_and_the_floor_report_counts_moves(tiny_bot, monkeypatch):
    from bot.evaluation.answered_floor import OFF, best, measure
    from bot.evaluation.conversation_routing import routing_sets

    valid = routing_sets(tiny_bot, split="valid")
    assert valid["out_of_set"] == [] and routing_sets(tiny_bot)["out_of_set"]
    test_contexts = {tuple(e) for e in (h for _, h in routing_sets(tiny_bot)["first_turn"])}
    assert not test_contexts & {tuple(h) for name, h in valid["first_turn"] if name != "none"}
    shipped = tiny_bot.answered_floor
    monkeypatch.setattr(tiny_bot, "knowledge", lambda skill, history: ("a passage", True))  # every file answers
    report = measure(tiny_bot, "valid", (0.0, OFF))
    assert tiny_bot.answered_floor == shipped
    assert all(r["right"] == r["wrong"] == 0 for r in report[OFF].values())  # nothing reaches the floor above 1
    assert best({0.1: {"a": {"n": 9, "right": 3, "wrong": 1}}, 0.2: {"a": {"n": 9, "right": 2, "wrong": 0}}}) == 0.2
