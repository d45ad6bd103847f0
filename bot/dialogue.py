"""DialoGPT-style formatting: turns joined by EOS, an optional knowledge segment first.

``[knowledge EOS] turn_1 EOS turn_2 EOS ... turn_n EOS`` and the model continues with the
reply, which ends at the next EOS. The history is cut from the oldest turns so that the
context plus the new tokens fit the backbone's window; a message that alone is too long
keeps its last tokens. Nothing typed by a user can become a special token.
"""
from __future__ import annotations

import re
from typing import Sequence

from skills.knowledge import answer_of, content_words

# Characters per token never exceed this for byte-level BPE on text we keep, so cutting a
# huge message to this many characters per window token before encoding loses nothing used.
_MAX_CHARS_PER_TOKEN = 16


_SENTENCE_END = re.compile(r"[.!?]+['\")\]]*(?=\s|$)")


def pad(rows: Sequence[Sequence[int]], value: int, left: bool = False, width: int | None = None):
    """Token lists as one ``[len(rows), width]`` long tensor filled out with ``value``, and its attention mask.

    Right-padded by default (every row starts at position 0, as training wants); with ``left``,
    left-padded (every row ends at the last column, so generation continues every row). ``width``
    defaults to the longest row.
    """
    import torch

    width = max(map(len, rows)) if width is None else width
    ids = torch.full((len(rows), width), value, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            span = slice(width - len(row), width) if left else slice(0, len(row))
            ids[i, span] = torch.tensor(list(row))
            mask[i, span] = 1
    return ids, mask


class DialogueError(ValueError):
    """The conversation given to the bot cannot be answered (e.g. the last message is empty)."""


def validate_history(history: Sequence[str]) -> list[str]:
    """Check a history (oldest first, last = the user's new message) and return it as a list."""
    if isinstance(history, str):
        history = [history]
    if not isinstance(history, Sequence) or len(history) == 0:
        raise DialogueError("history must be a non-empty list of messages, oldest first")
    for i, turn in enumerate(history):
        if not isinstance(turn, str):
            raise DialogueError(f"history[{i}] must be a string, got {type(turn).__name__}")
    if not history[-1].strip():
        raise DialogueError("the message is empty: type something to get a reply")
    # A lone surrogate (e.g. json.loads('"\\ud800"')) cannot be encoded: it becomes '?'.
    return [t.encode("utf-8", "replace").decode("utf-8") for t in history]


def _encode(tokenizer, text: str, max_tokens: int, keep: str = "end") -> list[int]:
    text = text.strip()
    limit = max_tokens * _MAX_CHARS_PER_TOKEN
    if len(text) > limit:
        text = text[-limit:] if keep == "end" else text[:limit]
    ids = tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
    if len(ids) > max_tokens:
        ids = ids[-max_tokens:] if keep == "end" else ids[:max_tokens]
    return ids


def context_budget(tokenizer, model_window: int, max_new_tokens: int) -> int:
    """Tokens left for the context once ``max_new_tokens`` are reserved for the reply."""
    budget = model_window - max_new_tokens
    if budget < 8:
        raise DialogueError(f"max_new_tokens={max_new_tokens} leaves no room for context in a {model_window}-token window")
    return budget


def build_context(tokenizer, history: Sequence[str], budget: int, knowledge: str | None = None) -> list[int]:
    """Token ids of the formatted context, at most ``budget`` long, newest turns kept."""
    history = validate_history(history)
    eos = tokenizer.eos_token_id
    segments: list[list[int]] = []
    if knowledge and knowledge.strip():
        segments.append(_encode(tokenizer, knowledge, budget // 2 - 1, keep="start") + [eos])
    used = sum(map(len, segments))
    turns: list[list[int]] = []
    for turn in reversed(history):
        room = budget - used - 1
        if room <= 0:
            break
        ids = _encode(tokenizer, turn, room) + [eos]
        turns.append(ids)
        used += len(ids)
    return [t for seg in segments + turns[::-1] for t in seg]


def copy_source(tokenizer, knowledge: str | None, max_tokens: int = 128) -> list[int]:
    """What a reply may copy from ``knowledge`` (see ``DecodingSpec.copy_boost``): the passage's answer
    (its last line, which after the line break encodes as at the start of a reply) and EOS; nothing
    without a passage."""
    if not knowledge or not knowledge.strip():
        return []
    return _encode(tokenizer, answer_of(knowledge), max_tokens, keep="start") + [tokenizer.eos_token_id]


def response_ids(tokenizer, response: str, max_tokens: int) -> list[int]:
    """Token ids of a reference response followed by EOS (for training and perplexity)."""
    return _encode(tokenizer, response, max_tokens - 1, keep="start") + [tokenizer.eos_token_id]


def end_at_sentence(text: str) -> str:
    """``text`` up to its last sentence end (``.``, ``!`` or ``?``): a reply cut by its token budget
    then ends on a whole sentence. Text with no sentence end is kept whole."""
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    return text[: ends[-1]] if ends else text


_WORD = re.compile(r"\S+")


def cut_loop(text: str, source: str = "", longest: int = 8) -> str:
    """``text`` without the loop a small model falls into ("...a repair shop is the fetish shop is the fetish shop is
    the fetish list.", session 19's trial): from the first run of two to ``longest`` words said twice in a row that
    ``source`` (what the reply may copy: "New York, New York") does not say, the reply ends at its last sentence end
    before that run, or, with none, just before the run's second saying. Text with no such run is kept whole."""
    words = [(m.group().lower().strip(".,!?;:'\""), m.start()) for m in _WORD.finditer(text)]
    said = " ".join(m.group().lower().strip(".,!?;:'\"") for m in _WORD.finditer(source))
    for i in range(len(words)):
        for n in range(2, longest + 1):
            run = [w for w, _ in words[i : i + 2 * n]]
            if len(run) == 2 * n and run[:n] == run[n:] and " ".join(run) not in said:
                ends = [m.end() for m in _SENTENCE_END.finditer(text, 0, words[i][1])]
                return text[: ends[-1]] if ends else text[: words[i + n][1]].rstrip(" ,;:")
    return text


_YOUR = re.compile(r"\b(about|with|for|to|not|miss|missing) your ([a-z]+)", re.IGNORECASE)
_ALWAYS_YOURS = frozenset(content_words("fault feelings feeling self mind heart health life side best own family friends "
                                        "friend doctor"))
"""What "your ..." may name unsaid: the listener's own feelings, fault, health and the like."""


def _sentences(text: str) -> list[str]:
    """``text``'s sentences, each up to its end mark (the last may have none)."""
    return [m.group().strip() for m in re.finditer(r".+?(?:[.!?]+['\")\]]*(?=\s|$)|$)", text) if m.group().strip()]


def drop_unsaid(text: str, message: str) -> str:
    """``text`` without its sentences that speak of the user's something ("about your ...", "with your ...", "to your
    ...", "not your ...") that ``message`` never named: a small adapter copying its data's "I'm so sorry about your dog."
    wrote "I'm so sorry about your hub a rabbit." to a report to HR, and "It's not your son." (session 21's trial).
    "not your" names nothing but a fault. The text is kept whole when every sentence would go."""
    said = set(content_words(message))
    sentences = _sentences(text)

    def unsaid(sentence: str) -> bool:
        for match in _YOUR.finditer(sentence):
            named = set(content_words(match.group(2)))
            if match.group(1).lower() == "not" and named != set(content_words("fault")):
                return True
            if named and not named & (said | _ALWAYS_YOURS):
                return True
        return False

    kept = [sentence for sentence in sentences if not unsaid(sentence)]
    return " ".join(kept) if kept and len(kept) < len(sentences) else text


PERSONA = frozenset(content_words("major majoring minor mission missions missionary temple semester class classes homework "
                                  "school college university campus professor roommate dorm study studying utah "
                                  "provo idaho arizona"))
"""The Chit-Chat corpus's own life: its speakers were students, many back from a church mission, and the backbone
trained on it brings their school, majors and missions into conversations that never named them ("i'm going fishing
tomorrow" -> "what's your major?", "any plans for the weekend" -> "What are you planning on majoring in?"): 36 of
560 chit-chat replies to small talk in session 22."""

REACTION = frozenset(content_words("love like fun cool awesome great nice good glad happy sound sounds wow interesting "
                                   "crazy amazing fantastic lovely excited exciting congratulations congrats think "
                                   "know really sure yeah haha lol hope bet favorite favourite thing things agree "
                                   "enjoy enjoyed right true one idea lot pretty definitely totally absolutely maybe "
                                   "probably how go going that's what's there's here's let's"))
"""Words a reaction says to anything ("That sounds awesome, I love that!"): a sentence of them names nothing new."""


def drifts(reply: str, conversation: str) -> bool:
    """Whether ``reply`` brings the backbone's corpus's own life (:data:`PERSONA`) into a ``conversation`` that never
    named it."""
    return bool((set(content_words(reply)) & PERSONA) - set(content_words(conversation)))


def stay_on_topic(text: str, conversation: str) -> str:
    """``text`` up to its first sentence, after the first, that names something neither ``conversation`` nor a
    reaction (:data:`REACTION`) holds: the small backbone opens well and wanders off ("i bought a new bike" -> "That
    is so cool! I'm sorry you don't mind me asking! I hope you have a flying car.", "i made pancakes today" -> "That's
    so cool! I've seen those movies!"). Kept whole, a question back with one new word read worse more often than
    better ("What's your favorite smell?" against "Do you like hiking?"; session 22)."""
    sentences = _sentences(text)
    known = set(content_words(conversation)) | REACTION
    for i, sentence in enumerate(sentences[1:], 1):
        if not set(content_words(sentence)) <= known:
            return " ".join(sentences[:i])
    return text

