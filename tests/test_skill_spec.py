"""skills.spec: reading, checking and writing skill.yaml."""
from __future__ import annotations

import pytest
import yaml

from skills.spec import SPEC_FILE, DecodingSpec, KnowledgeSpec, SkillSpec, SpecError, validate_skill_name


def write_yaml(tmp_path, text: str, name: str = "demo"):
    folder = tmp_path / name
    folder.mkdir()
    path = folder / SPEC_FILE
    path.write_text(text, encoding="utf-8")
    return path


def load_error(path) -> str:
    with pytest.raises(ValueError) as info:
        SkillSpec.load(path)
    return str(info.value)


def test_save_and_load_round_trip(tmp_path):
    spec = SkillSpec(
        name="trivia",
        description="Answers trivia questions.",
        data=["data.jsonl", "chatterbot:trivia,science"],
        knowledge=KnowledgeSpec(mode="retrieval", file="facts.txt"),
        splits={"train": 80, "valid": 10, "test": 10},
        card={"test_ppl": 12.5},
        sympathy=True,
    )
    spec.adapter.kind, spec.adapter.settings = "lora", {"rank": 4, "targets": ["attn.c_attn"]}
    path = spec.save(tmp_path)
    assert path == tmp_path / SPEC_FILE
    assert SkillSpec.load(tmp_path) == spec
    assert SkillSpec.load(path) == spec
    assert path.read_text(encoding="utf-8").startswith("name: trivia\n")  # field order kept
    assert sorted(p.name for p in tmp_path.iterdir()) == [SPEC_FILE]  # no temp file left


def test_defaults_from_minimal_yaml(tmp_path):
    spec = SkillSpec.load(write_yaml(tmp_path, "name: demo\n"))
    assert spec.knowledge.mode == "none" and spec.adapter.epochs == 20 and spec.decoding.max_new_tokens == 40
    assert spec.data == [] and spec.splits == {} and spec.card == {} and spec.sympathy is False


def test_exponent_without_dot_is_a_number(tmp_path):
    # YAML 1.1 reads 1e-3 as a string; a learning rate written that way must still work.
    spec = SkillSpec.load(write_yaml(tmp_path, "name: demo\nadapter:\n  learning_rate: 1e-3\n"))
    assert spec.adapter.learning_rate == pytest.approx(0.001)


def test_bad_yaml_names_file_and_line(tmp_path):
    path = write_yaml(tmp_path, "name: demo\ndecoding:\n  top_p: 0.5\n   temperature: 1\n")
    message = load_error(path)
    assert str(path) in message and "line 4" in message


def test_not_utf8_names_file_and_line(tmp_path):
    path = write_yaml(tmp_path, "name: demo\n")
    path.write_bytes(b"name: demo\ndescription: caf\xe9\n")
    message = load_error(path)
    assert str(path) in message and "line 2" in message


def test_missing_name(tmp_path):
    path = write_yaml(tmp_path, "description: no name here\n")
    message = load_error(path)
    assert str(path) in message and "'name'" in message and "missing" in message


def test_empty_file(tmp_path):
    message = load_error(write_yaml(tmp_path, ""))
    assert "empty" in message and "'name'" in message


def test_top_level_must_be_a_mapping(tmp_path):
    message = load_error(write_yaml(tmp_path, "- name: demo\n"))
    assert "mapping" in message


def test_unknown_keys_are_named(tmp_path):
    path = write_yaml(tmp_path, "name: demo\ncolour: red\nsize: 3\n")
    message = load_error(path)
    assert str(path) in message and "'colour'" in message and "'size'" in message


def test_unknown_nested_key_is_dotted(tmp_path):
    message = load_error(write_yaml(tmp_path, "name: demo\ndecoding:\n  topp: 0.5\n"))
    assert "'decoding.topp'" in message and "top_p" in message  # says what is known


