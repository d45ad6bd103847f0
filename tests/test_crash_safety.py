"""Crash safety: ``kill -9`` during ``adapterbot skill add`` and ``adapterbot manager train``.

Commands run in child processes forked from ``tests/crash_worker.py`` (which pays the
interpreter's start-up once) on a copy of the toy skills folder, and are killed with SIGKILL
after a delay drawn from a seeded RNG over the length of an uninterrupted run. After every
kill:

- the skills folder still loads (``AdapterBot.from_pretrained``), with no skill skipped;
- the skills installed before are byte-identical;
- ``registry.names()`` is the old set, or the old set plus the new skill, complete;
- the dialogue manager loads, and is byte-identical to the old one or a complete new one.

Two more tests kill the process at the exact instant of a two-step folder swap (the manager's
save, ``skill add --replace``): right after the old folder is renamed away, before the new one
is renamed in, a window a random delay would almost never hit.
"""
from __future__ import annotations

import atexit
import hashlib
import json
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot import AdapterBot
from bot.chatbot import MANAGER_DIR
from skills import SkillRegistry
from tests.conftest import write_toy_data

SEED = 20240813
WORKER = Path(__file__).resolve().parent / "crash_worker.py"
KILLS = 2  # random kills per command, one in each half of an uninterrupted run
LOG: list[dict] = []  # every run, for the report


def _spawn() -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, bufsize=1, cwd=str(WORKER.parent.parent))
    atexit.register(proc.kill)
    return proc


# The worker's start-up (importing torch and transformers: ~40 s on a busy 2-core machine) overlaps
# the other test modules when it starts at collection; the module-scoped fixture then adopts it.
_PRESTARTED: subprocess.Popen | None = _spawn()


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


class Worker:
    """The fork server of ``crash_worker.py``: one job at a time."""

    def __init__(self, proc: subprocess.Popen, logs: Path) -> None:
        self.logs = logs
        self.proc = proc
        assert self._line(timeout=300) == "READY"
        self.jobs = 0

    def _line(self, timeout: float | None) -> str | None:
        """The worker's next line, or None if none came within ``timeout`` seconds."""
        if timeout is not None:
            ready, _, _ = select.select([self.proc.stdout], [], [], max(0.0, timeout))
            if not ready:
                return None
        line = self.proc.stdout.readline()
        assert line, f"the crash worker died (exit code {self.proc.poll()})"
        return line.strip()

    def run(self, args: list[str], kill_after: float | None = None, die_after_moving: Path | None = None) -> dict:
        """Run one command; SIGKILL it after ``kill_after`` seconds unless it ended first (or, with
        ``die_after_moving``, the instant that folder is renamed away)."""
        self.jobs += 1
        log = self.logs / f"job{self.jobs}.log"
        job = {"args": args, "log": str(log), "die_after_moving": str(die_after_moving) if die_after_moving else None}
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        first = self._line(timeout=60)
        assert first and first.startswith("PID "), first
        pid, start = int(first.split()[1]), time.monotonic()
        end = self._line(timeout=kill_after)
        killed = False
        if end is None:  # still running at the kill instant
            os.kill(pid, signal.SIGKILL)
            killed = True
            end = self._line(timeout=60)
        seconds = time.monotonic() - start
        _, _, how, value = end.split()
        result = {"args": args[:3], "killed_by_test": killed, "signal": int(value) if how == "signal" else None,
                  "code": int(value) if how == "code" else None, "seconds": round(seconds, 2),
                  "log": log.read_text(errors="replace") if log.exists() else ""}
        LOG.append({k: v for k, v in result.items() if k != "log"})
        return result

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.kill()  # holds nothing worth a clean exit, and a clean one takes seconds here
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    global _PRESTARTED
    proc, _PRESTARTED = _PRESTARTED or _spawn(), None
    w = Worker(proc, tmp_path_factory.mktemp("crash-logs"))
    yield w
    w.close()
    print("\ncrash-safety runs:", json.dumps(LOG))


@pytest.fixture
def skills_dir(tiny_skills_dir, tmp_path):
    root = tmp_path / "skills"
    shutil.copytree(tiny_skills_dir, root)
    return root


def common(tiny_dir, skills_dir) -> list[str]:
    return ["--backbone", str(tiny_dir), "--skills-dir", str(skills_dir), "--device", "cpu"]


def snapshot(root: Path) -> dict:
    registry = SkillRegistry(root)
    manager = root / MANAGER_DIR
    return {"names": registry.names(), "skills": {n: tree_digest(root / n) for n in registry.names()},
            "manager": tree_digest(manager) if manager.is_dir() else None}


def check_survived(tiny_dir, root: Path, before: dict, new: set[str], run: dict) -> AdapterBot:
    """Everything the issue asks of a folder after a crash; returns the loaded bot."""
    where = f"after {run['args']} (killed={run['killed_by_test']}, {run['seconds']}s):\n{run['log'][-2000:]}"
    names = SkillRegistry(root).names()
    assert set(before["names"]) <= set(names) <= set(before["names"]) | new, where
    for name, digest in before["skills"].items():
        assert tree_digest(root / name) == digest, f"skill {name!r} changed {where}"
    bot = AdapterBot.from_pretrained(tiny_dir, root)
    assert bot.skipped == {}, f"a partial skill is listed: {bot.skipped} {where}"
    assert bot.skills == names, where
    assert bot.manager is not None, f"the dialogue manager no longer loads {where}"
    assert set(bot.manager.skills) <= set(names), where
    manager_now = tree_digest(root / MANAGER_DIR)
    if manager_now != before["manager"]:  # a new manager: complete and loadable (checked above)
        assert set(manager_now) == {"manager_config.json", "manager_model.safetensors"}, where
    for name in set(names) - set(before["names"]):
        assert bot.respond(["my printer will not print"], skill=name, max_new_tokens=3).skill == name
    return bot


