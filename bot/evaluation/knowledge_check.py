"""Does a knowledge skill know when it doesn't know? Questions in its file, and questions that are not.

Both go through the running bot's own path for the skill (:meth:`AdapterBot.respond` with the
skill forced: the knowledge lookup, its ``min_overlap`` gate, the adapter):

- in the file: the examples of the skill's test split answered from their passage (each question as written,
  and as people type it), scored by unigram F1 against the reference answer; answering "I don't know"
  there is a false abstention;
- not in the file: the test part of ``skills/sources/out_of_knowledge.jsonl`` (questions whose
  answer is in no passage); the reply should abstain.

A reply abstains when it says so in words (:data:`ABSTENTION`).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from skills import BUNDLED_DIR
from skills.corpora import split_of

from .metrics import unigram_f1

OUT_OF_KNOWLEDGE = BUNDLED_DIR.parent / "sources" / "out_of_knowledge.jsonl"
ABSTENTION = re.compile(r"\b(not sure|(don'?t|do not|didn'?t) know|no idea|can'?t say|cannot say|not certain)\b", re.IGNORECASE)
SAMPLES = 10


def abstains(reply: str) -> bool:
    """Whether ``reply`` says it doesn't know (:data:`ABSTENTION`)."""
    return ABSTENTION.search(reply) is not None


def answered_from(example) -> bool:
    """Whether an example's reply is in its passage: a question its file answers. (``skill add`` gives every
    example of a knowledge skill a passage, the best one found, so a passage alone does not say so.)"""
    return bool(example.knowledge) and example.response in example.knowledge


def out_of_knowledge(split: str, path: Path = OUT_OF_KNOWLEDGE) -> list[str]:
    """Questions of ``path`` whose answer is in no passage, by split: 40% ``test``, 20% ``valid``,
    40% ``train``, by the question's hash (the same on every machine)."""
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r["question"] for r in rows if split_of(r["question"], valid_pct=20, test_pct=40) == split]


def knowledge_check(bot, name: str, examples, questions: list[str]) -> dict:
    """In-file F1 and false abstentions on the ``examples`` answered from their passage (:func:`answered_from`);
    abstentions on out-of-file ``questions``.

    Returns ``{"in_file": {"n", "f1", "false_abstention", "passage_used"}, "out_of_file": {"n",
    "abstention", "passage_used"}, "samples": [{"question", "passage", "used", "reply", "in_file"}]}``.
    """
    examples = [e for e in examples if answered_from(e)]
    inside = [bot.respond(e.context, skill=name) for e in examples]
    outside = [bot.respond([q], skill=name) for q in questions]
    n_in, n_out = max(1, len(inside)), max(1, len(outside))
    result = {
        "in_file": {"n": len(inside),
                    "f1": sum(unigram_f1(r.text, e.response) for r, e in zip(inside, examples)) / n_in,
                    "false_abstention": sum(abstains(r.text) for r in inside) / n_in,
                    "passage_used": sum(r.knowledge_used for r in inside) / n_in},
        "out_of_file": {"n": len(outside), "abstention": sum(abstains(r.text) for r in outside) / n_out,
                        "passage_used": sum(r.knowledge_used for r in outside) / n_out},
    }
    picked = [(e.context[-1], r, True) for e, r in zip(examples, inside)][: SAMPLES // 2]
    picked += [(q, r, False) for q, r in zip(questions, outside)][: SAMPLES - len(picked)]
    result["samples"] = [{"question": q, "passage": r.knowledge, "used": r.knowledge_used, "reply": r.text, "in_file": f}
                         for q, r, f in picked]
    return result