@pytest.mark.parametrize(
    "yaml_text, field",
    [
        ("decoding:\n  top_p: 1.5\n", "decoding.top_p"),
        ("decoding:\n  top_p: 0\n", "decoding.top_p"),
        ("decoding:\n  do_sample: maybe\n", "decoding.do_sample"),
        ("decoding:\n  max_new_tokens: 0\n", "decoding.max_new_tokens"),
        ("decoding:\n  reply_no_repeat_ngram_size: -1\n", "decoding.reply_no_repeat_ngram_size"),
        ("adapter:\n  epochs: true\n", "adapter.epochs"),  # a bool is not an int
        ("adapter:\n  settings: 64\n", "adapter.settings"),
        ("adapter:\n  kind: ''\n", "adapter.kind"),
        ("adapter:\n  learning_rate: -1\n", "adapter.learning_rate"),
        ("adapter:\n  learning_rate: .inf\n", "adapter.learning_rate"),
        ("knowledge:\n  mode: web\n", "knowledge.mode"),
        ("knowledge: facts.txt\n", "knowledge"),
        ("knowledge:\n  mode: retrieval\n", "knowledge.file"),
        ("knowledge:\n  mode: retrieval\n  file: ../other/facts.txt\n", "knowledge.file"),
        ("knowledge:\n  mode: static\n", "knowledge.text"),
        ("knowledge:\n  mode: none\n  text: I am a pirate.\n", "knowledge.text"),
        ("data: data.jsonl\n", "data"),
        ("data: ['']\n", "data[0]"),
        ("splits:\n  train: -1\n", "splits.train"),
        ("description: [a, b]\n", "description"),
        ("card: [1, 2]\n", "card"),
    ],
)
def test_bad_values_name_the_dotted_field(tmp_path, yaml_text, field):
    path = write_yaml(tmp_path, "name: demo\n" + yaml_text)
    with pytest.raises(SpecError) as info:
        SkillSpec.load(path)
    assert info.value.field == field
    assert str(path) in str(info.value) and f"'{field}'" in str(info.value)


def test_bad_value_message_says_what_is_allowed(tmp_path):
    message = load_error(write_yaml(tmp_path, "name: demo\ndecoding:\n  top_p: 1.5\n"))
    assert message.endswith("field 'decoding.top_p' must be a number in (0, 1], got 1.5")


def test_checks_also_apply_in_python():
    with pytest.raises(SpecError, match="'top_p'"):
        DecodingSpec(top_p=2.0)
    with pytest.raises(SpecError, match="'name'"):
        SkillSpec(name="Bad Name")


@pytest.mark.parametrize(
    "name", ["", "a/b", "..", "../x", "a\\b", "Tech", "has space", "-x", "_manager", "1abc", "a" * 49, "none", "auto", "bare", None, 3]
)
def test_bad_skill_names(name):
    with pytest.raises(ValueError, match="skill name"):
        validate_skill_name(name)


@pytest.mark.parametrize("name", ["a", "tech_support", "x-1", "a" * 48])
def test_good_skill_names(name):
    assert validate_skill_name(name) == name


def test_reserved_name_in_yaml(tmp_path):
    with pytest.raises(SpecError) as info:
        SkillSpec.load(write_yaml(tmp_path, "name: auto\n"))
    assert info.value.field == "name" and "auto" in str(info.value)


def test_generate_kwargs_greedy_has_no_sampling_settings():
    kwargs = DecodingSpec().generate_kwargs()
    assert kwargs["do_sample"] is False and "temperature" not in kwargs and "top_p" not in kwargs
    assert kwargs["max_new_tokens"] == 40 and kwargs["no_repeat_ngram_size"] == 3


def test_generate_kwargs_sampling():
    kwargs = DecodingSpec(do_sample=True, temperature=0.5, top_p=0.8).generate_kwargs()
    assert kwargs["do_sample"] is True and kwargs["temperature"] == 0.5 and kwargs["top_p"] == 0.8


