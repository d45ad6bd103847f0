"""skills.data and skills.readers: readers of every data source, deduplication, splits."""
from __future__ import annotations

import json
import random

import pytest

import skills.data as data
import skills.readers as readers
from skills.corpora import Conversation
from skills.data import Example, dedupe, split_examples, write_jsonl
from skills.readers import examples_from_conversations, examples_from_dataset, read_csv, read_jsonl, read_source


def jsonl(*rows) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


def test_jsonl_skips_bad_rows_and_counts_their_lines(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(
        jsonl(
            {"context": ["hi", "hello"], "response": "how are you?"},  # 1
            "{not json",  # 2
            "",  # 3 blank: ignored, not bad
            {"context": ["hi"]},  # 4 no response
            {"context": ["hi"], "response": 7},  # 5 wrong type
            {"context": ["hi"], "response": "   "},  # 6 empty response
            {"context": [], "response": "ok"},  # 7 empty context
            {"context": "a single turn", "response": "fine"},  # 8
            {"context": ["q"], "response": "a", "knowledge": "fact"},  # 9
        ),
        encoding="utf-8",
    )
    result = read_jsonl(path)
    assert result.skipped == 5 and result.skipped_lines == [2, 4, 5, 6, 7]
    assert result.examples == [
        Example(["hi", "hello"], "how are you?"),
        Example(["a single turn"], "fine"),
        Example(["q"], "a", "fact"),
    ]


def test_skipped_lines_shows_the_first_five(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(jsonl(*(["[1]"] * 7), {"context": "x", "response": "y"}), encoding="utf-8")
    result = read_jsonl(path)
    assert result.skipped == 7 and result.skipped_lines == [1, 2, 3, 4, 5]
    assert result.skipped_note() == "7 bad row(s) skipped: " + "; ".join(
        f"line {n}: expected a JSON object, got list" for n in range(1, 6)) + "; ..."


def test_every_shown_skipped_row_says_what_was_wrong_with_it(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(jsonl({"context": ["a"], "response": "b"}, {"context": ["hi"]}, "{broken", {"response": "x"}),
                    encoding="utf-8")
    note = read_jsonl(path).skipped_note()
    assert note.startswith("3 bad row(s) skipped: line 2: missing 'response'; line 3: invalid JSON")
    assert "; line 4: missing 'context'" in note and not note.endswith("...")


def test_all_rows_bad_raises_naming_file_lines_and_problem(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(jsonl({"context": ["hi"]}, "oops"), encoding="utf-8")
    with pytest.raises(ValueError) as info:
        read_jsonl(path)
    message = str(info.value)
    assert str(path) in message and "1, 2" in message and "'response'" in message


@pytest.mark.parametrize("text", ["", "\n\n  \n"])
def test_empty_jsonl_raises(tmp_path, text):
    path = tmp_path / "d.jsonl"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match="empty") as info:
        read_jsonl(path)
    assert str(path) in str(info.value)


def test_non_utf8_names_file_and_line(tmp_path):
    path = tmp_path / "d.jsonl"
    good = json.dumps({"context": "a", "response": "b"}).encode()
    path.write_bytes(good + b"\n" + good + b"\n" + b'{"context": "caf\xe9", "response": "x"}\n')
    with pytest.raises(ValueError) as info:
        read_jsonl(path)
    assert str(path) in str(info.value) and "line 3" in str(info.value)


def test_byte_order_mark_is_allowed_and_lines_still_count(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + jsonl({"context": "a", "response": "b"}).encode())
    assert read_jsonl(path).examples == [Example(["a"], "b")]
    path.write_bytes(b"\xef\xbb\xbf" + jsonl({"context": "a", "response": "b"}).encode() + b"\xff\n")
    with pytest.raises(ValueError, match="line 2: byte 0xff"):
        read_jsonl(path)


def test_file_over_size_limit_is_refused(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(jsonl({"context": "a", "response": "b"}), encoding="utf-8")
    with pytest.raises(ValueError, match="over the size limit"):
        read_jsonl(path, max_bytes=10)


def test_write_jsonl_round_trip_keeps_unusual_characters(tmp_path):
    examples = [Example(["line\u2028separator", "é"], "ok\u2029fine"), Example(["x"], "y", "k")]
    path = tmp_path / "out.jsonl"
    write_jsonl(examples, path)
    assert read_jsonl(path).examples == examples
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_csv_reader(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text(
        "id,context,response,knowledge\n"
        '1,hi || how are you?,fine thanks,\n'
        '2,"[""one"", ""two""]",three,a fact\n'
        "3,hello,,\n"
        "4,[laughs] hi,ha,\n",
        encoding="utf-8",
    )
    result = read_csv(path)
    assert result.examples == [
        Example(["hi", "how are you?"], "fine thanks"),
        Example(["one", "two"], "three", "a fact"),
        Example(["[laughs] hi"], "ha"),
    ]
    assert result.skipped == 1 and result.skipped_lines == [4]


def test_csv_without_response_column(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("context,answer\nhi,there\n", encoding="utf-8")
    with pytest.raises(ValueError, match="'response'") as info:
        read_csv(path)
    assert str(path) in str(info.value) and """--columns '{"context": "context", "response": "answer"}'""" in str(info.value)


def test_column_mapping(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("prompt,answer\nhi,there\n", encoding="utf-8")
    result = read_source("d.csv", tmp_path, columns={"context": "prompt", "response": "answer"})
    assert result.examples == [Example(["hi"], "there")]
    with pytest.raises(ValueError, match="unknown column mapping"):
        read_csv(path, columns={"prompt": "context"})


def test_dataset_rows_to_examples():
    from datasets import Dataset

    ds = Dataset.from_dict(
        {
            "history": [["hi", "hello"], ["q"], ["z"]],
            "target": ["how are you", None, "ok"],
            "passage": [None, None, "a passage"],
        }
    )
    result = examples_from_dataset(ds, "hf:demo:train", {"context": "history", "response": "target", "knowledge": "passage"})
    assert result.examples == [Example(["hi", "hello"], "how are you"), Example(["z"], "ok", "a passage")]
    assert result.skipped == 1 and result.skipped_lines == [2]


def test_dataset_string_context_is_one_turn():
    from datasets import Dataset

    ds = Dataset.from_dict({"context": ["a || b"], "response": ["c"]})
    assert examples_from_dataset(ds, "hf:demo").examples == [Example(["a || b"], "c")]


def test_dataset_missing_column_names_the_columns_it_has():
    from datasets import Dataset

    ds = Dataset.from_dict({"utterance": ["a"], "reply": ["b"]})
    with pytest.raises(ValueError, match="utterance") as info:
        examples_from_dataset(ds, "hf:demo")
    assert "'context'" in str(info.value)


@pytest.mark.parametrize(
    "source, expected", [("hf:org/name", ("org/name", "train")), ("hf:org/name:validation", ("org/name", "validation"))]
)
def test_hf_source_parsing(monkeypatch, tmp_path, source, expected):
    calls = []

    def fake_read_hf(name, split, columns):
        calls.append((name, split))
        return data.ReadResult([Example(["a"], "b"), Example(["a"], "b")], 0, [], f"hf:{name}:{split}")

    monkeypatch.setattr(readers, "read_hf", fake_read_hf)
    result = read_source(source, tmp_path)
    assert calls == [expected] and len(result.examples) == 1 and result.duplicates == 1


def test_chatterbot_tech_support(tmp_path):
    result = read_source("chatterbot:tech_support", tmp_path)
    assert len(result.examples) >= 10
    assert Example(["My system is overheating."], "Ensure air vents aren't blocked and clean any dust.") in result.examples
    assert all(ex.context and ex.response for ex in result.examples)


def test_chatterbot_unknown_category(tmp_path):
    with pytest.raises(ValueError, match="no category"):
        read_source("chatterbot:nope", tmp_path)


def test_chitchat_context_is_capped(tmp_path):
    result = read_source("chitchat:test", tmp_path)
    assert result.examples and max(len(ex.context) for ex in result.examples) == 4
    with pytest.raises(ValueError, match="no split"):
        read_source("chitchat:bogus", tmp_path)


def test_conversations_to_examples():
    conv = Conversation("c", ["a", "b", "c", "d"])
    assert examples_from_conversations([conv]) == [Example(["a"], "b"), Example(["a", "b"], "c"), Example(["a", "b", "c"], "d")]
    assert examples_from_conversations([conv], max_context=1)[-1] == Example(["c"], "d")


def test_duplicates_are_removed(tmp_path):
    (tmp_path / "d.jsonl").write_text(
        jsonl({"context": ["a"], "response": "b"}, {"context": "a", "response": "b", "knowledge": "k"}, {"context": ["a"], "response": "c"}),
        encoding="utf-8",
    )
    result = read_source("d.jsonl", tmp_path)
    assert [ex.response for ex in result.examples] == ["b", "c"] and result.duplicates == 1
    assert dedupe([Example(["x"], "y")] * 3) == ([Example(["x"], "y")], 2)


def test_unsupported_and_missing_sources(tmp_path):
    with pytest.raises(ValueError, match="not supported"):
        read_source("data.txt", tmp_path)
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        read_source("missing.jsonl", tmp_path)
    with pytest.raises(ValueError, match="hf:NAME"):
        read_source("hf:", tmp_path)


def make_examples(n: int, offset: int = 0) -> list[Example]:
    return [Example([f"question {i}"], f"answer {i}") for i in range(offset, offset + n)]


def as_keys(splits):
    return {name: [ex.key() for ex in exs] for name, exs in splits.items()}


def test_split_is_deterministic_and_order_free():
    examples = make_examples(200)
    first = split_examples(examples)
    assert as_keys(first) == as_keys(split_examples(list(examples)))
    shuffled = examples[:]
    random.Random(1).shuffle(shuffled)
    assert {k: sorted(v) for k, v in as_keys(split_examples(shuffled)).items()} == {k: sorted(v) for k, v in as_keys(first).items()}


def test_split_partitions_with_sensible_sizes():
    examples = make_examples(2000)
    splits = split_examples(examples)
    keys = [k for exs in as_keys(splits).values() for k in exs]
    assert sorted(keys) == sorted(ex.key() for ex in examples)
    assert 120 <= len(splits["test"]) <= 280 and 120 <= len(splits["valid"]) <= 280


def test_adding_examples_moves_no_old_one():
    small, large = split_examples(make_examples(1000)), split_examples(make_examples(2000))
    where = {k: name for name, keys in as_keys(large).items() for k in keys}
    assert all(where[k] == name for name, keys in as_keys(small).items() for k in keys)


@pytest.mark.parametrize("n", [3, 4, 5, 10, 20])
def test_tiny_datasets_fill_every_split(n):
    splits = split_examples(make_examples(n))
    assert all(len(exs) >= 1 for exs in splits.values())
    assert sum(len(exs) for exs in splits.values()) == n


def test_a_test_split_of_few_groups_gets_at_most_twice_its_share_in_whole_groups():
    # a new user's 33 plant-care exchanges in 15 groups split 20 / 1 / 12: the hash put 5 groups under the test share
    from skills.data import _unit_interval

    low = [g for g in (f"topic{i}" for i in range(400)) if _unit_interval(Example(["x"], "y", group=g)) < 0.1][:5]
    high = [g for g in (f"topic{i}" for i in range(400)) if _unit_interval(Example(["x"], "y", group=g)) > 0.2][:10]
    examples = [Example([f"{g} question {j}"], f"answer {j}", group=g) for g in low + high for j in range(2 + len(g) % 2)]
    splits = split_examples(examples)
    n = len(examples)
    assert 1 <= len(splits["test"]) <= 2 * 0.1 * n + 1 and len(splits["valid"]) >= 0.1 * n and splits["train"]
    where = {}
    for name, exs in splits.items():
        for ex in exs:
            assert where.setdefault(ex.group, name) == name, f"group {ex.group} straddles splits"
    assert sum(map(len, splits.values())) == n and split_examples(examples) == splits
    for groups in (low[:1], low[:2]):  # too few groups for three splits: each still gets a row
        few = [Example([f"{g} question {j}"], f"answer {j}", group=g) for g in groups for j in range(6)]
        assert all(split_examples(few).values())


def test_a_valid_split_of_few_groups_gets_at_most_twice_its_share_in_whole_groups():
    # a new user's 38 plant-care exchanges in 14 groups split 23 / 12 / 3: the hash put 4 groups in the valid range
    from skills.data import _unit_interval

    def groups(low: float, high: float, count: int) -> list[str]:
        names = (f"topic{i}" for i in range(2000))
        return [g for g in names if low <= _unit_interval(Example(["x"], "y", group=g)) < high][:count]

    chosen = groups(0.0, 0.1, 1) + groups(0.1, 0.2, 4) + groups(0.2, 1.0, 9)
    examples = [Example([f"{g} question {j}"], f"answer {j}", group=g) for g in chosen for j in range(3)]
    splits = split_examples(examples)
    n = len(examples)
    assert len(splits["valid"]) <= 2 * 0.1 * n + 3 and len(splits["test"]) >= 0.1 * n and splits["train"]
    where = {}
    for name, exs in splits.items():
        for ex in exs:
            assert where.setdefault(ex.group, name) == name, f"group {ex.group} straddles splits"
    assert sum(map(len, splits.values())) == n and split_examples(examples) == splits


@pytest.mark.parametrize("n", [0, 1, 2])
def test_too_few_examples(n):
    with pytest.raises(ValueError, match="at least 3 examples"):
        split_examples(make_examples(n))


def test_bad_fractions():
    with pytest.raises(ValueError, match="valid_frac"):
        split_examples(make_examples(10), valid_frac=0.6, test_frac=0.5)


def test_chatterbot_entries_that_are_not_lists_are_not_split_into_characters():
    from skills.corpora import chatterbot_conversations

    for conv in chatterbot_conversations(["trivia"]):
        assert all(len(turn) > 1 for turn in conv.turns[:1]), conv
    assert not any(c.turns[:3] == ["I", "n", "a"] for c in chatterbot_conversations(["trivia"]))


def test_the_readers_are_still_importable_from_skills_data():
    from skills.data import read_csv as old_csv, read_source as old_source

    assert old_source is read_source and old_csv is read_csv
    with pytest.raises(AttributeError):
        data.no_such_reader  # noqa: B018