def kill_fractions(rng: random.Random) -> list[float]:
    """One kill instant in each of KILLS equal parts of a run, as a fraction of its uninterrupted length."""
    return [rng.uniform(i / KILLS, (i + 1) / KILLS) for i in range(KILLS)]


def test_kill_9_during_skill_add(worker, tiny_dir, skills_dir, tmp_path):
    rng = random.Random(SEED)
    data = write_toy_data(tmp_path / "gamma.jsonl", "alpha")
    before = snapshot(skills_dir)
    full = worker.run(["skill", "add", "gamma0", "--data", str(data), "--limit", "20", *common(tiny_dir, skills_dir)])
    assert full["code"] == 0, full["log"]
    check_survived(tiny_dir, skills_dir, before, {"gamma0"}, full)
    duration = full["seconds"]

    outcomes = []
    for i, fraction in enumerate(kill_fractions(rng), 1):
        before = snapshot(skills_dir)
        name = f"gamma{i}"
        run = worker.run(["skill", "add", name, "--data", str(data), "--limit", "20", *common(tiny_dir, skills_dir)],
                         kill_after=fraction * duration)
        assert run["signal"] == signal.SIGKILL or run["code"] == 0, run["log"]
        check_survived(tiny_dir, skills_dir, before, {name}, run)
        outcomes.append((round(fraction, 2), run["killed_by_test"], name in SkillRegistry(skills_dir).names()))
    assert sum(killed for _, killed, _ in outcomes) >= 1, f"no run was actually killed: {outcomes}"


def test_kill_9_during_manager_train(worker, tiny_dir, skills_dir):
    rng = random.Random(SEED + 1)
    before = snapshot(skills_dir)
    full = worker.run(["manager", "train", *common(tiny_dir, skills_dir)])
    assert full["code"] == 0, full["log"]
    check_survived(tiny_dir, skills_dir, before, set(), full)
    duration = full["seconds"]

    killed = 0
    for fraction in kill_fractions(rng):
        before = snapshot(skills_dir)
        run = worker.run(["manager", "train", *common(tiny_dir, skills_dir)], kill_after=fraction * duration)
        assert run["signal"] == signal.SIGKILL or run["code"] == 0, run["log"]
        check_survived(tiny_dir, skills_dir, before, set(), run)
        killed += run["killed_by_test"]
    assert killed >= 1, "no run was actually killed"


def test_kill_9_between_the_two_renames_of_a_manager_save(worker, tiny_dir, skills_dir, tmp_path):
    """save_state moves the old manager aside, then the new one in: a crash in between must not lose it."""
    data = write_toy_data(tmp_path / "gamma.jsonl", "alpha")
    before = snapshot(skills_dir)
    run = worker.run(["skill", "add", "gamma", "--data", str(data), "--limit", "20", *common(tiny_dir, skills_dir)],
                     die_after_moving=skills_dir / MANAGER_DIR)
    # SIGKILL: it died inside the swap; exit 0: the save never moved the old manager away (no window)
    assert run["signal"] == signal.SIGKILL or run["code"] == 0, run["log"][-2000:]
    check_survived(tiny_dir, skills_dir, before, {"gamma"}, run)


def test_kill_9_between_the_two_renames_of_skill_add_replace(worker, tiny_dir, skills_dir, tmp_path):
    """install(replace=True) moves the old skill to the trash, then the new one in: a crash in between must not lose it."""
    data = write_toy_data(tmp_path / "alpha2.jsonl", "alpha")
    before = snapshot(skills_dir)
    run = worker.run(["skill", "add", "alpha", "--replace", "--data", str(data), "--limit", "20",
                      *common(tiny_dir, skills_dir)], die_after_moving=skills_dir / "alpha")
    assert run["signal"] == signal.SIGKILL or run["code"] == 0, run["log"][-2000:]
    names = SkillRegistry(skills_dir).names()
    assert "alpha" in names, (f"skill 'alpha' is gone after a crash during `skill add alpha --replace`; "
                              f"the folder holds {sorted(p.name for p in skills_dir.iterdir())}")
    bot = AdapterBot.from_pretrained(tiny_dir, skills_dir)
    assert bot.skills == before["names"] and bot.skipped == {} and bot.manager is not None
    assert tree_digest(skills_dir / "beta") == before["skills"]["beta"]


def test_sigterm_after_the_install_uninstalls_the_new_skill_and_keeps_the_manager(tiny_dir, skills_dir, tmp_path,
                                                                                   monkeypatch, capsys):
    # `timeout 60 adapterbot skill add ...` had left the skill installed and the manager without it
    import bot.skill_builder
    from bot.cli import main

    before = snapshot(skills_dir)
    data = write_toy_data(tmp_path / "gamma.jsonl", "alpha")
    monkeypatch.setattr(bot.skill_builder, "update_manager", lambda *a: os.kill(os.getpid(), signal.SIGTERM))
    previous = signal.getsignal(signal.SIGTERM)
    try:
        code = main(["skill", "add", "gamma", "--data", str(data), "--limit", "20", *common(tiny_dir, skills_dir)])
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert code == 130 and "nothing was installed half-way" in capsys.readouterr().err
    assert snapshot(skills_dir) == before  # no gamma folder, every other file byte-identical
