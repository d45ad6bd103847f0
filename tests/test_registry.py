"""skills.registry: atomic install, replace, remove; skills package boundaries."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import skills
from skills.registry import ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, SkillRegistry, UnknownSkillError
from skills.spec import KnowledgeSpec, SkillSpec, SpecError


def fill(folder: Path, name: str, weights: bytes = b"weights", **spec_fields) -> None:
    SkillSpec(name=name, **spec_fields).save(folder)
    (folder / ADAPTER_CONFIG_FILE).write_text('{"bottleneck": 8}', encoding="utf-8")
    (folder / ADAPTER_WEIGHTS_FILE).write_bytes(weights)


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def registry(tmp_path):
    reg = SkillRegistry(tmp_path / "skills")
    with reg.install("other") as folder:
        fill(folder, "other", description="another skill")
    return reg


def test_install(registry):
    with registry.install("empathy") as folder:
        assert folder.parent == registry.root and folder.name.startswith(".tmp-empathy-")
        fill(folder, "empathy", description="Comforts.")
    assert registry.names() == ["empathy", "other"]
    assert (registry.path("empathy") / ADAPTER_WEIGHTS_FILE).read_bytes() == b"weights"
    assert registry.spec("empathy").description == "Comforts."
    assert "empathy" in registry and "ghost" not in registry
    assert sorted(p.name for p in registry.root.iterdir()) == ["empathy", "other"]


def test_refuses_duplicate_before_the_body_runs(registry):
    ran = []
    with pytest.raises(FileExistsError, match="--replace") as info:
        with registry.install("other"):
            ran.append(True)
    assert not ran and str(registry.root) in str(info.value)


def test_replace(registry):
    with registry.install("other", replace=True) as folder:
        fill(folder, "other", weights=b"new", description="new version")
    assert (registry.path("other") / ADAPTER_WEIGHTS_FILE).read_bytes() == b"new"
    assert registry.spec("other").description == "new version"
    assert sorted(p.name for p in registry.root.iterdir()) == ["other"]  # no trash left


@pytest.mark.parametrize("replace", [False, True])
def test_exception_inside_install_changes_nothing(registry, replace):
    name = "other" if replace else "fresh"
    before = snapshot(registry.root)
    with pytest.raises(RuntimeError, match="training crashed"):
        with registry.install(name, replace=replace) as folder:
            fill(folder, name, weights=b"half")
            raise RuntimeError("training crashed")
    assert snapshot(registry.root) == before
    assert sorted(p.name for p in registry.root.iterdir()) == ["other"]


def test_incomplete_folder_is_not_installed(registry):
    with pytest.raises(FileNotFoundError, match=ADAPTER_WEIGHTS_FILE):
        with registry.install("half") as folder:
            SkillSpec(name="half").save(folder)
    assert registry.names() == ["other"] and not registry.path("half").exists()


def test_spec_must_carry_the_installed_name(registry):
    with pytest.raises(SpecError, match="'name'"):
        with registry.install("alpha") as folder:
            fill(folder, "beta")
    assert registry.names() == ["other"]


def test_spec_name_differing_from_folder(registry):
    SkillSpec(name="renamed").save(registry.path("other"))
    with pytest.raises(SpecError) as info:
        registry.spec("other")
    assert info.value.field == "name" and "'other'" in str(info.value)


def test_names_ignores_everything_but_installed_skills(registry):
    root = registry.root
    for leftover in [".tmp-x-abc", ".trash-other-1234", "_manager", ".hidden"]:
        (root / leftover).mkdir()
        fill(root / leftover, "other")
    (root / "Upper").mkdir()
    (root / "no_adapter").mkdir()
    SkillSpec(name="no_adapter").save(root / "no_adapter")
    (root / "file").write_text("x", encoding="utf-8")
    assert registry.names() == ["other"]


def test_missing_root_has_no_skills(tmp_path):
    assert SkillRegistry(tmp_path / "absent").names() == []


@pytest.mark.parametrize("name", ["../x", "a/b", "..", "a\\b", "Upper", "none"])
def test_path_refuses_bad_names(registry, name):
    with pytest.raises(ValueError, match="skill name"):
        registry.path(name)


def test_path_refuses_a_folder_leading_outside(tmp_path, registry):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (registry.root / "linked").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ValueError, match="outside"):
        registry.path("linked")


def test_remove(registry):
    with registry.install("gone") as folder:
        fill(folder, "gone")
    before = snapshot(registry.root / "other")
    registry.remove("gone")
    assert registry.names() == ["other"] and snapshot(registry.root / "other") == before
    assert sorted(p.name for p in registry.root.iterdir()) == ["other"]


def test_remove_unknown_names_installed_skills(registry):
    with pytest.raises(UnknownSkillError, match="installed: other"):
        registry.remove("ghost")
    with pytest.raises(UnknownSkillError, match="ghost"):
        registry.spec("ghost")


def test_cleanup_stale(registry):
    for leftover in [".tmp-a-1", ".trash-b-2"]:
        (registry.root / leftover).mkdir()
        (registry.root / leftover / "f").write_text("x", encoding="utf-8")
    assert registry.cleanup_stale(min_age_s=3600) == []  # too fresh: may be an install in progress
    removed = registry.cleanup_stale()
    assert sorted(p.name for p in removed) == [".tmp-a-1", ".trash-b-2"]
    assert sorted(p.name for p in registry.root.iterdir()) == ["other"]


def test_describe_and_knowledge_path(registry):
    with registry.install("trivia") as folder:
        fill(folder, "trivia", description="Facts.", knowledge=KnowledgeSpec(mode="retrieval", file="facts.txt"), splits={"train": 8})
        (folder / "facts.txt").write_text("Paris is in France.\n", encoding="utf-8")
    info = registry.describe("trivia")
    assert info["description"] == "Facts." and info["splits"] == {"train": 8} and info["knowledge"] == "retrieval"
    assert info["path"] == str(registry.root / "trivia")
    assert registry.knowledge_path("trivia") == registry.root / "trivia" / "facts.txt"
    assert registry.knowledge_path("other") is None


def test_default_skills_dir(monkeypatch, tmp_path):
    monkeypatch.delenv(skills.SKILLS_DIR_ENV, raising=False)
    assert skills.default_skills_dir() == skills.BUNDLED_DIR
    assert isinstance(skills.BUNDLED_DIR, Path) and skills.BUNDLED_DIR.parts[-2:] == ("skills", "bundled")
    monkeypatch.setenv(skills.SKILLS_DIR_ENV, str(tmp_path))
    assert skills.default_skills_dir() == tmp_path


def test_skills_never_imports_bot_or_manager():
    for path in Path(skills.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            else:
                continue
            assert not any(m.split(".")[0] in ("bot", "manager", "ui") for m in modules), f"{path.name} imports {modules}"
