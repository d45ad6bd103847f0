"""`adapterbot bench --quick` runs end to end on the tiny backbone and writes a well-formed report.

Speed is never asserted here: these are smoke tests so the benchmark cannot rot.
"""
from __future__ import annotations

import importlib.util
import json
import shutil

from bot.adapter.routing import active_plan
from bot.bench import figure_keys
from bot.bench.measure import PEER_FIGURES
from bot.cli import main


def test_quick_bench_writes_every_figure(tiny_dir, tiny_skills_dir, tmp_path):
    skills = tmp_path / "skills"
    shutil.copytree(tiny_skills_dir, skills)
    installed = sorted(p.name for p in skills.iterdir())
    out = tmp_path / "bench"
    assert main(["bench", "--out", str(out), "--quick", "--backbone", str(tiny_dir), "--skills-dir", str(skills),
                 "--device", "cpu"]) == 0

    data = json.loads((out / "bench.json").read_text(encoding="utf-8"))
    has_peft = importlib.util.find_spec("peft") is not None
    for name in PEER_FIGURES:
        assert f"dialogpt_small.{name}" in figure_keys("cpu") and f"bundled.{name}" not in figure_keys("cpu")
    for key in figure_keys("cpu"):
        fig = data[key]
        if "_vs_peft_" in key and not has_peft:  # skipped, saying why
            assert fig["value"] is None and "peft not installed" in fig["note"], key
            continue
        assert isinstance(fig["value"], float), key
        assert isinstance(fig["target"], float) and isinstance(fig["unit"], str) and fig["unit"], key
        assert isinstance(fig["holds"], bool), key
    assert {"cpu", "cores", "torch", "device"} <= set(data["machine"])
    assert data["setup"]["quick"] is True
    assert all(isinstance(v["value"], float) for v in data["context"].values())
    assert sorted(p.name for p in skills.iterdir()) == installed  # the skill-add timing worked on a copy
    md = (out / "bench.md").read_text(encoding="utf-8")
    assert "| figure | value | target | holds |" in md and "dialogpt_small" in md
    assert "naive per-skill loop" in md and "adapter_names" in md
    if has_peft:  # both sides of the PEFT race generated the same tokens, with the same trainable count
        for workload in ("distinct", "few", "zipf", "one"):
            assert data["context"][f"dialogpt_small.peft_same_tokens_{workload}"]["value"] == 1.0
        ours, theirs = (data["context"][f"dialogpt_small.{k}_per_skill"]["value"] for k in ("lora_params", "peft_lora_params"))
        assert ours == theirs > 0
    assert data["setup"]["peers"]["workloads"]["distinct"] == list(range(8))


def test_routing_share_is_missing_without_a_manager(tiny_dir, tmp_path):
    from bot import AdapterBot
    from bot.bench.turn import routing_figure

    bot = AdapterBot.from_pretrained(tiny_dir, tmp_path / "no-skills")
    fig, context = routing_figure(bot, repeats=1)
    assert fig.value is None and fig.holds is False and context == {}
    assert fig.to_json()["holds"] is False


def test_bare_route_runs_the_backbone_as_loaded(tiny):
    """The bare path the latency figures compare against carries no hooks; routes nest and restore.

    A bare call nested in (or beside) a routed one finds the routed call's hooks in place, and they pass it through.
    """
    import torch

    model, _ = tiny
    ids = torch.randint(0, 200, (2, 6))
    with torch.no_grad():
        bare = model(input_ids=ids).logits
    model.add_adapter("a", model.new_config(bottleneck=4))
    model.add_adapter("b", model.new_config(bottleneck=4))
    blocks = model.backbone.transformer.h
    assert not any(block._forward_hooks for block in blocks)
    with model.route("a"):
        assert all(len(block._forward_hooks) == 1 for block in blocks)
        with model.route(None), torch.no_grad():
            assert all(len(block._forward_hooks) == 1 for block in blocks)
            assert torch.equal(model(input_ids=ids).logits, bare)
        with model.route(["a", "b"]):
            assert all(len(block._forward_hooks) == 1 for block in blocks)
        assert active_plan().banks["bottleneck"].uniform == 0
    assert not any(block._forward_hooks for block in blocks)
