"""Security: local-only server by default, no code run from files, no escape from the skills folder.

- ``adapterbot chat`` binds 127.0.0.1 with no share link unless told otherwise;
- no pickle anywhere in the source: no ``torch.load`` (unless ``weights_only=True``), no
  ``pickle``/``dill``/``joblib``/``shelve``/``marshal``, no ``numpy.load(allow_pickle=True)``;
  YAML is read with ``yaml.safe_load`` only; ``trust_remote_code`` is never hard-wired on;
- ``trust_remote_code`` is off unless the user passes ``--trust-remote-code``;
- skill names cannot reach outside the skills folder (``..``, absolute paths, separators,
  symlinked skill folders);
- data and knowledge readers refuse files over their size limit with a clear error.
"""
from __future__ import annotations

import ast
import inspect
import json
import shutil
import sys
import types
from pathlib import Path

import pytest

from bot import AdapterBot
from bot.backbone import load_backbone
from bot.cli import build_parser, main
from skills import SkillRegistry
from skills.files import read_text
from skills.readers import read_csv, read_jsonl, read_source
from skills.knowledge import Retriever, read_passages
from skills.spec import KnowledgeSpec, SkillSpec, SpecError

ROOT = Path(__file__).resolve().parent.parent
SOURCE_DIRS = ("bot", "skills", "manager", "ui")
PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}
SAFE_YAML_LOADERS = {"SafeLoader", "CSafeLoader", "BaseLoader", "CBaseLoader"}


# ---- static scan of the source tree ------------------------------------------------------------


def _dotted(node: ast.AST) -> str:
    """``a.b.c`` for a Name/Attribute chain, else ''."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def _kw(call: ast.Call, name: str):
    for k in call.keywords:
        if k.arg == name:
            return k.value
    return None


def _is_const(node, value) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def unsafe_uses(source: str, filename: str = "<src>") -> list[str]:
    """Every line of ``source`` that can run code from a file: pickle loading, unsafe YAML, remote code."""
    found = []
    tree = ast.parse(source, filename)
    for node in ast.walk(tree):
        where = f"{filename}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            for n in names:
                if n.split(".")[0] in PICKLE_MODULES:
                    found.append(f"{where}: imports {n}")
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        last = name.rsplit(".", 1)[-1]
        if name.split(".")[0] == "torch" and last == "load":  # torch.load, torch.jit.load
            if not _is_const(_kw(node, "weights_only"), True):
                found.append(f"{where}: {name}() without weights_only=True")
        if name.split(".")[0] == "yaml" and last in ("load", "load_all", "unsafe_load", "unsafe_load_all", "full_load", "full_load_all"):
            loader = _kw(node, "Loader") or (node.args[1] if len(node.args) > 1 else None)
            if last.startswith(("unsafe", "full")) or loader is None or _dotted(loader).rsplit(".", 1)[-1] not in SAFE_YAML_LOADERS:
                found.append(f"{where}: {name}() is not a safe YAML load")
        if last in ("load", "loads") and name.split(".")[0] in ("np", "numpy") and _is_const(_kw(node, "allow_pickle"), True):
            found.append(f"{where}: {name}(allow_pickle=True)")
        if last in ("read_pickle", "Unpickler"):
            found.append(f"{where}: {name}()")
        if _is_const(_kw(node, "trust_remote_code"), True):
            found.append(f"{where}: trust_remote_code=True hard-wired")
    return found


def source_files() -> list[Path]:
    files = [p for d in SOURCE_DIRS for p in sorted((ROOT / d).rglob("*.py")) if "__pycache__" not in p.parts]
    assert len(files) > 20, f"found only {len(files)} source files under {SOURCE_DIRS}"
    return files


def test_the_scanner_catches_each_unsafe_pattern():
    bad = """
