"""Adding a skill: read its data, train its adapter, install it atomically, extend the manager.

This is the orchestration behind ``adapterbot skill add`` and the web UI's Skills tab.
Nothing already installed changes: the new adapter trains alone on the frozen backbone,
its files are written to a temporary folder and renamed into place, and the manager
learns the new class from its compact memory (no other skill's data is read).
"""
from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from manager import CONFIG_NAME, NONE, DialogueManager
from skills import SkillRegistry
from skills.data import Example, split_examples, write_jsonl
from skills.readers import read_source
from skills.knowledge import Retriever, exchange_passage, write_passages
from skills.spec import AdapterTraining, DecodingSpec, KnowledgeSpec, SkillSpec, validate_skill_name

from .chatbot import MANAGER_DIR, AdapterBot
from .training import Progress, perplexity, train_adapter

log = logging.getLogger(__name__)


MIN_TEST_EXAMPLES = 10  # fewer test examples than this cannot tell whether a skill learned
MIN_VALID_EXAMPLES = 5  # fewer validation examples than this choose the epoch to stop at by chance
# A skill without knowledge whose test perplexity is at least this writes replies that read poorly: on the bundled
# backbone a 100-example cooking skill, well above it, answered "how long do i boil an egg" with "Put it on the ground
# and then cut it in the air", and the same data as a FAQ (--faq) copied the right answers (README, adding a skill).
POOR_PPL = 30.0
# A skill whose validation perplexity still fell by more than 1% in its last allowed epoch was cut short by the cap
# (a new user's shop FAQ: 20 epochs, still improving, and nothing said so).
STILL_FALLING = 0.99
# Below this share of its held-out test messages routed to it, a new skill is warned about: Auto mode answers the
# rest with other skills (issue 14's target for a skill added later is 0.9).
ROUTED_MIN = 0.9
COPY_BOOSTS = (0.0, 2.0, 4.0, 8.0, 16.0, 32.0)  # copy_boost candidates of a knowledge skill
COPY_DECODING = {"repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "reply_no_repeat_ngram_size": 2, "copy_boost": 32.0}
"""A knowledge skill's decoding where none is given: nothing stops a copy of the passage (Hugging Face's n-gram ban
and the repetition penalty would garble it), and the reply never repeats its own 2-grams ("Ivy Ivy Ivy"). The copy
boost is the bundled skills' choice, kept when the validation split is too small to choose one
(:data:`MIN_BOOST_CHOICE`)."""
FAQ_DECODING = {**COPY_DECODING, "reply_no_repeat_ngram_size": 0}
"""A FAQ skill's (``--faq``) decoding where none is given: its reply is a whole answer of the file, copied, and an answer
may repeat its own 2-grams: a new user's "...three times as deep as the bulb is tall" came out "...the binb is tall"
under the ban ("bulbs" had used the 2-gram). ``max_new_tokens`` is set to fit the longest answer."""
FAQ_MIN_OVERLAP = 0.6
"""A FAQ skill's gate (``KnowledgeSpec.min_overlap``): its best passage is used only when it covers this much of the
message. Without one, a new user's pet-care FAQ answered "What should I feed my parrot?" with its rabbit's diet. The
best mean, over three topic FAQs, of fresh phrasings decided right and of questions they cannot answer turned away
(``python -m bot.evaluation.faq_gate``, ``docs/reports/faq_gate.md``)."""
FAQ_UNUSED_REPLY = "I'm not sure about that one: it isn't in what I've learned. Could you ask it another way?"
"""What a FAQ skill says when no passage passes its gate (``KnowledgeSpec.unused_reply``), never a generated reply."""
MIN_BOOST_CHOICE = 10
"""Fewest validation examples ``copy_boost`` is chosen on: a new user's FAQ chose 8 on 4 of them, and its copies lost
their middles ("Lower: the top of soil is dry..."), where the bundled skills' 32 copied all five of its answers whole."""


@dataclass
class AddResult:
    """Figures of a freshly added skill (also written into its ``skill.yaml`` card).

    ``warnings`` holds one sentence per reason to doubt the skill (its adapter did not beat the bare
    backbone, or its test split is too small to tell), each with the figures and what to do; the
    CLI prints them and the web UI can show them.
    """

    name: str
    path: Path
    examples: int
    skipped: int
    skipped_lines: list[int]
    splits: dict[str, int]
    test_ppl: float
    test_ppl_backbone: float
    trainable_fraction: float
    train_seconds: float
    manager_updated: bool
    skipped_note: str = ""  # the first skipped rows' lines and problems ("" if none)
    warnings: list[str] = field(default_factory=list)
    copy_boost: float | None = None  # a knowledge skill's copy_boost, chosen on validation (None: not chosen)
    copy_boost_f1: dict[float, float] = field(default_factory=dict)  # its validation F1 by candidate
    routing: dict[str, int] = field(default_factory=dict)  # where its test messages go now ({} without a manager)


def with_knowledge(examples: list[Example], retriever: Retriever, query_turns: int = 1) -> list[Example]:
    """Give each example without a passage the best one its context retrieves, as the running bot searches
    (:meth:`Retriever.lookup_conversation`; its group and everything else kept)."""
    return [dataclasses.replace(e, knowledge=retriever.lookup_conversation(e.context, 0.0, query_turns).text)
            if e.knowledge is None else e for e in examples]


def write_faq(examples: list[Example], path: Path) -> Path:
    """A knowledge file (JSONL) of ``examples``' exchanges, one passage each (duplicates once), at ``path``."""
    return write_passages(dict.fromkeys(exchange_passage(e.context, e.response) for e in examples), path)


def learning_warnings(test_size: int, test_ppl: float, test_ppl_backbone: float, epochs_run: int,
                      training: AdapterTraining, has_knowledge: bool = False, valid_ppls: Sequence[float] = (),
                      valid_size: int = MIN_VALID_EXAMPLES) -> list[str]:
    """Why the figures of a freshly trained skill may not show that it learned, or that its replies will read well,
    or that it could learn more, with what to do about it. ``valid_ppls``: the validation perplexity after each epoch;
    ``valid_size``: the validation split's examples."""
    warnings = []
    if valid_size < MIN_VALID_EXAMPLES:
        warnings.append(
            f"the validation split has only {valid_size} example(s), fewer than {MIN_VALID_EXAMPLES}, and when to stop "
            f"training was chosen on {'it' if valid_size == 1 else 'them'}. Add more data, or more groups: examples of "
            f"one group stay together in one split, so a file of few groups gives small splits")
    if len(valid_ppls) == training.epochs >= 2 and valid_ppls[-1] < STILL_FALLING * valid_ppls[-2]:
        warnings.append(
            f"training stopped at its cap of {training.epochs} epochs while the validation perplexity was still falling "
            f"({valid_ppls[-2]:.2f} -> {valid_ppls[-1]:.2f} in the last epoch): more epochs may make the skill better "
            f"(--epochs {2 * training.epochs} with --replace, or Epochs in the Skills tab)")
    if not has_knowledge and test_ppl >= POOR_PPL:
        warnings.append(
            f"the skill's replies will likely read poorly: its test perplexity, {test_ppl:.2f}, is {POOR_PPL:g} or more. "
            f"If the data answers questions, add it again as a FAQ (`skill add --faq --replace`, or tick 'Answer from "
            f"the dialogues' and 'Replace' in the Skills tab): every exchange becomes a passage, and the skill copies "
            f"the answer of the one most like the user's message")
    if not test_ppl < test_ppl_backbone:  # NaN included: a diverged adapter learned nothing either
        warnings.append(
            f"the skill did not learn: its test perplexity with the adapter, {test_ppl:.2f}, is not below the bare "
            f"backbone's, {test_ppl_backbone:.2f}. Add more examples, or train longer (it ran {epochs_run} of at most "
            f"{training.epochs} epochs: raise --epochs, or --patience if it stopped early)")
    if test_size < MIN_TEST_EXAMPLES:
        warnings.append(
            f"the test split has only {test_size} example(s), fewer than {MIN_TEST_EXAMPLES}, so its test perplexity "
            f"says little about the skill. Add more data: a tenth of the examples is kept for testing, so about "
            f"{MIN_TEST_EXAMPLES * 10} examples give {MIN_TEST_EXAMPLES} test examples")
    return warnings


def add_skill(bot: AdapterBot, name: str, data: str | Path, *, description: str = "", knowledge: str | Path | None = None,
              replace: bool = False, training: AdapterTraining | None = None, decoding: DecodingSpec | None = None,
              columns: dict | None = None, progress: Progress | None = None, show_bar: bool = True,
              max_examples: int | None = None, data_label: str | None = None,
              augment: Callable[[list[Example]], list[Example]] | None = None, query_turns: int = 1,
              faq: bool = False) -> AddResult:
    """Train and install skill ``name`` from ``data`` (a JSONL/CSV path or ``hf:NAME``), and load it into ``bot``.

    Every check that can refuse the skill (its name and folder, the data, the knowledge file, the
    spec) runs before training starts. If loading the installed skill or updating the manager then
    fails, a new skill is uninstalled again, so a failed add leaves nothing behind.

    Args:
        bot: the running bot; its backbone is used, and the new skill is usable at once.
        name: a slug (``validate_skill_name``); an installed name is refused unless ``replace``.
        data: the dialogue examples.
        description: shown in ``skill list`` and the UI.
        knowledge: a passage file (one per line, or JSONL) for a retrieval skill.
        faq: make every exchange of ``data`` a passage (:func:`~skills.knowledge.exchange_passage`) of the skill's
            knowledge file instead, as the bundled tech support's FAQ: the skill copies the answer of the exchange
            most like the conversation. Not with ``knowledge``.
        query_turns: how many of the conversation's newest turns search ``knowledge`` (``KnowledgeSpec.query_turns``).
        training, decoding: settings (defaults: ``AdapterTraining()``, ``DecodingSpec()``).
        columns: column mapping for ``hf:`` datasets.
        progress: ``callback(fraction, message)`` for a UI progress bar.
        max_examples: keep at most this many examples (after deduplication), for quick runs.
        data_label: how ``data`` is recorded in the spec (e.g. an upload's original file name).
        augment: maps the train split to the examples actually trained on (valid and test stay as read).
    """
    if faq and knowledge is not None:
        raise ValueError("faq: the skill's knowledge is either a file of its own (--knowledge) or its data's exchanges (--faq), not both")
    has_knowledge = faq or knowledge is not None
    name = validate_skill_name(name)
    registry = bot.registry
    registry.check_installable(name, replace)
    if max_examples is not None and max_examples < 1:
        raise ValueError(f"max_examples (--limit) must be at least 1, got {max_examples}")
    training = training or AdapterTraining()
    choose_boost = has_knowledge and decoding is None
    source = str(data)
    read = read_source(source, Path.cwd(), columns)
    examples = read.examples[:max_examples] if max_examples else read.examples
    if decoding is None and faq:
        decoding = DecodingSpec(**FAQ_DECODING, max_new_tokens=answer_room(bot, [e.response for e in examples],
                                                                           DecodingSpec().max_new_tokens))
    decoding = decoding or (DecodingSpec(**COPY_DECODING) if has_knowledge else DecodingSpec())
    if read.skipped:
        log.warning("%s: %s", source, read.skipped_note())
    knowledge_spec = KnowledgeSpec(mode="none")
    if faq:  # each exchange is its own passage, as the file written at install holds it
        knowledge_spec = KnowledgeSpec(mode="retrieval", file="knowledge.jsonl", query_turns=query_turns,
                                       min_overlap=FAQ_MIN_OVERLAP, unused_reply=FAQ_UNUSED_REPLY)
        examples = [dataclasses.replace(e, knowledge=exchange_passage(e.context, e.response)) if e.knowledge is None else e
                    for e in examples]
    elif knowledge is not None:
        knowledge = Path(knowledge)
        knowledge_spec = KnowledgeSpec(mode="retrieval", file="knowledge" + "".join(knowledge.suffixes[-1:]),
                                       query_turns=query_turns)
        examples = with_knowledge(examples, Retriever.from_file(knowledge), query_turns)
    try:
        splits = split_examples(examples)
    except ValueError as e:
        raise ValueError(f"{source}: {e}") from None
    sizes = {k: len(v) for k, v in splits.items()}
    spec = SkillSpec(  # checked now; the card's figures are filled in after training
        name=name, description=description or f"Skill trained on {Path(data_label or source).name}", data=[data_label or source],
        knowledge=knowledge_spec, adapter=training, decoding=decoding, splits=sizes,
    )

    temp_name = f"_new_{name}"  # not a valid skill name: trains beside the loaded skills, touching none; never shown
    model = bot.model
    model.add_adapter(temp_name, model.new_config(training.kind, **training.settings))
    try:
        train = augment(splits["train"]) if augment else splits["train"]
        result = train_adapter(model, bot.tokenizer, temp_name, train, splits["valid"], training, progress, show_bar, label=name)
        ppl = perplexity(model, bot.tokenizer, splits["test"], temp_name, training.max_length, training.batch_size)
        ppl_bare = perplexity(model, bot.tokenizer, splits["test"], None, training.max_length, training.batch_size)
        spec.card = {"test_ppl": round(ppl, 3), "test_ppl_backbone": round(ppl_bare, 3),
                     "trainable_params": result.trainable_params, "trainable_fraction": round(result.trainable_fraction, 5),
                     "train_seconds": round(result.seconds, 1), "epochs": result.epochs,
                     "skipped_rows": read.skipped, "trained_examples": len(train), "added": time.strftime("%Y-%m-%d %H:%M:%S")}
        with registry.install(name, replace=replace) as folder:
            model.save_adapter(temp_name, folder)
            spec.save(folder)
            for split, rows in splits.items():
                write_jsonl(rows, folder / f"{split}.jsonl")
            if faq:
                write_faq(examples, folder / knowledge_spec.file)
            elif knowledge is not None:
                shutil.copyfile(knowledge, folder / knowledge_spec.file)
    finally:
        model.remove_adapter(temp_name)
    try:
        bot.load_skill(name)
        copy_f1 = {}
        if choose_boost and len(splits["valid"]) >= MIN_BOOST_CHOICE:
            if progress:
                progress(1.0, f"choosing copy_boost on {len(splits['valid'])} validation examples")
            copy_f1 = choose_copy_boost(bot, name, splits["valid"])
        manager_updated = update_manager(bot, name, splits)
    except BaseException:
        if not replace:  # uninstall the new skill again; a replaced skill's old files are gone by now
            if name in bot.skills:
                bot.unload_skill(name)
            registry.remove(name)
            bot.load_manager()  # the manager as saved, without a half-added class
        raise
    warnings = learning_warnings(sizes["test"], ppl, ppl_bare, len(result.epochs), training, has_knowledge,
                                 [e["valid_ppl"] for e in result.epochs], sizes["valid"])
    routing = held_out_routing(bot, splits["test"]) if manager_updated else {}
    warnings += [w for w in [routing_warning(name, routing)] if w]
    return AddResult(name, registry.path(name), len(examples), read.skipped, read.skipped_lines, sizes, ppl, ppl_bare,
                     result.trainable_fraction, result.seconds, manager_updated, read.skipped_note(), warnings,
                     bot.specs[name].decoding.copy_boost if copy_f1 else None, copy_f1, routing)


def answer_room(bot: AdapterBot, answers: Sequence[str], floor: int) -> int:
    """``max_new_tokens`` for a skill that copies ``answers``: the longest and its end-of-text, at least ``floor``,
    within half the backbone's window (a fix cut mid-sentence reads broken)."""
    longest = max((len(bot.tokenizer.encode(a)) for a in answers), default=0) + 1
    return max(floor, min(longest, bot.model.backbone.config.n_positions // 2))


def choose_copy_boost(bot: AdapterBot, name: str, examples: list[Example]) -> dict[float, float]:
    """Set knowledge skill ``name``'s ``copy_boost`` to the candidate (:data:`COPY_BOOSTS`) whose replies to
    ``examples`` (its validation split) have the best unigram F1, each answered through the bot's own path (the
    lookup, its gate, the adapter); ties go to the larger boost (a fresh phrasing needs the push more than
    a validation question). The choice and the F1s go on the skill's card, saved atomically, and the skill is
    reloaded. Returns F1 by candidate."""
    from .evaluation.knowledge_check import knowledge_check

    spec = bot.specs[name]
    f1 = {}
    for boost in COPY_BOOSTS:
        spec.decoding.copy_boost = boost
        f1[boost] = knowledge_check(bot, name, examples, [])["in_file"]["f1"]
    spec.decoding.copy_boost = max(COPY_BOOSTS, key=lambda b: (round(f1[b], 3), b))
    spec.card["copy_boost_valid_f1"] = {f"{b:g}": round(v, 4) for b, v in f1.items()}
    spec.save(bot.registry.path(name))
    bot.load_skill(name)
    return f1


def update_manager(bot: AdapterBot, name: str, splits: dict[str, list[Example]]) -> bool:
    """Teach an existing manager the new class from the skill's splits; False if none exists.

    Its train contexts, shaped into conversations (after chit-chat openings), join the training
    memory; its valid ones the calibration memory. No other skill's data is read.
    """
    if bot.manager is None:
        return False
    from .manager_training import class_histories

    bot.manager.add_class(name, class_histories(splits["train"], "train"), bot.features, replace=True,
                          calibration=class_histories(splits["valid"], "valid"))
    bot.manager.save(bot.registry.root / MANAGER_DIR)
    return True


def held_out_routing(bot: AdapterBot, test: list[Example]) -> dict[str, int]:
    """Where the manager sends a skill's test contexts, as they stand and after chit-chat (the histories
    ``adapterbot eval`` and the incremental check measure): how many went to each class, most first."""
    from .manager_training import class_histories

    routed = Counter(d.skill or NONE for d in bot.route_batch(class_histories(test, "test")))
    return dict(routed.most_common())


def routing_warning(name: str, routing: dict[str, int]) -> str | None:
    """A warning when fewer than :data:`ROUTED_MIN` of skill ``name``'s test messages are routed to it, saying
    where the others went and what to do; ``None`` otherwise (and without a manager)."""
    total = sum(routing.values())
    if not total or routing.get(name, 0) >= ROUTED_MIN * total:
        return None
    elsewhere = ", ".join(f"{n} to {'the bare backbone (chit-chat)' if c == NONE else c}"
                          for c, n in routing.items() if c != name)
    return (f"the dialogue manager routes only {routing.get(name, 0)} of the skill's {total} held-out test conversations "
            f"to it ({elsewhere}): in Auto mode, messages like those are answered by something else. Add examples of "
            f"more of what users ask, each topic in several phrasings, and add the skill again (--replace, or "
            f"'Replace' in the Skills tab); or "
            f"choose the skill by name (the Routing menu in the Chat tab, or the model `adapterbot:{name}` in the HTTP API)")


def routed_line(name: str, routing: dict[str, int]) -> str:
    """"routes 9 of 38 held-out test conversations to it (24%; each test example alone and after small talk)":
    :func:`held_out_routing`'s figure in words."""
    total = sum(routing.values())
    few = f"; only {total // 2} test examples, too few to trust the share" if total < 2 * MIN_TEST_EXAMPLES else ""
    return (f"routes {routing.get(name, 0)} of {total} held-out test conversations to it "
            f"({routing.get(name, 0) / total:.0%}; each test example alone and after small talk{few})")


def remove_skill(registry: SkillRegistry, name: str) -> None:
    """Uninstall ``name``: its folder and its manager class go; other skills' files stay as they are."""
    registry.remove(name)
    folder = registry.root / MANAGER_DIR
    if (folder / CONFIG_NAME).exists():
        manager = DialogueManager.load(folder)
        if name in manager.skills:
            manager.remove_class(name)
            manager.save(folder)


@dataclass
class ImportResult:
    """A skill installed from a PEFT LoRA (``adapterbot skill import NAME --peft DIR``); no training ran."""

    name: str
    path: Path
    rank: int
    alpha: float
    targets: list[str]
    trainable_fraction: float
    examples: int  # 0 without data
    splits: dict[str, int]
    test_ppl: float | None
    test_ppl_backbone: float | None
    manager_updated: bool
    routing: dict[str, int] = field(default_factory=dict)  # where its test messages go now ({} without data or manager)


def import_peft_skill(bot: AdapterBot, name: str, peft_folder: str | Path, *, data: str | Path | None = None,
                      description: str = "", replace: bool = False, columns: dict | None = None) -> ImportResult:
    """Install the PEFT LoRA in ``peft_folder`` (made for ``bot``'s backbone) as ``lora`` skill ``name``, untrained.

    Every refusal (the name, the folder, the PEFT config and tensors, the data) comes before anything is
    written; the skill folder is installed atomically through the registry. With ``data`` (dialogue
    examples of what the skill does), the data is split and kept as ``add_skill`` keeps it, the test
    perplexities go on the card and the dialogue manager learns the new class; without it, the skill
    can be chosen by name but the manager cannot route to it.
    """
    from .adapter.peft_format import import_peft

    name = validate_skill_name(name)
    registry = bot.registry
    registry.check_installable(name, replace)
    splits: dict[str, list[Example]] = {}
    if data is not None:
        read = read_source(str(data), Path.cwd(), columns)
        try:
            splits = split_examples(read.examples)
        except ValueError as e:
            raise ValueError(f"{data}: {e}") from None
    model = bot.model
    temp_name = f"_new_{name}"
    config = import_peft(model, temp_name, Path(peft_folder))
    try:
        settings = config.settings
        training = AdapterTraining(kind="lora", settings={"rank": settings.rank, "alpha": settings.alpha,
                                                          "targets": list(settings.targets)})
        size = model.adapter_size(temp_name)
        fraction = size / sum(p.numel() for p in model.backbone.parameters())
        ppl = ppl_bare = None
        if splits:
            ppl = perplexity(model, bot.tokenizer, splits["test"], temp_name, training.max_length, training.batch_size)
            ppl_bare = perplexity(model, bot.tokenizer, splits["test"], None, training.max_length, training.batch_size)
        card = {"imported_from": f"PEFT LoRA {Path(peft_folder).resolve()}", "trainable_params": size,
                "trainable_fraction": round(fraction, 5), "added": time.strftime("%Y-%m-%d %H:%M:%S")}
        if ppl is not None:
            card |= {"test_ppl": round(ppl, 3), "test_ppl_backbone": round(ppl_bare, 3)}
        spec = SkillSpec(name=name, description=description or f"LoRA imported from PEFT ({Path(peft_folder).name})",
                         data=[str(data)] if data is not None else [], adapter=training,
                         splits={k: len(v) for k, v in splits.items()}, card=card)
        with registry.install(name, replace=replace) as folder:
            model.save_adapter(temp_name, folder)
            spec.save(folder)
            for split, rows in splits.items():
                write_jsonl(rows, folder / f"{split}.jsonl")
    finally:
        model.remove_adapter(temp_name)
    try:
        bot.load_skill(name)
        manager_updated = update_manager(bot, name, splits) if splits else False
    except BaseException:
        if not replace:
            if name in bot.skills:
                bot.unload_skill(name)
            registry.remove(name)
            bot.load_manager()
        raise
    return ImportResult(name, registry.path(name), settings.rank, settings.alpha, list(settings.targets), fraction,
                        sum(len(v) for v in splits.values()), {k: len(v) for k, v in splits.items()}, ppl, ppl_bare,
                        manager_updated, held_out_routing(bot, splits["test"]) if manager_updated else {})
