"""`adapterbot skill add/list/remove` end to end on the tiny backbone."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from bot import AdapterBot
from bot.cli import main
from tests.conftest import write_toy_data


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def skills_dir(tiny_skills_dir, tmp_path):
    import shutil

    root = tmp_path / "skills"
    shutil.copytree(tiny_skills_dir, root)
    return root


def cli(tiny_dir, skills_dir, *args) -> int:
    return main([*args[:2], "--backbone", str(tiny_dir), "--skills-dir", str(skills_dir), *args[2:]])


def test_jsonl_skill_added_through_cli_answers_and_leaves_others_untouched(tiny_dir, skills_dir, tmp_path, capsys):
    before = {name: tree_digest(skills_dir / name) for name in ("alpha", "beta")}
    data = write_toy_data(tmp_path / "gamma.jsonl", "alpha")
    assert cli(tiny_dir, skills_dir, "skill", "add", "gamma", "--data", str(data), "--description", "toy gamma", "--limit", "20") == 0
    out = capsys.readouterr().out
    assert "installed skill 'gamma'" in out and "test perplexity" in out and "dialogue manager updated" in out
    assert {name: tree_digest(skills_dir / name) for name in ("alpha", "beta")} == before
    bot = AdapterBot.from_pretrained(tiny_dir, skills_dir)
    assert bot.skills == ["alpha", "beta", "gamma"]
    assert "gamma" in bot.manager.skills
    r = bot.respond(["my printer will not print"], skill="gamma")
    assert r.skill == "gamma" and isinstance(r.text, str)

    assert cli(tiny_dir, skills_dir, "skill", "list") == 0
    listing = capsys.readouterr().out
    assert "gamma: toy gamma" in listing and str(skills_dir / "gamma") in listing


def test_existing_name_is_refused_without_replace(tiny_dir, skills_dir, tmp_path, capsys):
    before = tree_digest(skills_dir)
    data = write_toy_data(tmp_path / "a.jsonl", "alpha")
    assert cli(tiny_dir, skills_dir, "skill", "add", "alpha", "--data", str(data)) == 2
    assert "already installed" in capsys.readouterr().err
    assert tree_digest(skills_dir) == before


@pytest.mark.parametrize("name", ["../evil", "a/b", "Alpha", "auto", ""])
def test_bad_names_are_refused_and_nothing_is_written(tiny_dir, skills_dir, tmp_path, name, capsys):
    before = tree_digest(skills_dir)
    data = write_toy_data(tmp_path / "a.jsonl", "alpha")
    assert cli(tiny_dir, skills_dir, "skill", "add", name, "--data", str(data)) == 2
    assert "skill name" in capsys.readouterr().err
    assert tree_digest(skills_dir) == before
    assert not (tmp_path / "evil").exists()


def test_remove_drops_the_skill_and_its_manager_class(tiny_dir, skills_dir, capsys):
    beta = tree_digest(skills_dir / "beta")
    assert cli(tiny_dir, skills_dir, "skill", "remove", "alpha") == 0
    assert not (skills_dir / "alpha").exists()
    assert tree_digest(skills_dir / "beta") == beta
    bot = AdapterBot.from_pretrained(tiny_dir, skills_dir)
    assert bot.skills == ["beta"] and bot.manager.classes == ["none", "beta"]
