"""`python -m bot.bench.loadtest` runs end to end on the tiny fixtures (2 sessions x 2 turns), so the load run
cannot rot; and its mixing check flags a conversation that holds another session's messages.

Speed is never asserted here.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("gradio")
pytest.importorskip("gradio_client")
pytest.importorskip("psutil")

from bot.bench.loadtest import check_turn, growth_after_warmup, high_water_growth, message_for, mode_for  # noqa: E402


def turn_messages(user: str, reply: str = "a reply", title: str = "alpha · 0.91") -> list[dict]:
    return [{"role": "user", "content": user},
            {"role": "assistant", "content": "details", "metadata": {"title": title, "status": "done"}},
            {"role": "assistant", "content": [{"type": "text", "text": reply}]}]


def test_check_turn_accepts_a_clean_conversation_and_flags_mixing():
    sent = [message_for(3, 0), message_for(3, 1)]
    first = turn_messages(sent[0])
    both = first + turn_messages(sent[1])
    assert check_turn("", first, sent[:1], None, 3) == (True, [])
    assert check_turn("", both, sent, first, 3) == (True, [])

    leaked = first + turn_messages(message_for(5, 1))  # session 5's turn shown to session 3
    answered, problems = check_turn("", leaked, sent, first, 3)
    assert not answered and any("session(s) [5]" in p for p in problems)
    answered, problems = check_turn("", turn_messages(sent[1]), sent, first, 3)  # earlier turn lost
    assert problems
    changed = turn_messages(sent[0], reply="rewritten") + turn_messages(sent[1])
    assert "the earlier turns changed since the previous reply" in check_turn("", changed, sent, first, 3)[1]
    assert check_turn(sent[1], first, sent, first, 3)[0] is False  # refused: the message stays in the box
    assert check_turn("", first[:2] + [{"role": "assistant", "content": " "}], sent[:1], None, 3)[0] is False
    assert {mode_for(0, t, ["alpha", "beta"]) for t in range(3)} == {"auto", "beta", "bare"}
    assert mode_for(1, 0, []) == "auto"  # no skill to pick by hand


def test_memory_growth_is_taken_after_the_warm_up_turns():
    timeline = [(0.0, 100), (1.0, 300), (2.0, 310), (3.0, 305), (4.0, 330)]
    assert growth_after_warmup(timeline, [0.5, 0.9, 1.5, 3.5], warmup=2) == 30  # from 300 (t=1.0) up to 330
    assert growth_after_warmup(timeline, [0.5, 0.9], warmup=2) is None  # no turn after the warm-up


def test_high_water_growth_compares_the_peaks_of_the_first_and_last_turns_after_the_warm_up():
    swinging = [(0.0, 100), (1.0, 300), (2.0, 200), (3.0, 310), (4.0, 200), (5.0, 305), (6.0, 210)]
    done = [0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5]
    assert high_water_growth(swinging, done, warmup=1, window=2) == 5  # swings, no growth: peak 305 in the last two turns, 300 in the first
    leaking = [(at, b + 50 * at) for at, b in swinging]
    assert high_water_growth(leaking, done, warmup=1, window=2) > 100
    assert high_water_growth(swinging, done[:4], warmup=1, window=2) is None  # too few turns for two windows


def test_load_run_smoke(tiny_dir, tiny_skills_dir, tmp_path):
    skills = tmp_path / "skills"
    shutil.copytree(tiny_skills_dir, skills)
    out = tmp_path / "load.json"
    # A child process: the run starts a server, a client process and threads, and owns its stdio.
    proc = subprocess.run([sys.executable, "-m", "bot.bench.loadtest", "--backbone", str(tiny_dir), "--skills-dir", str(skills),
                           "--sessions", "2", "--turns", "2", "--max-new-tokens", "4", "--timeout", "300", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=Path(__file__).resolve().parents[1])
    rc = proc.returncode
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["errors"]["count"] == 0, report["errors"]
    assert report["turns"]["answered"] == report["turns"]["requested"] == 4
    assert report["mixing"]["mixed_sessions"] == [] and report["timed_out"] is False
    assert report["ok"] is True and rc == 0
    assert sorted((r["session"], r["turn"]) for r in report["records"]) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert all(r["answered"] and r["label"] for r in report["records"])
    assert {"alpha", "beta"} & {r["mode"] for r in report["records"]}  # a skill was picked by hand
    assert {(r["session"], r["client"]) for r in report["records"]} == {(0, "gradio"), (1, "openai")}  # mixed clients
    assert all(b["answered"] == b["sent"] == 2 and b["latency_s"]["p50"] > 0 for b in report["by_client"].values())
    assert report["by_client"]["openai"]["first_token_s"]["p50"] > 0
    mem = report["memory_mib"]
    assert 0 < mem["baseline"] <= mem["peak"] and mem["samples"] >= 1
    assert mem["turns_after_warmup"] == 0 and mem["growth_after_warmup"] is None  # 4 turns: no warm-up passed
    assert mem["clients_connected"] > 0 and mem["client_process_peak"] > 0
    assert all(r["start_s"] is not None for r in report["records"])
    assert report["latency_s"]["p50"] > 0 and report["wall_s"] > 0
    assert 0 < report["first_token_s"]["p50"] <= report["latency_s"]["max"]
    assert "Load run: 2 sessions x 2 turns, engine batch 32 (PASS)" in proc.stdout
    busy = report["engine"]["busy_s"]
    assert busy["prefill"] > 0 and busy["decoding"] > 0 and busy["routing"] > 0  # auto turns were routed
    assert sum(busy.values()) <= report["wall_s"] + 1 and "engine thread busy" in proc.stdout
    assert report["baseline"]["engine"]["max_batch"] == 1 and report["baseline"]["turns"]["answered"] == 4
    assert report["ratios"]["throughput"] > 0 and report["ratios"]["p95_latency"] > 0


def test_load_run_beside_a_training_process(tiny_dir, tiny_skills_dir, tmp_path):
    skills = tmp_path / "skills"
    shutil.copytree(tiny_skills_dir, skills)
    before = sorted(p.name for p in skills.iterdir())
    data = tmp_path / "cooking.jsonl"
    data.write_text("".join(json.dumps({"context": [f"how long do i boil egg number {i}"], "response": f"About {i} minutes."}) + "\n"
                            for i in range(40)), encoding="utf-8")
    out = tmp_path / "load.json"
    proc = subprocess.run([sys.executable, "-m", "bot.bench.loadtest", "--backbone", str(tiny_dir), "--skills-dir", str(skills),
                           "--sessions", "2", "--turns", "2", "--max-new-tokens", "4", "--no-baseline",
                           "--during-training", str(data), "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=Path(__file__).resolve().parents[1])
    report = json.loads(out.read_text(encoding="utf-8"))
    beside = report["during_training"]
    assert proc.returncode == 0 and beside["ok"] and beside["turns"]["answered"] == 4, proc.stdout[-2000:]
    assert beside["training"]["outcome"] in ("finished during the load", "stopped after the load")
    assert report["ratios"]["p95_latency_training"] > 0 and "while a skill trains" in proc.stdout
    assert sorted(p.name for p in skills.iterdir()) == before  # trained on a copy: the folder given is untouched