import pickle
from dill import loads
import torch, yaml, numpy as np
torch.load("x.bin")
torch.load("x.bin", weights_only=False)
yaml.load(text)
yaml.load(text, Loader=yaml.FullLoader)
yaml.unsafe_load(text)
yaml.full_load(text)
np.load("a.npy", allow_pickle=True)
AutoModel.from_pretrained("x", trust_remote_code=True)
"""
    assert len(unsafe_uses(bad)) == 10, unsafe_uses(bad)
    good = """
import torch, yaml
torch.load("x.pt", weights_only=True)
yaml.safe_load(text)
yaml.load(text, Loader=yaml.SafeLoader)
AutoModel.from_pretrained("x", trust_remote_code=trust_remote_code)
"""
    assert unsafe_uses(good) == []


def test_source_tree_never_unpickles_or_loads_unsafe_yaml_or_forces_remote_code():
    found = [hit for p in source_files() for hit in unsafe_uses(p.read_text(encoding="utf-8"), str(p.relative_to(ROOT)))]
    assert found == [], "\n".join(found)


def test_yaml_is_read_with_safe_load_only():
    uses = [f"{p.relative_to(ROOT)}:{n}" for p in source_files()
            for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
            if "yaml." in line and "load" in line and "safe_load" not in line and not line.lstrip().startswith("#")]
    assert uses == [], uses
    assert "yaml.safe_load(" in (ROOT / "skills" / "spec.py").read_text(encoding="utf-8")


# ---- defaults: local server, no remote code ----------------------------------------------------


def test_chat_binds_localhost_without_share_link_by_default():
    args = build_parser().parse_args(["chat"])
    assert args.host == "127.0.0.1" and args.share is False
    assert args.trust_remote_code is False
    args = build_parser().parse_args(["chat", "--host", "0.0.0.0", "--share"])
    assert args.host == "0.0.0.0" and args.share is True


def test_chat_command_hands_the_defaults_to_the_server(monkeypatch):
    """``adapterbot chat`` with no flags serves on 127.0.0.1 with share=False."""
    seen = {}
    fake = types.ModuleType("ui.app")
    fake.launch = lambda bot, **kwargs: seen.update(kwargs)
    monkeypatch.setitem(sys.modules, "ui.app", fake)
    if "ui" not in sys.modules:
        monkeypatch.setitem(sys.modules, "ui", types.ModuleType("ui"))
    monkeypatch.setattr("bot.cli._load_bot", lambda args: seen.update(trust_remote_code=args.trust_remote_code))
    assert main(["chat"]) == 0
    assert seen["host"] == "127.0.0.1" and seen["share"] is False and seen["trust_remote_code"] is False


def test_ui_launch_defaults_are_local():
    """Both ways in, ``launch()`` and ``adapterbot chat``, serve this machine only and open no share link."""
    chat = build_parser().parse_args(["chat"])
    assert (chat.host, chat.share) == ("127.0.0.1", False)
    tree = ast.parse((ROOT / "ui" / "app.py").read_text(encoding="utf-8"))  # read, not imported: gradio is slow to import
    launch = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "launch"), None)
    assert launch is not None, "ui/app.py has no launch()"
    positional = launch.args.args[len(launch.args.args) - len(launch.args.defaults):]
    defaults = {a.arg: d for a, d in zip(positional, launch.args.defaults)}
    defaults |= {a.arg: d for a, d in zip(launch.args.kwonlyargs, launch.args.kw_defaults) if d is not None}
    assert {"host", "share"} <= set(defaults), "launch() must give host and share defaults"
    assert isinstance(defaults["host"], ast.Constant) and defaults["host"].value == "127.0.0.1"
    assert isinstance(defaults["share"], ast.Constant) and defaults["share"].value is False


@pytest.mark.parametrize("argv", [["chat"], ["skill", "list"], ["skill", "add", "x", "--data", "d.jsonl"], ["skill", "remove", "x"],
                                  ["manager", "train"], ["eval", "--out", "o"], ["bench", "--out", "o"]])
def test_trust_remote_code_is_off_unless_the_flag_is_given(argv):
    parser = build_parser()
    assert parser.parse_args(argv).trust_remote_code is False
    assert parser.parse_args(argv + ["--trust-remote-code"]).trust_remote_code is True


def test_loaders_default_to_no_remote_code():
    assert inspect.signature(load_backbone).parameters["trust_remote_code"].default is False
    assert inspect.signature(AdapterBot.from_pretrained).parameters["trust_remote_code"].default is False


def test_load_backbone_passes_the_flag_through(tiny_dir, monkeypatch):
    """What transformers is given is the caller's flag (False by default), for tokenizer and model."""
    import transformers

    seen = []
    real_tok, real_model = transformers.AutoTokenizer.from_pretrained, transformers.AutoModelForCausalLM.from_pretrained
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained",
                        lambda *a, **k: (seen.append(("tokenizer", k.get("trust_remote_code"))), real_tok(*a, **k))[1])
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained",
                        lambda *a, **k: (seen.append(("model", k.get("trust_remote_code"))), real_model(*a, **k))[1])
    load_backbone(tiny_dir)
    assert seen == [("tokenizer", False), ("model", False)]


