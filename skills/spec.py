"""What a skill is, as written in ``DIR/NAME/skill.yaml``: its data, knowledge, training and decoding.

Every field is checked when a spec is built, whether from YAML or in Python; an error names
the file (when there is one) and the dotted field, e.g. ``field 'decoding.top_p'``.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from .fields import FieldError, check_types, from_mapping
from .files import atomic_write_text, read_text

SPEC_FILE = "skill.yaml"
RESERVED_NAMES = ("none", "auto", "bare")
NAME_RULE = (
    "1 to 48 characters: lowercase letters, digits, '_' or '-', starting with a letter, "
    f"and not one of {', '.join(RESERVED_NAMES)}"
)
_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,47}$")
KNOWLEDGE_MODES = ("none", "retrieval", "static")


def validate_skill_name(name: str) -> str:
    """Return ``name`` if it can name a skill (a folder, a class of the manager), else raise ValueError."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ValueError(f"invalid skill name {name!r}: a skill name is {NAME_RULE}")
    if name in RESERVED_NAMES:
        raise ValueError(f"skill name {name!r} is reserved: a skill name is {NAME_RULE}")
    return name


class SpecError(FieldError):
    """A field of a skill spec is missing, unknown or holds a bad value.

    Attributes:
        field: dotted name of the field, e.g. ``decoding.top_p``.
        problem: what is wrong, e.g. ``must be a number in (0, 1], got 1.5``.
        file: the ``skill.yaml`` the value came from, if any.
    """


def _require(ok: bool, name: str, rule: str, value: Any) -> None:
    if not ok:
        raise SpecError(name, f"must be {rule}, got {value!r}")