def test_saved_yaml_is_plain(tmp_path):
    SkillSpec(name="persona", knowledge=KnowledgeSpec(mode="static", text="I love hiking.")).save(tmp_path)
    data = yaml.safe_load((tmp_path / SPEC_FILE).read_text(encoding="utf-8"))
    assert data["knowledge"] == {"mode": "static", "file": None, "text": "I love hiking.", "min_overlap": 0.0, "query_turns": 1,
                                 "numbers_must_agree": False, "unused_reply": None,
                                 "new_problem_reply": None, "first_steps_file": None, "after_steps_reply": None}


def test_after_steps_reply_needs_first_steps_and_is_named_in_the_error():
    with pytest.raises(SpecError, match="after_steps_reply"):
        KnowledgeSpec(mode="retrieval", file="knowledge.jsonl", after_steps_reply="Sorry that didn't help.")
    spec = KnowledgeSpec(mode="retrieval", file="k.jsonl", new_problem_reply="Which device?", first_steps_file="s.jsonl",
                         after_steps_reply="Sorry that didn't help.")
    assert spec.after_steps_reply == "Sorry that didn't help."


def test_numbers_must_agree_must_be_a_boolean_named_in_the_error():
    with pytest.raises(SpecError, match="numbers_must_agree"):
        KnowledgeSpec(mode="retrieval", file="knowledge.jsonl", numbers_must_agree="sometimes")


def test_a_skill_yaml_from_before_adapter_kinds_reads_as_a_bottleneck_adapter(tmp_path):
    (tmp_path / SPEC_FILE).write_text("name: old\nadapter:\n  bottleneck: 32\n  epochs: 3\n", encoding="utf-8")
    adapter = SkillSpec.load(tmp_path).adapter
    assert (adapter.kind, adapter.settings, adapter.epochs) == ("bottleneck", {"bottleneck": 32}, 3)


@pytest.mark.parametrize("turns", [0, -1])
def test_knowledge_query_turns_below_one_is_refused_by_name(turns):
    with pytest.raises(SpecError, match="query_turns"):
        KnowledgeSpec(mode="retrieval", file="knowledge.jsonl", query_turns=turns)


def test_candidates_are_a_sampling_setting_checked_by_name():
    assert "candidates" not in DecodingSpec(candidates=8).generate_kwargs()  # greedy: one reply, nothing to rank
    assert DecodingSpec(do_sample=True, candidates=8).generate_kwargs()["candidates"] == 8
    assert "candidates" not in DecodingSpec(do_sample=True).generate_kwargs()
    for bad in (0, 33):
        with pytest.raises(SpecError) as info:
            DecodingSpec(candidates=bad)
        assert info.value.field == "candidates" and "1 to 32" in str(info.value)


def test_unused_reply_is_for_retrieval_and_must_say_something():
    from skills.spec import KnowledgeSpec, SpecError

    assert KnowledgeSpec(mode="retrieval", file="k.txt", unused_reply="I don't know.").unused_reply == "I don't know."
    with pytest.raises(SpecError, match="unused_reply"):
        KnowledgeSpec(mode="none", unused_reply="I don't know.")
    with pytest.raises(SpecError, match="unused_reply"):
        KnowledgeSpec(mode="retrieval", file="k.txt", unused_reply="  ")
    with pytest.raises(SpecError, match="new_problem_reply"):
        KnowledgeSpec(mode="static", text="facts", new_problem_reply="Which device is it?")
    with pytest.raises(SpecError, match="new_problem_reply"):
        KnowledgeSpec(mode="retrieval", file="k.txt", new_problem_reply="")


@pytest.mark.parametrize("file, reply, says", [
    ("steps.jsonl", None, "only set with a new_problem_reply"),
    ("../other/steps.jsonl", "Which device is it?", "inside the skill's folder"),
    ("/etc/steps.jsonl", "Which device is it?", "inside the skill's folder"),
    ("k.txt", "Which device is it?", "not the knowledge file"),
])
def test_a_first_steps_file_is_refused_by_name_where_it_cannot_be_used(file, reply, says):
    with pytest.raises(SpecError, match="first_steps_file") as info:
        KnowledgeSpec(mode="retrieval", file="k.txt", new_problem_reply=reply, first_steps_file=file)
    assert says in str(info.value)
