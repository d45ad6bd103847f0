"""Pure metrics, the predictions-file reader and the report writer (no model code)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bot.evaluation.metrics import (
    corpus_bleu,
    distinct_n,
    normalize_answer,
    perplexity,
    rouge_l,
    text_metrics,
    unigram_f1,
)
from bot.evaluation.predictions import PredictionRow, read_predictions, score_predictions
from bot.evaluation.report import write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TEXT_KEYS = {"bleu", "f1", "rougeL", "distinct1", "distinct2", "length"}


# ----------------------------------------------------------------------------- metrics


def test_normalize_removes_case_punctuation_articles_and_extra_spaces():
    assert normalize_answer("  The Cat, sat on   a mat!  ") == "cat sat on mat"
    assert normalize_answer("An apple.") == "apple"
    # Articles only as whole words: "theatre" and "banana" keep their letters.
    assert normalize_answer("the theatre banana") == "theatre banana"


def test_unigram_f1_hand_computed():
    # normalised: "cat sat" vs "cat sat down": P = 2/2, R = 2/3, F1 = 0.8
    assert unigram_f1("The cat sat", "a cat sat down") == pytest.approx(0.8)
    # multiset overlap: pred "x x y" vs ref "x y y": common {x: 1, y: 1} = 2, P = R = 2/3
    assert unigram_f1("x x y", "x y y") == pytest.approx(2 / 3)
    # repeated tokens count: "x x" vs "x x y": common 2, P = 1, R = 2/3, F1 = 0.8
    assert unigram_f1("x x", "x x y") == pytest.approx(0.8)
    assert unigram_f1("hello there", "Hello, there!") == pytest.approx(1.0)
    assert unigram_f1("abc", "xyz") == 0.0
    assert unigram_f1("", "cat") == 0.0
    assert unigram_f1("the", "cat") == 0.0  # empty after normalisation


def test_distinct_n_hand_computed():
    corpus = ["a b a", "A c"]
    # unigrams: a b a a c -> 3 distinct / 5 total
    assert distinct_n(corpus, 1) == pytest.approx(3 / 5)
    # bigrams (not across texts): (a,b) (b,a) (a,c) -> 3 / 3
    assert distinct_n(corpus, 2) == pytest.approx(1.0)
    assert distinct_n(["x x x x"], 2) == pytest.approx(1 / 3)
    assert distinct_n(["one"], 2) == 0.0
    assert distinct_n([], 1) == 0.0


def test_perplexity():
    assert perplexity(0.0, 10) == pytest.approx(1.0)
    assert perplexity(10 * math.log(20.0), 10) == pytest.approx(20.0)
    with pytest.raises(ValueError, match="n_tokens"):
        perplexity(1.0, 0)


def test_bleu_identical_is_100_and_disjoint_near_0():
    refs = ["the cat sat on the mat today", "i would like a cup of tea please"]
    assert corpus_bleu(refs, refs) == pytest.approx(100.0)
    disjoint = ["zebra quantum ukulele xylophone vortex", "marble orbit pickle tundra glacier"]
    assert corpus_bleu(disjoint, refs) < 1.0


def test_rouge_l_identical_is_one_and_partial_between():
    refs = ["the cat sat on the mat", "hello world"]
    assert rouge_l(refs, refs) == pytest.approx(1.0)
    partial = rouge_l(["the cat sat"], ["the cat sat on the mat"])
    assert 0.0 < partial < 1.0
    assert rouge_l(["zebra"], ["cat"]) == 0.0


def test_text_metrics_keys_and_values():
    preds = ["the cat sat", "hello there friend"]
    refs = ["a cat sat down", "hello there friend"]
    m = text_metrics(preds, refs)
    assert set(m) == TEXT_KEYS
    assert all(isinstance(v, float) for v in m.values())
    assert m["f1"] == pytest.approx((0.8 + 1.0) / 2)
    assert m["length"] == pytest.approx(3.0)
    assert m["distinct1"] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        text_metrics(["a"], [])


# ----------------------------------------------------------------------------- predictions


def _write_jsonl(path: Path, lines: list) -> Path:
    path.write_text(
        "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n",
        encoding="utf-8",
    )
    return path


GOOD = [
    {"context": ["I failed my exam."], "prediction": "i am sorry to hear that",
     "reference": "i am so sorry to hear that", "skill": "empathetic"},
    "   ",
    {"context": "who wrote hamlet", "prediction": "shakespeare wrote hamlet",
     "reference": "william shakespeare wrote hamlet", "skill": "trivia"},
    {"context": ["hi"], "prediction": "hello", "reference": "hello there"},
]


def test_read_and_score_good_predictions(tmp_path):
    rows = read_predictions(_write_jsonl(tmp_path / "p.jsonl", GOOD))
    assert len(rows) == 3  # the blank line is ignored
    assert isinstance(rows[0], PredictionRow)
    assert rows[1].context == ["who wrote hamlet"]
    assert rows[1].line == 3 and rows[2].skill is None
    scores = score_predictions(rows)
    assert scores["all"]["n"] == 3
    assert set(scores["skills"]) == {"empathetic", "trivia"}
    assert scores["skills"]["trivia"]["n"] == 1
    assert TEXT_KEYS <= set(scores["all"]) and TEXT_KEYS <= set(scores["skills"]["trivia"])
    # trivia: pred 3 tokens all in ref of 4 -> P=1, R=3/4, F1=6/7
    assert scores["skills"]["trivia"]["f1"] == pytest.approx(6 / 7)


def test_bad_json_names_line(tmp_path):
    path = _write_jsonl(tmp_path / "p.jsonl", [GOOD[0], GOOD[2], '{"context": ["x"], "pred'])
    with pytest.raises(ValueError) as err:
        read_predictions(path)
    msg = str(err.value)
    assert "line 3" in msg and "invalid JSON" in msg and "p.jsonl" in msg


def test_missing_field_names_line_and_field(tmp_path):
    bad = {"context": ["x"], "prediction": "y"}
    path = _write_jsonl(tmp_path / "p.jsonl", [GOOD[0], bad, GOOD[2]])
    with pytest.raises(ValueError) as err:
        read_predictions(path)
    msg = str(err.value)
    assert "line 2" in msg and '"reference"' in msg


@pytest.mark.parametrize(
    "bad, needle",
    [
        ({"context": [1], "prediction": "a", "reference": "b"}, '"context"'),
        ({"context": "x", "prediction": 3, "reference": "b"}, '"prediction"'),
        ({"context": "x", "prediction": "a", "reference": "b", "skill": 7}, '"skill"'),
        ([1, 2], "JSON object"),
    ],
)
def test_wrong_types_are_errors(tmp_path, bad, needle):
    path = _write_jsonl(tmp_path / "p.jsonl", [bad])
    with pytest.raises(ValueError, match="line 1") as err:
        read_predictions(path)
    assert needle in str(err.value)


def test_non_utf8_and_empty_files(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_bytes(json.dumps(GOOD[0]).encode() + b'\n{"context": "\xff"}\n')
    with pytest.raises(ValueError, match="line 2.*UTF-8"):
        read_predictions(path)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(ValueError, match="empty"):
        read_predictions(empty)


# ----------------------------------------------------------------------------- report

SKILLS = ["empathetic", "trivia"]


def _report() -> dict:
    skills = {
        name: {"n": 10 + i, "ppl": 12.5 + i, "ppl_backbone": 30.0 + i, "bleu": 3.2,
               "f1": 0.21, "rougeL": 0.18, "distinct1": 0.5, "distinct2": 0.7}
        for i, name in enumerate(SKILLS)
    }
    labels = ["none"] + SKILLS
    text = {"bleu": 1.0, "f1": 0.1, "rougeL": 0.1, "distinct1": 0.4, "distinct2": 0.6,
            "length": 8.0, "n": 10}
    return {
        "skills": skills,
        "routing": {
            "accuracy": 0.8,
            "labels": labels,
            "confusion": [[5, 1, 0], [0, 4, 1], [1, 0, 3]],
            "per_skill": {
                lab: {"precision": 0.8, "recall": 0.75, "f1": 0.77} for lab in labels
            },
        },
        "routings": {r: {s: dict(text) for s in SKILLS} for r in ("backbone", "oracle", "auto")},
        "settings": {"backbone": "bundled", "limit": 10},
    }


FORGETTING = {
    "order": SKILLS,
    "sequential": {"empathetic": [12.0, 30.0], "trivia": [80.0, 14.0]},
    "adapters": {"empathetic": [12.0, 12.0], "trivia": [None, 14.2]},
}


def test_write_report_files_and_keys(tmp_path):
    out = tmp_path / "out"
    paths = write_report(_report(), out, forgetting=FORGETTING)
    names = {p.name for p in paths}
    assert names == {"report.json", "report.md", "ppl.png", "confusion.png", "forgetting.png"}
    for p in paths:
        assert p.exists() and p.parent == out
    for png in ("ppl.png", "confusion.png", "forgetting.png"):
        data = (out / png).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 1000
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]

    rep = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert {"skills", "routing"} <= set(rep)
    assert set(rep["skills"]) == set(SKILLS)
    for name in SKILLS:
        entry = rep["skills"][name]
        assert set(entry) == {"n", "ppl", "ppl_backbone", "bleu", "f1", "rougeL",
                              "distinct1", "distinct2"}
        assert isinstance(entry["n"], int)
        assert all(isinstance(entry[k], float) for k in entry if k != "n")
    routing = rep["routing"]
    assert set(routing) == {"accuracy", "labels", "confusion", "per_skill"}
    assert routing["labels"] == ["none"] + SKILLS
    assert routing["confusion"][1] == [0, 4, 1]
    for lab in routing["labels"]:
        assert set(routing["per_skill"][lab]) == {"precision", "recall", "f1"}
    assert rep["forgetting"]["order"] == SKILLS
    assert rep["forgetting"]["adapters"]["trivia"] == [None, 14.2]
    assert set(rep["routings"]) == {"backbone", "oracle", "auto"}

    md = (out / "report.md").read_text(encoding="utf-8")
    for name in SKILLS:
        assert name in md
    for png in ("ppl.png", "confusion.png", "forgetting.png"):
        assert f"]({png})" in md
    for routing_name in ("backbone", "oracle", "auto"):
        assert f"| {routing_name} |" in md
    assert "| **trivia** | 1 | 0 | 3 |" in md  # confusion row as a table
    assert "| empathetic | 12.00 | 30.00 | +18.00 |" in md  # sequential forgot 30 - 12
    assert "| trivia | – | 14.20 | +0.00 |" in md  # adapters: nothing forgotten
    assert "-58.3%" in md  # empathetic: (12.5 - 30) / 30


def test_write_report_without_forgetting_and_rejects_missing_keys(tmp_path):
    paths = write_report(_report(), tmp_path)
    assert {p.name for p in paths} == {"report.json", "report.md", "ppl.png", "confusion.png"}
    assert not (tmp_path / "forgetting.png").exists()
    assert "forgetting" not in json.loads((tmp_path / "report.json").read_text())

    bad = _report()
    del bad["skills"]["trivia"]["ppl_backbone"]
    with pytest.raises(ValueError, match="ppl_backbone"):
        write_report(bad, tmp_path / "bad")
    assert not (tmp_path / "bad" / "report.json").exists()
    bad = _report()
    bad["routing"]["confusion"] = [[1, 2], [3, 4]]
    with pytest.raises(ValueError, match="confusion"):
        write_report(bad, tmp_path / "bad")


def test_write_report_non_finite_becomes_null(tmp_path):
    rep = _report()
    rep["skills"]["trivia"]["ppl"] = float("inf")
    write_report(rep, tmp_path)
    text = (tmp_path / "report.json").read_text()
    assert "Infinity" not in text
    assert json.loads(text)["skills"]["trivia"]["ppl"] is None