# ---- skill names cannot escape the skills folder -----------------------------------------------


@pytest.fixture
def registry(tmp_path):
    root = tmp_path / "skills"
    root.mkdir()
    return SkillRegistry(root)


ESCAPES = ["../x", "..", ".", "/abs", "/etc/passwd", "a/../../b", "a/b", "a\\b", "..\\x", "~", "~/x", "x\x00", "",
           " x", "x ", "x\n", "%2e%2e", "\u2024\u2024", "ａｂｃ", "_manager", ".tmp-x", ".trash-x", "A", "x" * 49, "none"]


@pytest.mark.parametrize("name", ESCAPES)
def test_registry_path_refuses_names_that_could_leave_the_folder(registry, name):
    with pytest.raises(ValueError) as info:
        registry.path(name)
    assert "skill name" in str(info.value)
    assert name not in registry
    with pytest.raises(ValueError):
        registry.remove(name)
    with pytest.raises(ValueError):
        with registry.install(name):
            pass
    assert sorted(p.name for p in registry.root.iterdir()) == []


@pytest.mark.parametrize("name", ["../x", "/abs", "a/../../b", "a/b", "..", "x\x00"])
def test_spec_name_cannot_hold_a_path(name):
    with pytest.raises(SpecError) as info:
        SkillSpec(name=name)
    assert info.value.field == "name"


@pytest.mark.parametrize("file", ["../alpha/skill.yaml", "/etc/passwd", "a/../../b.txt", "..\\b.txt", "", None])
def test_knowledge_file_cannot_leave_the_skill_folder(file):
    with pytest.raises(SpecError) as info:
        KnowledgeSpec(mode="retrieval", file=file)
    assert info.value.field == "file"


def _outside_skill(tmp_path: Path, tiny_skills_dir: Path) -> Path:
    """A complete skill folder outside the skills folder, and a canary file in it."""
    outside = tmp_path / "outside" / "evil"
    shutil.copytree(tiny_skills_dir / "alpha", outside)
    spec = SkillSpec.load(outside)
    spec.name = "evil"
    spec.save(outside)
    (outside / "canary.txt").write_text("do not delete", encoding="utf-8")
    return outside


def _digest(folder: Path) -> dict[str, str]:
    import hashlib

    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_symlinked_skill_folder_is_neither_listed_nor_removed(registry, tmp_path, tiny_skills_dir):
    outside = _outside_skill(tmp_path, tiny_skills_dir)
    before = _digest(outside)
    (registry.root / "evil").symlink_to(outside, target_is_directory=True)
    assert registry.names() == [] and "evil" not in registry
    with pytest.raises(ValueError) as info:
        registry.path("evil")
    assert "outside" in str(info.value)
    with pytest.raises(ValueError):
        registry.remove("evil")
    with pytest.raises(ValueError):
        with registry.install("evil", replace=True) as folder:
            (folder / "x").write_text("x")
    assert registry.cleanup_stale() == []
    assert _digest(outside) == before and (registry.root / "evil").is_symlink()


