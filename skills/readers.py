"""Readers of every data source a skill spec may name.

A source is a ``.jsonl`` or ``.csv`` file, ``hf:NAME[:SPLIT]``, ``chatterbot:CAT[,CAT...]`` or
``chitchat[:SPLIT]`` (see :func:`read_source`). File readers skip bad rows and count them with
their line numbers, so one typo does not lose a dataset, but a file with no usable row is an error.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from .corpora import Conversation, chatterbot_conversations, chitchat_conversations
from .data import SPLITS, Example, ReadResult, dedupe
from .files import MAX_BYTES, read_text

__all__ = ["DEFAULT_COLUMNS", "CSV_TURN_SEPARATOR", "CHITCHAT_CONTEXT_TURNS", "example_from_row", "read_jsonl", "read_csv",
           "examples_from_dataset", "read_hf", "examples_from_conversations", "read_chatterbot", "read_chitchat",
           "read_source"]

DEFAULT_COLUMNS = {"context": "context", "response": "response", "knowledge": "knowledge", "group": "group"}
CSV_TURN_SEPARATOR = " || "
CHITCHAT_CONTEXT_TURNS = 4
_SHOWN_BAD_LINES = 5


# ---- rows -> examples --------------------------------------------------------------------


def _columns(columns: Mapping[str, str] | None) -> dict[str, str]:
    unknown = sorted(set(columns or {}) - set(DEFAULT_COLUMNS))
    if unknown:
        raise ValueError(f"unknown column mapping key(s) {', '.join(unknown)}; use {', '.join(DEFAULT_COLUMNS)}")
    return {**DEFAULT_COLUMNS, **(columns or {})}


def _turns(value: Any, column: str) -> list[str]:
    turns = [value] if isinstance(value, str) else value
    if not isinstance(turns, list) or not all(isinstance(t, str) for t in turns):
        raise ValueError(f"{column!r} must be a string or a list of strings, got {type(value).__name__}")
    turns = [t.strip() for t in turns if t.strip()]
    if not turns:
        raise ValueError(f"{column!r} is empty")
    return turns


def _csv_turns(value: str) -> Any:
    """A CSV context cell: a JSON list of turns, or turns separated by `` || ``."""
    if value.lstrip().startswith("["):
        try:
            return json.loads(value)
        except (json.JSONDecodeError, RecursionError):
            pass  # a turn may start with "[" ("[laughs] hi"): read it as text
    return value.split(CSV_TURN_SEPARATOR)


def example_from_row(row: Mapping[str, Any], columns: Mapping[str, str] | None = None, csv_context: bool = False) -> Example:
    """The example of one row (a JSON object, a CSV or dataset row); ValueError says what is wrong.

    Args:
        row: the row, by column name.
        columns: which column holds the context, the response and the knowledge
            (keys ``context``, ``response``, ``knowledge``; missing keys keep their default names).
        csv_context: read a string context as CSV does (JSON list or `` || ``-separated turns)
            instead of as a single turn.
    """
    cols = _columns(columns)
    for key in ("context", "response"):
        if row.get(cols[key]) is None:
            raise ValueError(f"missing {cols[key]!r}")
    context = row[cols["context"]]
    if csv_context and isinstance(context, str):
        context = _csv_turns(context)
    response, knowledge = row[cols["response"]], row.get(cols["knowledge"])
    if not isinstance(response, str):
        raise ValueError(f"{cols['response']!r} must be a string, got {type(response).__name__}")
    if not response.strip():
        raise ValueError(f"{cols['response']!r} is empty")
    if knowledge is not None and not isinstance(knowledge, str):
        raise ValueError(f"{cols['knowledge']!r} must be a string, got {type(knowledge).__name__}")
    group = row.get(cols["group"])
    if group is not None and not isinstance(group, str):
        raise ValueError(f"{cols['group']!r} must be a string, got {type(group).__name__}")
    return Example(_turns(context, cols["context"]), response.strip(), (knowledge or "").strip() or None,
                   (group or "").strip() or None)


def _collect(rows: Iterable[tuple[int, Any]], to_example: Callable[[Any], Example], source: str, unit: str = "line") -> ReadResult:
    """Examples of numbered rows; bad rows are counted, and a source with no good row raises ValueError."""
    examples, bad, problems = [], [], []
    for number, row in rows:
        try:
            examples.append(to_example(row))
        except ValueError as e:
            if len(problems) < _SHOWN_BAD_LINES:
                problems.append(str(e))
            bad.append(number)
    if not examples:
        if not bad:
            raise ValueError(f"{source}: no examples: the source is empty")
        shown = ", ".join(map(str, bad[:_SHOWN_BAD_LINES])) + (", ..." if len(bad) > _SHOWN_BAD_LINES else "")
        raise ValueError(f"{source}: no usable example: every {unit} is bad ({unit}s {shown}); {unit} {bad[0]}: {problems[0]}")
    return ReadResult(examples, len(bad), bad[:_SHOWN_BAD_LINES], source, problems=problems)


# ---- readers -----------------------------------------------------------------------------


def _json_object(line: str) -> dict:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"invalid JSON ({e.msg} at column {e.colno})") from None
    except RecursionError:
        raise ValueError("invalid JSON (nested too deeply)") from None
    if not isinstance(row, dict):
        raise ValueError(f"expected a JSON object, got {type(row).__name__}")
    return row


def read_jsonl(path: Path, columns: Mapping[str, str] | None = None, max_bytes: int = MAX_BYTES) -> ReadResult:
    """Examples of a JSONL file, one ``{"context": [...] or "...", "response": "...", "knowledge": "..."}`` a line."""
    _columns(columns)
    # split("\n"), not splitlines(): JSON strings may hold a raw U+2028, which splitlines() breaks on.
    lines = read_text(path, max_bytes).split("\n")
    rows = ((i, line) for i, line in enumerate(lines, 1) if line.strip())
    return _collect(rows, lambda line: example_from_row(_json_object(line), columns), str(path))


def read_csv(path: Path, columns: Mapping[str, str] | None = None, max_bytes: int = MAX_BYTES) -> ReadResult:
    """Examples of a CSV file with a header; the context cell is a JSON list or turns joined by `` || ``."""
    cols = _columns(columns)
    reader = csv.DictReader(io.StringIO(read_text(path, max_bytes), newline=""))
    try:
        header = reader.fieldnames or []
    except csv.Error as e:
        raise ValueError(f"{path}: line 1: bad CSV header ({e})") from None
    missing = [cols[key] for key in ("context", "response") if header and cols[key] not in header]
    if missing:
        example = json.dumps({"context": header[0], "response": header[-1]})
        raise ValueError(f"{path}: line 1: the header has no column {', '.join(map(repr, missing))} (it has "
                         f"{', '.join(header)}); say which columns to read, e.g. --columns '{example}'")

    def rows() -> Iterable[tuple[int, Any]]:
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                raise ValueError(f"{path}: line {reader.line_num}: bad CSV ({e})") from None
            yield reader.line_num, row  # the row's last line: exact for rows without quoted newlines

    return _collect(rows(), lambda row: example_from_row(row, columns, csv_context=True), str(path))


def examples_from_dataset(rows: Iterable[Mapping[str, Any]], source: str, columns: Mapping[str, str] | None = None) -> ReadResult:
    """Examples of the rows of a Hugging Face ``datasets.Dataset`` (or any iterable of row mappings).

    Row numbers in the result are 1-based. A dataset lacking a mapped context or response
    column raises ValueError naming the columns it has.
    """
    cols = _columns(columns)
    names = getattr(rows, "column_names", None)
    if names is not None:
        missing = [cols[key] for key in ("context", "response") if cols[key] not in names]
        if missing:
            raise ValueError(f"{source}: no column {', '.join(map(repr, missing))} (it has {', '.join(names)}); map the columns")
    return _collect(enumerate(rows, 1), lambda row: example_from_row(row, columns), source, unit="row")


def read_hf(name: str, split: str = "train", columns: Mapping[str, str] | None = None) -> ReadResult:
    """Examples of a Hugging Face hub dataset (downloaded on first use; needs network access)."""
    from datasets import load_dataset

    return examples_from_dataset(load_dataset(name, split=split), f"hf:{name}:{split}", columns)


def examples_from_conversations(conversations: Iterable[Conversation], max_context: int | None = None) -> list[Example]:
    """Every turn after the first, as the response to the turns before it (at most ``max_context`` of them)."""
    return [
        Example(conv.turns[max(0, i - max_context) if max_context else 0 : i], conv.turns[i])
        for conv in conversations
        for i in range(1, len(conv.turns))
    ]


def read_chatterbot(categories: Sequence[str]) -> ReadResult:
    """Examples of ``chatterbot-corpus`` categories (file stems such as ``tech_support``)."""
    examples = examples_from_conversations(chatterbot_conversations(list(categories)))
    return ReadResult(examples, 0, [], "chatterbot:" + ",".join(categories))


def read_chitchat(split: str | None = None) -> ReadResult:
    """Examples of ``chitchat-dataset`` (one split, or all of it), each with up to 4 turns of context."""
    if split is not None and split not in SPLITS:
        raise ValueError(f"chitchat has no split {split!r}; use one of {', '.join(SPLITS)}")
    examples = examples_from_conversations(chitchat_conversations(split), CHITCHAT_CONTEXT_TURNS)
    return ReadResult(examples, 0, [], "chitchat" + (f":{split}" if split else ""))


def read_source(source: str, base_dir: Path, columns: Mapping[str, str] | None = None, max_bytes: int = MAX_BYTES) -> ReadResult:
    """Examples of one data source named in a skill spec, duplicates removed.

    Args:
        source: ``FILE.jsonl``, ``FILE.csv``, ``hf:NAME``, ``hf:NAME:SPLIT`` (default split ``train``),
            ``chatterbot:CAT[,CAT...]``, ``chitchat`` or ``chitchat:SPLIT``.
        base_dir: folder that relative file paths are resolved against.
        columns: column names of the context, response and knowledge in a file or dataset
            (keys ``context``, ``response``, ``knowledge``).
        max_bytes: a bigger file is refused.
    """
    kind, _, arg = source.partition(":")
    if kind == "hf":
        name, _, split = arg.partition(":")
        if not name:
            raise ValueError(f"data source {source!r}: name the dataset, as hf:NAME or hf:NAME:SPLIT")
        result = read_hf(name, split or "train", columns)
    elif kind == "chatterbot":
        categories = [c.strip() for c in arg.split(",") if c.strip()]
        if not categories:
            raise ValueError(f"data source {source!r}: name the categories, as chatterbot:CAT[,CAT...]")
        result = read_chatterbot(categories)
    elif kind == "chitchat":
        result = read_chitchat(arg or None)
    else:
        path = Path(source) if Path(source).is_absolute() else Path(base_dir) / source
        suffix = path.suffix.lower()
        if suffix not in (".jsonl", ".csv"):
            raise ValueError(
                f"data source {source!r} is not supported: use a .jsonl or .csv file, hf:NAME[:SPLIT], "
                "chatterbot:CAT[,CAT...] or chitchat[:SPLIT]"
            )
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such data file")
        result = (read_jsonl if suffix == ".jsonl" else read_csv)(path, columns, max_bytes)
    examples, dropped = dedupe(result.examples)
    return replace(result, examples=examples, duplicates=dropped)