@dataclass
class KnowledgeSpec:
    """The knowledge a skill's replies are grounded on; it goes first in the context, as its own segment.

    Attributes:
        mode: ``"none"`` (no knowledge), ``"retrieval"`` (the best passage of ``file`` for the
            conversation, found by BM25 at every turn) or ``"static"`` (always ``text``, e.g. a persona).
        file: the knowledge file for ``retrieval``, relative to the skill's folder: one passage a
            line (``.txt``) or JSONL with a ``text`` field. Passages appended to it are used at once.
        text: the fixed knowledge for ``static``.
        min_overlap: for ``retrieval``: the best passage is used only when it covers at least
            this share of the message's content words, weighted by how rare each word is in the
            file (see ``skills.knowledge.coverage``); otherwise the skill gets no passage and says
            it doesn't know. 0 always uses the best passage.
        query_turns: for ``retrieval``: how many of the conversation's newest turns make the search
            query (1: the user's message alone; 3: the message, the reply before it and the
            message before that, so a follow-up such as "I tried that already" finds its problem;
            and a passage whose answer the bot already gave is passed over).
        numbers_must_agree: for ``retrieval`` of question-and-answer passages: a passage is not used when its
            question and the message both hold numbers, none the same ("the very first president" against "the
            37th President": ``skills.knowledge.asks_another_number``), nor when the message asks for a number and
            its answer holds none ("how many planets..." against the largest planet's "Jupiter":
            ``skills.knowledge.answers_without_a_number``) or counts another thing ("how many legs..." against "How
            many hearts...": ``skills.knowledge.counts_another_thing``), nor when the message asks who and the
            passage answers where, when or how, or "a"/"an" something (``skills.knowledge.answers_a_who_with_a_thing``);
            and a passage whose question asks another superlative than the message ("smallest" for "biggest":
            ``skills.knowledge.asks_another_superlative``) is passed over.
            Off where numbers name models whose answers carry over (a PS4's fix for a PS5).
        unused_reply: for ``retrieval``: the skill's reply, word for word, when no passage is used (nothing is
            generated then). For a skill that only answers from its file, such as trivia, whose adapter, trained to
            say it doesn't know, once answered "what money do they use in japan?" with "yeah". ``None``: the
            adapter answers without a passage (tech support asks back which device it is).
        new_problem_reply: for ``retrieval``: the reply, word for word, when no passage is used and the message
            follows none of the skill's own replies (neither of the bot's last two turns says a passage's answer or
            is this reply: ``skills.knowledge.Retriever.says_an_answer``). Tech support asks back which device it
            is: its adapter, reading a bot turn of another skill before the message ("Paella"), had answered a
            first problem with "Sorry that didn't help", its reply to a fix that failed. ``None``: the adapter answers.
        first_steps_file: for ``retrieval`` with a ``new_problem_reply``: a file, inside the skill's folder and in the
            knowledge file's format, of general first steps by topic (a topic's words, a line break, the steps). Where
            ``new_problem_reply`` would be said, the answer of its passage sharing the most rare words with the message
            (BM25) is said instead, word for word ("instagram won't post my reel": what helps with any app); a message
            sharing none gets ``new_problem_reply``. ``None``: always ``new_problem_reply``.
        after_steps_reply: for ``retrieval`` with a ``first_steps_file``: the reply, word for word, when the bot's last
            turn was the skill's first steps, the message reads as a follow-up on them ("restarted it, still flips",
            ``skills.knowledge.follows_up``) and no passage is used. ``None``: the adapter answers, which never trained
            on such a turn (first steps are written, not trained: "i turned 'mirror front camera' on, then off,
            restarted the phone, still flips every single time" got "Then", session 20's trial).
    """

    mode: str = "none"
    file: str | None = None
    text: str | None = None
    min_overlap: float = 0.0
    query_turns: int = 1
    numbers_must_agree: bool = False
    unused_reply: str | None = None
    new_problem_reply: str | None = None
    first_steps_file: str | None = None
    after_steps_reply: str | None = None

    def __post_init__(self) -> None:
        check_types(self, SpecError, lenient=True)  # YAML and UI sliders: "1e-3" and 8.0 pass
        _require(self.mode in KNOWLEDGE_MODES, "mode", f"one of {', '.join(KNOWLEDGE_MODES)}", self.mode)
        if self.mode == "retrieval":
            _require(_inside(self.file), "file", "a relative path inside the skill's folder when mode is 'retrieval'", self.file)
        elif self.file is not None:
            raise SpecError("file", f"is only used when mode is 'retrieval' (mode is {self.mode!r})")
        if self.mode == "static":
            _require(bool(self.text and self.text.strip()), "text", "a non-empty string when mode is 'static'", self.text)
        elif self.text is not None:
            raise SpecError("text", f"is only used when mode is 'static' (mode is {self.mode!r})")
        _require(0.0 <= self.min_overlap <= 1.0, "min_overlap", "a number in [0, 1]", self.min_overlap)
        _require(self.query_turns >= 1, "query_turns", "an integer >= 1", self.query_turns)
        for name in ("unused_reply", "new_problem_reply", "after_steps_reply"):
            value = getattr(self, name)
            if value is not None:
                _require(self.mode == "retrieval", name, "only set when mode is 'retrieval'", value)
                _require(bool(value.strip()), name, "a non-empty string", value)
        if self.first_steps_file is not None:
            _require(self.new_problem_reply is not None, "first_steps_file", "only set with a new_problem_reply",
                     self.first_steps_file)
            _require(_inside(self.first_steps_file) and self.first_steps_file != self.file, "first_steps_file",
                     "a relative path inside the skill's folder, not the knowledge file", self.first_steps_file)
        if self.after_steps_reply is not None:
            _require(self.first_steps_file is not None, "after_steps_reply", "only set with a first_steps_file",
                     self.after_steps_reply)


def _inside(file: str | None) -> bool:
    """Whether ``file`` is a relative path that stays inside the skill's folder."""
    path = PurePosixPath(file or "")
    return bool(file) and "\\" not in file and not path.is_absolute() and ".." not in path.parts


@dataclass
class AdapterTraining:
    """How the skill's adapter is trained (the backbone stays frozen).

    Attributes:
        kind: the adapter kind: ``bottleneck`` (Adapter-Bot's residual adapter), ``houlsby``, ``lora``,
            ``prefix`` or ``prompt`` (``adapterbot skill kinds`` lists them with their settings).
        settings: the kind's settings, e.g. ``{"bottleneck": 64}`` or ``{"rank": 8, "alpha": 16}``; a missing
            setting takes the kind's default. They are checked against the kind before any model loads.
        learning_rate: AdamW learning rate of the adapter's weights.
        epochs: most passes over the training split.
        batch_size: examples per optimisation step.
        patience: early stopping: epochs without a better validation loss before training stops.
        max_length: most tokens of one example (context and response); longer contexts lose their oldest turns.
        seed: random seed of initialisation and shuffling, so a run can be repeated.
        weight_decay: AdamW weight decay.
    """

    kind: str = "bottleneck"
    settings: dict[str, Any] = field(default_factory=dict)
    learning_rate: float = 1e-3
    epochs: int = 20
    batch_size: int = 16
    patience: int = 2
    max_length: int = 128
    seed: int = 0
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        check_types(self, SpecError, lenient=True)  # YAML and UI sliders: "1e-3" and 8.0 pass
        _require(bool(self.kind), "kind", "an adapter kind's name", self.kind)
        for name in ("epochs", "batch_size"):
            _require(getattr(self, name) >= 1, name, "an integer >= 1", getattr(self, name))
        _require(self.learning_rate > 0, "learning_rate", "a number > 0", self.learning_rate)
        _require(self.patience >= 0, "patience", "an integer >= 0", self.patience)
        _require(self.max_length >= 8, "max_length", "an integer >= 8", self.max_length)
        _require(self.seed >= 0, "seed", "an integer >= 0", self.seed)
        _require(self.weight_decay >= 0, "weight_decay", "a number >= 0", self.weight_decay)