def test_symlinked_skill_folder_is_not_loaded_by_the_bot(tiny_dir, tiny_skills_dir, tmp_path):
    root = tmp_path / "skills"
    shutil.copytree(tiny_skills_dir, root)
    outside = _outside_skill(tmp_path, tiny_skills_dir)
    (root / "evil").symlink_to(outside, target_is_directory=True)
    before = _digest(outside)
    bot = AdapterBot.from_pretrained(tiny_dir, root)
    assert bot.skills == ["alpha", "beta"] and "evil" not in bot.skipped
    assert main(["skill", "remove", "evil", "--backbone", str(tiny_dir), "--skills-dir", str(root)]) == 2
    assert _digest(outside) == before


def test_symlinked_stale_folder_is_not_followed_by_cleanup(registry, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "canary.txt").write_text("keep", encoding="utf-8")
    (registry.root / ".tmp-x-1").symlink_to(outside, target_is_directory=True)
    (registry.root / ".trash-x-1").symlink_to(outside, target_is_directory=True)
    registry.cleanup_stale()
    assert (outside / "canary.txt").read_text(encoding="utf-8") == "keep"


# ---- size caps on uploaded files ---------------------------------------------------------------


def _rows(n: int) -> str:
    return "".join(json.dumps({"context": [f"hello {i}"], "response": f"hi {i}"}) + "\n" for i in range(n))


@pytest.mark.parametrize("reader", ["jsonl", "csv", "source", "text", "passages", "retriever"])
def test_readers_refuse_files_over_max_bytes(tmp_path, reader):
    if reader == "csv":
        path = tmp_path / "big.csv"
        path.write_text("context,response\n" + "".join(f"hello {i},hi {i}\n" for i in range(200)), encoding="utf-8")
    elif reader in ("passages", "retriever"):
        path = tmp_path / "big.txt"
        path.write_text("".join(f"passage number {i}\n" for i in range(200)), encoding="utf-8")
    else:
        path = tmp_path / "big.jsonl"
        path.write_text(_rows(200), encoding="utf-8")
    size = path.stat().st_size
    limit = size // 2
    call = {
        "jsonl": lambda: read_jsonl(path, max_bytes=limit),
        "csv": lambda: read_csv(path, max_bytes=limit),
        "source": lambda: read_source(str(path), tmp_path, max_bytes=limit),
        "text": lambda: read_text(path, max_bytes=limit),
        "passages": lambda: read_passages(path, max_bytes=limit),
        "retriever": lambda: Retriever.from_file(path, max_bytes=limit),
    }[reader]
    with pytest.raises(ValueError) as info:
        call()
    message = str(info.value)
    assert str(path) in message and "size limit" in message
    # exactly at the limit is fine
    assert {"jsonl": lambda: read_jsonl(path, max_bytes=size), "csv": lambda: read_csv(path, max_bytes=size),
            "source": lambda: read_source(str(path), tmp_path, max_bytes=size), "text": lambda: read_text(path, max_bytes=size),
            "passages": lambda: read_passages(path, max_bytes=size),
            "retriever": lambda: Retriever.from_file(path, max_bytes=size)}[reader]()


def test_default_data_cap_is_finite():
    from skills import data

    assert 0 < data.MAX_BYTES <= 1024 ** 3
    assert inspect.signature(read_source).parameters["max_bytes"].default == data.MAX_BYTES
    assert inspect.signature(Retriever).parameters["max_bytes"].default == data.MAX_BYTES


def test_chat_upload_cap_has_a_finite_default():
    args = build_parser().parse_args(["chat"])
    assert 0 < args.max_upload_mb <= 1024
