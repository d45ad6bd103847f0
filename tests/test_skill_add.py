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


def test_training_flags_reach_the_skill_spec_and_bad_ones_fail_before_loading(tiny_dir, skills_dir, tmp_path, capsys):
    data = write_toy_data(tmp_path / "g.jsonl", "alpha")
    assert cli(tiny_dir, skills_dir, "skill", "add", "gamma", "--data", str(data), "--limit", "20",
               "--epochs", "1", "--bottleneck", "8", "--learning-rate", "0.01") == 0
    adapter = AdapterBot.from_pretrained(tiny_dir, skills_dir).specs["gamma"].adapter
    assert (adapter.epochs, adapter.bottleneck, adapter.learning_rate) == (1, 8, 0.01)
    before = tree_digest(skills_dir)
    assert cli(tiny_dir, skills_dir, "skill", "add", "delta", "--data", str(data), "--epochs", "0") == 2
    assert "'epochs' must be an integer >= 1, got 0" in capsys.readouterr().err
    assert tree_digest(skills_dir) == before


def test_skipped_rows_are_reported_with_their_line_and_problem(tiny_dir, skills_dir, tmp_path, capsys):
    data = write_toy_data(tmp_path / "g.jsonl", "alpha")
    lines = data.read_text(encoding="utf-8").splitlines()
    lines.insert(2, '{"context": ["hi"], "response": ')
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert cli(tiny_dir, skills_dir, "skill", "add", "gamma", "--data", str(data), "--limit", "20", "--epochs", "1") == 0
    assert "1 bad row(s) skipped (lines 3); line 3: invalid JSON" in capsys.readouterr().out


def test_unknown_skill_and_missing_folder_get_one_line_errors(tiny_dir, skills_dir, tmp_path, capsys):
    assert cli(tiny_dir, skills_dir, "skill", "remove", "nosuch") == 2
    err = capsys.readouterr().err
    assert err.startswith("adapterbot: error: no skill 'nosuch' installed") and "alpha, beta" in err
    assert cli(tiny_dir, tmp_path / "missing", "skill", "list") == 2
    assert "missing: no such skills folder" in capsys.readouterr().err


def test_chat_on_a_busy_port_says_which_flag_to_change(capsys):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["chat", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"port {port} on 127.0.0.1 is in use" in err and "pick a free one with --port" in err


def test_manager_threshold_must_be_a_probability(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["manager", "train", "--threshold", "1.5"])
    assert exit_info.value.code == 2
    assert "--threshold: must be a probability in [0, 1], got 1.5" in capsys.readouterr().err