MAX_CANDIDATES = 32
"""Most sampled candidates of one sample-and-rank reply: each is a row of the batch."""


@dataclass
class DecodingSpec:
    """How the skill's replies are generated.

    Attributes:
        do_sample: sample the next token; ``False`` is greedy decoding (repeatable replies).
        temperature: softening of the next-token distribution when sampling.
        top_p: nucleus sampling: keep the smallest set of tokens whose probability reaches ``top_p``.
        max_new_tokens: most tokens of one reply.
        repetition_penalty: divides the score of tokens already in the context or the reply (1.0 = off).
        no_repeat_ngram_size: no n-gram of this size appears twice in the context and the reply taken
            together (Hugging Face's rule: the reply cannot repeat 3 words the user wrote; 0 = off).
        reply_no_repeat_ngram_size: no n-gram of this size appears twice within the reply itself, while
            the context may still be copied (0 = off). For skills that copy from their knowledge
            passage, where ``no_repeat_ngram_size`` would forbid the copy: it stops loops such as
            "Ivy Ivy Ivy".
        copy_boost: bonus to the score of a token that continues, in the context, the reply's newest
            tokens (0 = off). For skills that copy from their knowledge passage: a copied answer,
            once begun, runs to its end instead of stopping mid-word (see ``bot.generation.CopyBoost``).
        context_turns: how many of the newest turns the reply reads (0: as many as fit the window).
            A skill trained on single questions, such as trivia, answers best from the question alone.
        candidates: sample this many replies and keep the likeliest (sample-and-rank, as in Meena:
            the highest mean log-probability per token under the answering model, before penalties and
            temperature; a reply that ended beats one cut at ``max_new_tokens``). 1 = off; used only when
            sampling. A small backbone's greedy reply drifts ("hi!" -> "I've never been to the US"),
            while the likeliest of 8 samples answers the message more often ("Hello!").
    """

    do_sample: bool = False
    temperature: float = 0.7
    top_p: float = 0.9
    max_new_tokens: int = 40
    repetition_penalty: float = 1.2
    no_repeat_ngram_size: int = 3
    reply_no_repeat_ngram_size: int = 0
    copy_boost: float = 0.0
    context_turns: int = 0
    candidates: int = 1

    def __post_init__(self) -> None:
        check_types(self, SpecError, lenient=True)  # YAML and UI sliders: "1e-3" and 8.0 pass
        _require(self.context_turns >= 0, "context_turns", "an integer >= 0", self.context_turns)
        _require(self.temperature > 0, "temperature", "a number > 0", self.temperature)
        _require(0 < self.top_p <= 1, "top_p", "a number in (0, 1]", self.top_p)
        _require(self.max_new_tokens >= 1, "max_new_tokens", "an integer >= 1", self.max_new_tokens)
        _require(self.repetition_penalty > 0, "repetition_penalty", "a number > 0", self.repetition_penalty)
        _require(self.no_repeat_ngram_size >= 0, "no_repeat_ngram_size", "an integer >= 0", self.no_repeat_ngram_size)
        _require(self.reply_no_repeat_ngram_size >= 0, "reply_no_repeat_ngram_size", "an integer >= 0",
                 self.reply_no_repeat_ngram_size)
        _require(self.copy_boost >= 0, "copy_boost", "a number >= 0", self.copy_boost)
        _require(1 <= self.candidates <= MAX_CANDIDATES, "candidates", f"an integer from 1 to {MAX_CANDIDATES}",
                 self.candidates)

    def generate_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`bot.generation.generate_ids` (Hugging Face ``generate()``'s, plus
        ``reply_no_repeat_ngram_size``); sampling settings only when sampling."""
        kwargs: dict[str, Any] = {
            "do_sample": self.do_sample,
            "max_new_tokens": self.max_new_tokens,
            "repetition_penalty": self.repetition_penalty,
            "no_repeat_ngram_size": self.no_repeat_ngram_size,
            "reply_no_repeat_ngram_size": self.reply_no_repeat_ngram_size,
            "copy_boost": self.copy_boost,
        }
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p)
            if self.candidates > 1:
                kwargs["candidates"] = self.candidates
        return kwargs


@dataclass
class SkillSpec:
    """One skill, as recorded in its ``skill.yaml``.

    Attributes:
        name: the skill's name, also its folder's name and the manager's class (see
            :func:`validate_skill_name`).
        description: one line saying what the skill does, shown in the chat UI and ``skill list``.
        data: where the training dialogues come from, each one of: a ``.jsonl`` or ``.csv`` file
            (relative to the skill's folder or absolute), ``hf:NAME`` or ``hf:NAME:SPLIT`` (a Hugging
            Face dataset), ``chatterbot:CATEGORY[,CATEGORY...]``, ``chitchat`` or ``chitchat:SPLIT``.
        knowledge: the knowledge the replies are grounded on (:class:`KnowledgeSpec`).
        adapter: how the adapter is trained (:class:`AdapterTraining`).
        decoding: how replies are generated (:class:`DecodingSpec`).
        sympathy: the skill meets what the user tells with sympathy (the empathetic skill): Auto mode gives it no
            message that laughs or celebrates ("lol", "haha", 😂, 🎉; :func:`bot.social.laughs`), which goes to
            chit-chat instead.
        splits: sizes of the train / valid / test splits the adapter was trained and tested on.
        card: free-form figures recorded at training time (test perplexity, training time, ...).
    """

    name: str
    description: str = ""
    data: list[str] = field(default_factory=list)
    knowledge: KnowledgeSpec = field(default_factory=KnowledgeSpec)
    adapter: AdapterTraining = field(default_factory=AdapterTraining)
    decoding: DecodingSpec = field(default_factory=DecodingSpec)
    sympathy: bool = False
    splits: dict[str, int] = field(default_factory=dict)
    card: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_types(self, SpecError, lenient=True)  # YAML and UI sliders: "1e-3" and 8.0 pass
        try:
            valid = validate_skill_name(self.name) == self.name
        except ValueError:
            valid = False
        _require(valid, "name", f"a skill name: {NAME_RULE}", self.name)
        for i, source in enumerate(self.data):
            _require(bool(source.strip()), f"data[{i}]", "a non-empty data source", source)
        for split, size in self.splits.items():
            _require(size >= 0, f"splits.{split}", "an integer >= 0", size)

    @classmethod
    def from_dict(cls, data: dict) -> "SkillSpec":
        """Build a spec from a mapping (as read from YAML); unknown or missing fields raise :class:`SpecError`."""
        if not isinstance(data, dict):
            raise SpecError("<root>", f"must be a mapping of fields, got {type(data).__name__}")
        adapter = data.get("adapter")
        if isinstance(adapter, dict) and "bottleneck" in adapter and "settings" not in adapter:
            # skill.yaml written before adapter kinds: ``adapter.bottleneck`` is a bottleneck adapter's setting
            adapter = dict(adapter)
            adapter["settings"] = {"bottleneck": adapter.pop("bottleneck")}
            data = {**data, "adapter": adapter}
        return from_mapping(cls, data, SpecError)

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain mappings and lists, as written to YAML."""
        return asdict(self)

    @classmethod
    def load(cls, path: Path | str) -> "SkillSpec":
        """Read ``path`` (a ``skill.yaml``, or the folder holding it); errors name the file and the field."""
        path = Path(path)
        if path.is_dir():
            path = path / SPEC_FILE
        try:
            text = read_text(path)
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: no skill spec here") from None
        try:
            data = yaml.safe_load(text)
        except RecursionError:
            raise ValueError(f"{path}: invalid YAML: nested too deeply") from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
            problem = getattr(e, "problem", None) or str(e)
            raise ValueError(f"{path}: {where}invalid YAML: {problem}") from None
        if data is None:
            raise ValueError(f"{path}: the file is empty; it needs at least the field 'name'")
        try:
            return cls.from_dict(data)
        except SpecError as e:
            raise e.in_file(path) from None

    def save(self, folder: Path | str) -> Path:
        """Write ``folder/skill.yaml`` atomically (a reader never sees half a file) and return its path."""
        path = Path(folder) / SPEC_FILE
        atomic_write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True))
        return path
