"""Malformed input at every entry point: a clear error naming the file and the problem, nothing
installed half-way, and the skills already installed left byte-identical.

Entry points: skill specs (``SkillSpec.load``, the registry, ``AdapterBot.from_pretrained``
on a folder holding a broken skill, which is skipped with a warning while the others load),
data and knowledge files for ``adapterbot skill add``, adapter files
(``AdaptedModel.load_adapter``) and the dialogue manager's files. Pickles disguised as
weights are refused without ever being unpickled: their ``__reduce__`` would create a marker
file, which must never appear.
"""
from __future__ import annotations

import hashlib
import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from bot import AdapterBot
from bot.adapter import AdaptedModel
from bot.adapter.config import CONFIG_NAME, WEIGHTS_NAME, AdapterConfig, AdapterMismatchError
from bot.chatbot import MANAGER_DIR
from bot.cli import main
from manager.config import ManagerConfig
from skills import SkillRegistry
from skills.readers import read_jsonl, read_source
from skills.spec import SkillSpec, SpecError
from tests.conftest import write_toy_data


def tree_digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` by relative path (folders and leftovers included)."""
    return {str(p.relative_to(folder)) + ("/" if p.is_dir() else ""): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else ""
            for p in sorted(folder.rglob("*"))}


@pytest.fixture
def skills_dir(tiny_skills_dir, tmp_path):
    root = tmp_path / "skills"
    shutil.copytree(tiny_skills_dir, root)
    return root


class Marker:
    """Unpickling this creates ``path``: proof that some code unpickled the file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def pickle_bytes(kind: str, marker: Path) -> bytes:
    if kind == "pickle":
        return pickle.dumps({"layers.0.down.weight": Marker(marker)}, protocol=4)
    if kind == "torch.save":
        import io

        buf = io.BytesIO()
        torch.save({"layers.0.down.weight": Marker(marker), "t": torch.zeros(2)}, buf)
        return buf.getvalue()
    raise AssertionError(kind)


# ---- skill specs ---------------------------------------------------------------------------------

GOOD_SPEC = "name: gamma\ndescription: a toy skill\n"
BAD_SPECS = {
    "bad-yaml": ("name: [gamma\ndescription: x\n", ["invalid YAML", "line"]),
    "tab-indent": ("name: gamma\ndecoding:\n\ttop_p: 0.5\n", ["invalid YAML"]),
    "empty": ("", ["empty", "'name'"]),
    "top-level-list": ("- name: gamma\n", ["<root>"]),
    "missing-name": ("description: no name\n", ["'name'", "missing"]),
    "unknown-key": ("name: gamma\ncolour: red\n", ["'colour'", "unknown"]),
    "unknown-nested-key": ("name: gamma\ndecoding:\n  top_k: 5\n", ["decoding.top_k", "unknown"]),
    "bad-value": ("name: gamma\ndecoding:\n  top_p: 1.5\n", ["decoding.top_p"]),
    "bad-type": ("name: gamma\nadapter:\n  epochs: many\n", ["adapter.epochs"]),
    "name-dotdot": ("name: ../alpha\n", ["'name'"]),
    "name-slash": ("name: a/b\n", ["'name'"]),
    "name-absolute": ("name: /tmp/x\n", ["'name'"]),
    "name-backslash": ("name: 'a\\\\b'\n", ["'name'"]),
    "name-dots": ("name: '..'\n", ["'name'"]),
    "knowledge-escape": ("name: gamma\nknowledge:\n  mode: retrieval\n  file: ../alpha/skill.yaml\n", ["knowledge.file"]),
    "python-tag": ("name: !!python/object/apply:pathlib.Path.touch [MARKER]\n", ["invalid YAML"]),
    "deep-nesting": ("name: gamma\ncard:\n  x: " + "[" * 2000 + "]" * 2000 + "\n", ["YAML"]),
}


def write_spec(folder: Path, text: str, marker: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "skill.yaml"
    path.write_text(text.replace("MARKER", str(marker)), encoding="utf-8")
    return path


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_bad_spec_is_a_value_error_naming_the_file_and_the_problem(tmp_path, case):
    text, expected = BAD_SPECS[case]
    marker = tmp_path / "MARKER-created"
    path = write_spec(tmp_path / "gamma", text, marker)
    with pytest.raises(ValueError) as info:
        SkillSpec.load(path)
    message = str(info.value)
    assert str(path) in message, message
    for part in expected:
        assert part in message, message
    assert not marker.exists()


def test_spec_in_latin1_names_the_file_and_line(tmp_path):
    path = tmp_path / "skill.yaml"
    path.write_bytes("name: gamma\ndescription: caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ValueError) as info:
        SkillSpec.load(path)
    assert str(path) in str(info.value) and "line 2" in str(info.value) and "UTF-8" in str(info.value)


def test_spec_naming_another_skill_than_its_folder_is_refused(skills_dir):
    path = skills_dir / "beta" / "skill.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("name: beta", "name: alpha"), encoding="utf-8")
    with pytest.raises(ValueError) as info:
        SkillRegistry(skills_dir).spec("beta")
    assert str(path) in str(info.value) and "'name'" in str(info.value)


def add_broken_skill(skills_dir: Path, name: str = "gamma") -> Path:
    """A copy of 'alpha' installed as ``name`` (every required file present), to be damaged by the test."""
    folder = skills_dir / name
    shutil.copytree(skills_dir / "alpha", folder)
    spec = SkillSpec.load(folder)
    spec.name = name
    spec.save(folder)
    return folder


def assert_bot_skips(tiny_dir, skills_dir: Path, broken: str, names_in_message: list[str]) -> AdapterBot:
    """The bot loads with the good skills and the manager, skips ``broken`` saying why, and writes nothing."""
    before = tree_digest(skills_dir)
    bot = AdapterBot.from_pretrained(tiny_dir, skills_dir)
    assert bot.skills == ["alpha", "beta"], bot.skipped
    assert broken in bot.skipped, f"{broken!r} not reported as skipped: {bot.skipped}"
    for part in names_in_message:
        assert part in bot.skipped[broken], bot.skipped[broken]
    assert bot.manager is not None
    assert bot.respond(["my printer will not print"], skill="alpha", max_new_tokens=3).skill == "alpha"
    assert tree_digest(skills_dir) == before, "loading the bot changed the skills folder"
    return bot


@pytest.mark.parametrize("case", ["bad-yaml", "missing-name", "unknown-key", "name-dotdot", "knowledge-escape",
                                  "python-tag", "deep-nesting", "empty"])
def test_bot_skips_a_skill_with_a_broken_spec_and_keeps_the_others(tiny_dir, skills_dir, tmp_path, case):
    marker = tmp_path / "MARKER-created"
    folder = add_broken_skill(skills_dir)
    path = write_spec(folder, BAD_SPECS[case][0], marker)
    assert_bot_skips(tiny_dir, skills_dir, "gamma", [str(path)])
    assert not marker.exists()


def test_bot_skips_a_skill_whose_spec_names_another_skill(tiny_dir, skills_dir):
    folder = add_broken_skill(skills_dir)
    path = write_spec(folder, "name: alpha\n", Path("unused"))
    assert_bot_skips(tiny_dir, skills_dir, "gamma", [str(path), "'name'"])


def test_bot_skips_a_skill_whose_knowledge_file_is_missing(tiny_dir, skills_dir):
    folder = add_broken_skill(skills_dir)
    write_spec(folder, "name: gamma\nknowledge:\n  mode: retrieval\n  file: facts.txt\n", Path("unused"))
    assert_bot_skips(tiny_dir, skills_dir, "gamma", [str(folder / "facts.txt")])


def test_folders_with_invalid_names_are_ignored(tiny_dir, skills_dir):
    for name in ("Gamma", "gamma one", ".hidden", "_private"):
        folder = skills_dir / name
        shutil.copytree(skills_dir / "alpha", folder)
    before = tree_digest(skills_dir)
    bot = AdapterBot.from_pretrained(tiny_dir, skills_dir)
    assert bot.skills == ["alpha", "beta"] and bot.skipped == {}
    assert tree_digest(skills_dir) == before


# ---- adapter files -------------------------------------------------------------------------------


@pytest.fixture
def adapter_dir(tiny_skills_dir, tmp_path) -> Path:
    folder = tmp_path / "adapter"
    folder.mkdir()
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        shutil.copyfile(tiny_skills_dir / "alpha" / name, folder / name)
    return folder


def assert_refused(model: AdaptedModel, folder: Path, names: list[str], error=ValueError) -> str:
    before = list(model.skills)
    with pytest.raises(error) as info:
        model.load_adapter("gamma", folder)
    message = str(info.value)
    for part in names:
        assert part in message, message
    assert model.skills == before, "a refused adapter was left loaded"
    assert sum(len(bank.adapters) for bank in model.banks.values()) == len(before), "a refused adapter left weights behind"
    return message


def test_good_adapter_loads(tiny, adapter_dir):
    model, _ = tiny
    model.load_adapter("gamma", adapter_dir)
    assert model.skills == ["gamma"]


@pytest.mark.parametrize("keep", [0, 7, 64, 0.5])
def test_truncated_adapter_weights_are_refused_naming_the_file(tiny, adapter_dir, keep):
    model, _ = tiny
    path = adapter_dir / WEIGHTS_NAME
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep) if isinstance(keep, float) else keep])
    assert_refused(model, adapter_dir, [str(path)])


@pytest.mark.parametrize("change", ["wrong-shape", "missing-tensor", "extra-tensor", "nan", "bottleneck-in-config"])
def test_adapter_weights_not_matching_the_config_are_refused(tiny, adapter_dir, change):
    model, _ = tiny
    path = adapter_dir / WEIGHTS_NAME
    state = load_file(str(path))
    if change == "wrong-shape":
        state["layers.0.down.weight"] = torch.zeros(9, state["layers.0.down.weight"].shape[1])
    elif change == "missing-tensor":
        del state["layers.1.up.bias"]
    elif change == "extra-tensor":
        state["layers.0.evil"] = torch.zeros(1)
    elif change == "nan":
        state["layers.1.up.weight"] = state["layers.1.up.weight"].clone()
        state["layers.1.up.weight"][0, 0] = float("nan")
    if change == "bottleneck-in-config":
        config = json.loads((adapter_dir / CONFIG_NAME).read_text(encoding="utf-8"))
        config["bottleneck"] += 1
        (adapter_dir / CONFIG_NAME).write_text(json.dumps(config), encoding="utf-8")
    else:
        save_file(state, str(path))
    assert_refused(model, adapter_dir, [str(path)])


def test_adapter_made_for_another_backbone_is_refused(tiny, tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    model, _ = tiny
    other = AdaptedModel(GPT2LMHeadModel(GPT2Config(vocab_size=300, n_positions=64, n_embd=48, n_layer=3, n_head=2)), "other-gpt2")
    other.add_adapter("gamma", other.new_config(bottleneck=8))
    other.save_adapter("gamma", tmp_path / "other")
    message = assert_refused(model, tmp_path / "other", ["other-gpt2", str(tmp_path / "other"), "retrain"],
                             error=AdapterMismatchError)
    assert model.signature.backbone in message


@pytest.mark.parametrize("config", [
    "{not json", "[]", '{"bottleneck": 8}', '{"bottleneck": "8", "backbone": "B", "hidden_size": 32, "num_layers": 2}',
    '{"bottleneck": 0, "backbone": "B", "hidden_size": 32, "num_layers": 2}',
    '{"bottleneck": 8, "backbone": "B", "hidden_size": 32, "num_layers": 2, "evil": 1}',
    '{"bottleneck": 4611686018427387904, "backbone": "B", "hidden_size": 32, "num_layers": 2}',
    '{"bottleneck": ' + "[" * 2000 + "]" * 2000 + "}",
], ids=["bad-json", "not-an-object", "missing-fields", "string-bottleneck", "zero-bottleneck", "unknown-field",
        "huge-bottleneck", "deep-nesting"])
def test_malformed_adapter_config_is_a_value_error_naming_the_file(tiny, adapter_dir, config):
    model, _ = tiny
    config = config.replace('"B"', json.dumps(model.signature.backbone))
    (adapter_dir / CONFIG_NAME).write_text(config, encoding="utf-8")
    assert_refused(model, adapter_dir, [str(adapter_dir)])


@pytest.mark.parametrize("kind", ["pickle", "torch.save"])
def test_pickle_disguised_as_adapter_is_refused_and_never_unpickled(tiny, adapter_dir, tmp_path, kind):
    model, _ = tiny
    marker = tmp_path / "unpickled.marker"
    (adapter_dir / WEIGHTS_NAME).write_bytes(pickle_bytes(kind, marker))
    pickle.loads(pickle_bytes("pickle", tmp_path / "self-check.marker"))  # the marker works when unpickled
    assert (tmp_path / "self-check.marker").exists()
    assert_refused(model, adapter_dir, [str(adapter_dir / WEIGHTS_NAME)])
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["pickle", "truncated", "huge-bottleneck", "other-backbone", "deep-nesting-config"])
def test_bot_skips_a_skill_with_a_damaged_adapter(tiny_dir, skills_dir, tmp_path, damage):
    marker = tmp_path / "unpickled.marker"
    folder = add_broken_skill(skills_dir)
    weights, config_path = folder / WEIGHTS_NAME, folder / CONFIG_NAME
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if damage == "pickle":
        weights.write_bytes(pickle_bytes("torch.save", marker))
    elif damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:100])
    elif damage == "huge-bottleneck":
        config_path.write_text(json.dumps({**config, "bottleneck": 2 ** 62}), encoding="utf-8")
    elif damage == "other-backbone":
        config_path.write_text(json.dumps({**config, "backbone": "microsoft/DialoGPT-small", "hidden_size": 768}), encoding="utf-8")
    elif damage == "deep-nesting-config":
        config_path.write_text('{"backbone": ' + "[" * 2000 + "]" * 2000 + "}", encoding="utf-8")
    assert_bot_skips(tiny_dir, skills_dir, "gamma", [str(folder)])
    assert not marker.exists()


# ---- manager files -------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["pickle", "truncated", "bad-json", "huge-hidden", "huge-feature-dim", "deep-nesting",
                                    "missing-weights"])
def test_bot_loads_without_a_damaged_manager(tiny_dir, skills_dir, tmp_path, damage, caplog):
    marker = tmp_path / "unpickled.marker"
    folder = skills_dir / MANAGER_DIR
    weights, config_path = folder / "manager_model.safetensors", folder / "manager_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if damage == "pickle":
        weights.write_bytes(pickle_bytes("torch.save", marker))
    elif damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:50])
    elif damage == "bad-json":
        config_path.write_text("{", encoding="utf-8")
    elif damage == "huge-hidden":
        config_path.write_text(json.dumps({**config, "hidden": 2 ** 62}), encoding="utf-8")
    elif damage == "huge-feature-dim":
        config_path.write_text(json.dumps({**config, "feature_dim": 2 ** 62}), encoding="utf-8")
    elif damage == "deep-nesting":
        config_path.write_text('{"classes": ' + "[" * 2000 + "]" * 2000 + "}", encoding="utf-8")
    elif damage == "missing-weights":
        weights.unlink()
    before = tree_digest(skills_dir)
    with caplog.at_level("WARNING"):
        bot = AdapterBot.from_pretrained(tiny_dir, skills_dir)
    assert bot.skills == ["alpha", "beta"] and bot.manager is None
    assert str(folder) in caplog.text, "the warning does not name the manager's files"
    r = bot.respond(["i feel sad today"], skill="auto", max_new_tokens=3, seed=0)
    assert (r.skill, r.confidence, r.scores) == (None, None, {})  # nothing routed: the bare backbone answered
    assert r.text == bot.respond(["i feel sad today"], skill=None, max_new_tokens=3, seed=0).text
    assert tree_digest(skills_dir) == before
    assert not marker.exists()


# ---- data files for `adapterbot skill add` --------------------------------------------------------

GOOD_ROW = json.dumps({"context": ["my printer will not print"], "response": "restart it"})


def _rows(n: int, start: int = 0) -> str:
    return "".join(json.dumps({"context": [f"question {i}"], "response": f"answer {i}"}) + "\n" for i in range(start, start + n))


BAD_DATA = {
    # name: (file name, bytes, parts the error must hold; "{path}" is the data file)
    "bad-json": ("d.jsonl", b'{"context": ["a"], "response": \n{not json}\n[1, 2\n', ["{path}", "line 1", "invalid JSON"]),
    "missing-columns": ("d.jsonl", ('{"prompt": "a", "reply": "b"}\n' * 5).encode(), ["{path}", "line 1", "'context'"]),
    "missing-response": ("d.jsonl", ('{"context": ["a"]}\n' * 5).encode(), ["{path}", "line 1", "'response'"]),
    "wrong-types": ("d.jsonl", ('{"context": [1, 2], "response": 5}\n' * 4).encode(), ["{path}", "line 1"]),
    "arrays-not-objects": ("d.jsonl", b'["a", "b"]\n["c", "d"]\n', ["{path}", "line 1", "JSON object"]),
    "empty": ("d.jsonl", b"", ["{path}", "empty"]),
    "blank-lines": ("d.jsonl", b"\n   \n\t\n", ["{path}", "empty"]),
    "latin1": ("d.jsonl", (_rows(2) + '{"context": ["caf\u00e9"], "response": "ok"}\n').encode("latin-1"), ["{path}", "line 3", "UTF-8"]),
    "utf16": ("d.jsonl", _rows(5).encode("utf-16"), ["{path}", "line 1", "UTF-8"]),
    "binary": ("d.jsonl", bytes(range(256)) * 4, ["{path}", "UTF-8"]),
    "too-few-examples": ("d.jsonl", _rows(2).encode(), ["{path}", "at least 3"]),
    "csv-missing-column": ("d.csv", b"context,reply\nhello,hi\nhow are you,fine\n", ["{path}", "line 1", "'response'"]),
    "csv-latin1": ("d.csv", "context,response\nhello,caf\u00e9\n".encode("latin-1"), ["{path}", "line 2", "UTF-8"]),
    "unsupported-extension": ("d.txt", _rows(5).encode(), ["{path}", ".jsonl or .csv"]),
}


def cli_add(tiny_dir, skills_dir, *args) -> int:
    return main(["skill", "add", "gamma", *args, "--backbone", str(tiny_dir), "--skills-dir", str(skills_dir), "--device", "cpu"])


def assert_nothing_installed(skills_dir: Path, before: dict) -> None:
    assert tree_digest(skills_dir) == before, "the skills folder changed"
    assert "gamma" not in SkillRegistry(skills_dir).names()


@pytest.mark.parametrize("case", sorted(BAD_DATA))
def test_skill_add_with_bad_data_exits_2_naming_the_file(tiny_dir, skills_dir, tmp_path, capsys, case):
    filename, content, expected = BAD_DATA[case]
    path = tmp_path / filename
    path.write_bytes(content)
    before = tree_digest(skills_dir)
    assert cli_add(tiny_dir, skills_dir, "--data", str(path)) == 2
    err = capsys.readouterr().err
    for part in expected:
        assert part.format(path=path) in err, err
    assert "Traceback" not in err
    assert_nothing_installed(skills_dir, before)


def test_skill_add_with_missing_data_file_exits_2_naming_it(tiny_dir, skills_dir, tmp_path, capsys):
    before = tree_digest(skills_dir)
    path = tmp_path / "nowhere.jsonl"
    assert cli_add(tiny_dir, skills_dir, "--data", str(path)) == 2
    assert str(path) in capsys.readouterr().err
    assert_nothing_installed(skills_dir, before)


@pytest.mark.parametrize("content", [b"caf\xe9 au lait\n", b'{"text": "ok"}\n{broken\n', b'{"title": "no text field"}\n'])
def test_skill_add_with_bad_knowledge_file_exits_2_naming_it(tiny_dir, skills_dir, tmp_path, capsys, content):
    data = write_toy_data(tmp_path / "d.jsonl", "alpha")
    knowledge = tmp_path / ("facts.txt" if content.startswith(b"caf") else "facts.jsonl")
    knowledge.write_bytes(content)
    before = tree_digest(skills_dir)
    assert cli_add(tiny_dir, skills_dir, "--data", str(data), "--knowledge", str(knowledge)) == 2
    err = capsys.readouterr().err
    assert str(knowledge) in err and "line" in err, err
    assert_nothing_installed(skills_dir, before)


@pytest.mark.parametrize("flags", [["--query-turns", "3"], ["--query-turns", "0", "--knowledge", "{knowledge}"]])
def test_skill_add_with_bad_query_turns_exits_2_naming_the_option(tiny_dir, skills_dir, tmp_path, capsys, flags):
    data = write_toy_data(tmp_path / "d.jsonl", "alpha")
    knowledge = tmp_path / "facts.txt"
    knowledge.write_text("a passage\n", encoding="utf-8")
    before = tree_digest(skills_dir)
    assert cli_add(tiny_dir, skills_dir, "--data", str(data), *[f.format(knowledge=knowledge) for f in flags]) == 2
    assert "--query-turns" in capsys.readouterr().err
    assert_nothing_installed(skills_dir, before)


@pytest.mark.parametrize("columns", ["5", "{not json", "[1, 2]", '"context"', '{"context": 5}'])
def test_skill_add_with_malformed_columns_exits_2_naming_the_option(tiny_dir, skills_dir, tmp_path, capsys, columns):
    data = write_toy_data(tmp_path / "d.jsonl", "alpha")
    before = tree_digest(skills_dir)
    assert cli_add(tiny_dir, skills_dir, "--data", str(data), "--columns", columns) == 2
    assert "--columns" in capsys.readouterr().err
    assert_nothing_installed(skills_dir, before)


def test_a_deeply_nested_json_line_is_skipped_like_any_bad_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("[" * 2000 + "\n" + _rows(3), encoding="utf-8")
    result = read_jsonl(path)
    assert len(result.examples) == 3 and result.skipped == 1 and result.skipped_lines == [1]


def test_a_file_of_only_deeply_nested_lines_names_the_file(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(("{\"context\": " + "[" * 2000 + "\n") * 2, encoding="utf-8")
    with pytest.raises(ValueError) as info:
        read_source(str(path), tmp_path)
    assert str(path) in str(info.value) and "line 1" in str(info.value)


# ---- fuzzing the file readers ---------------------------------------------------------------------

READERS = settings(max_examples=50, deadline=None, derandomize=True,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
SPEC_FIELDS = ["name", "description", "data", "knowledge", "adapter", "decoding", "splits", "card", "mode", "file",
               "text", "bottleneck", "learning_rate", "epochs", "top_p", "max_new_tokens", "temperature", "do_sample", "train"]
scalar = st.one_of(st.none(), st.booleans(), st.integers(-10, 10 ** 20), st.floats(allow_nan=True, allow_infinity=True),
                   st.text(max_size=8), st.sampled_from(["retrieval", "static", "none", "gamma", "1e-3", "facts.txt", "../x"]))
value = st.recursive(scalar, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.sampled_from(SPEC_FIELDS) | st.text(max_size=4), c, max_size=4),
                     max_leaves=12)


@READERS
@given(data=st.dictionaries(st.sampled_from(SPEC_FIELDS), value, max_size=6), name=st.sampled_from(["gamma", None]))
def test_any_yaml_mapping_gives_a_spec_or_an_error_naming_file_and_field(tmp_path, data, name):
    import yaml

    if name:
        data = {**data, "name": name}
    path = tmp_path / "skill.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    try:
        spec = SkillSpec.load(path)
    except SpecError as e:
        assert e.file == path and e.field and str(path) in str(e)
    else:
        assert spec.name == "gamma"


CONFIG_KEYS = ["bottleneck", "backbone", "hidden_size", "num_layers", "layer_norm_eps", "threshold", "hidden", "classes",
               "feature_dim", "feature_name", "epochs"]


@READERS
@given(data=st.one_of(value, st.dictionaries(st.sampled_from(CONFIG_KEYS) | st.text(max_size=3), value, max_size=6)))
def test_any_json_config_gives_a_config_or_an_error_naming_the_file(tmp_path, data):
    for loader, name in ((AdapterConfig.load, "adapter_config.json"), (ManagerConfig.load, "manager_config.json")):
        (tmp_path / name).write_text(json.dumps(data), encoding="utf-8")
        try:
            loader(tmp_path)
        except ValueError as e:
            assert str(tmp_path / name) in str(e)


row = st.dictionaries(st.sampled_from(["context", "response", "knowledge"]), value, max_size=3).map(json.dumps)


@READERS
@given(lines=st.lists(st.one_of(row, value.map(json.dumps), st.text(max_size=20)), max_size=6))
def test_any_jsonl_file_gives_examples_or_an_error_naming_the_file(tmp_path, lines):
    path = tmp_path / "d.jsonl"
    path.write_bytes("\n".join(lines).encode("utf-8", "surrogatepass"))
    try:
        result = read_jsonl(path)
    except ValueError as e:
        assert str(path) in str(e)
    else:
        assert result.examples and all(ex.context and ex.response for ex in result.examples)
