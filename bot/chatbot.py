"""``AdapterBot``: the one object a user holds. One turn flows through :meth:`AdapterBot.respond`.

history -> manager decides the skill -> the skill's knowledge -> context formatted ->
generate with that skill's adapter -> :class:`Reply`.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence


from manager import DialogueManager, ManagerConfig
from manager.config import NONE
from manager import storage as manager_storage
from skills import SkillRegistry, SkillSpec, default_skills_dir
from skills.spec import DecodingSpec, SpecError
from skills.first_steps import TROUBLE, FirstSteps
from skills.knowledge import Retriever, content_words, follows_up

from .about import about_reply, asks_about_the_bot, unreadable
from .adapter import AdaptedModel
from .backbone import load_backbone
from .crisis import crisis_reply
from .dialogue import (DialogueError, build_context, context_budget, copy_source, cut_loop, drifts, drop_unsaid,
                       end_at_sentence, stay_on_topic, validate_history)
from .features import BackboneFeatures
from .social import (choice_reply, closing_reply, good_news, greeting_reply, laughs, misfit, only_closing,
                     only_greets, takes_leave, well_being_reply)
from .questions import asks, asks_a_fact, question_part, route_with_questions
from .engine import Engine, Generation, Pending, Request

log = logging.getLogger(__name__)

AUTO = "auto"
MANAGER_DIR = "_manager"
# The bare backbone's open chit-chat: the likeliest of 8 samples (sample-and-rank, DecodingSpec.candidates); its
# greedy reply drifted off the message. Chosen by reading replies and by its cost under load: docs/DESIGN.md, "Open chit-chat".
BARE_DECODING = {"do_sample": True, "temperature": 0.8, "top_p": 0.9, "candidates": 8, "max_new_tokens": 40,
                 "repetition_penalty": 1.0, "no_repeat_ngram_size": 3}
# A generated reply that comes out empty: never a blank bubble.
NO_REPLY = "Sorry, I lost my words there. Could you say that again?"
# Auto mode blends the manager's two best skills when their calibrated scores are within this margin (and
# the top one answers): chosen by `python -m bot.evaluation.blending` (docs/reports/blending), None = off.
AUTO_BLEND_MARGIN: float | None = 1.0
# A knowledge skill whose file answers the message takes a turn routed to a skill without knowledge or to chit-chat when
# its score reaches this: chosen on the eval's validation sets (python -m bot.evaluation.answered_floor).
ANSWERED_FLOOR = 0.1


def top_two_blend(scores: dict[str, float], skills: Sequence[str]) -> tuple[dict[str, float] | None, float]:
    """The two best skills' blend, weighted by their scores normalised to sum to 1, and the gap between
    the scores; ``None`` (and a gap of 1) with fewer than two skills."""
    ranked = sorted(((p, s) for s, p in scores.items() if s in skills), reverse=True)
    if len(ranked) < 2:
        return None, 1.0
    (p1, s1), (p2, s2) = ranked[:2]
    return {s1: p1 / (p1 + p2), s2: p2 / (p1 + p2)}, p1 - p2
DECODING_KEYS = tuple(f.name for f in dataclasses.fields(DecodingSpec))


def _decoding(base: DecodingSpec, overrides: dict) -> DecodingSpec:
    """``base`` with ``overrides`` (None = keep), checked like a skill.yaml's decoding; DialogueError if bad."""
    given = {k: v for k, v in overrides.items() if v is not None}
    unknown = sorted(k for k in given if k not in DECODING_KEYS)
    if unknown:
        raise DialogueError(f"unknown decoding setting(s) {', '.join(unknown)}; use {', '.join(DECODING_KEYS)}")
    try:
        return dataclasses.replace(base, **given)
    except SpecError as e:
        raise DialogueError(f"decoding setting {e.field!r} {e.problem}") from None


@dataclass
class Reply:
    """One answer of the bot.

    Attributes:
        text: the generated reply.
        skill: the skill that answered, or ``None`` for the bare backbone (open chit-chat).
        confidence: the manager's calibrated probability of the class that answered: the skill's,
            or ``scores["none"]`` when the bare backbone answered (also when the top skill's score
            was under the threshold); ``None`` when the skill was forced, no manager is installed, or Auto mode
            answered in writing without routing (thanks or a goodbye alone, another language).
        scores: every class's probability for this turn (``"none"`` included) when the manager routed, else empty.
        knowledge: the passage retrieved (or the static text) for the skill, if any.
        knowledge_used: whether ``knowledge`` went into the context. A retrieved passage that
            does not cover the message (see ``KnowledgeSpec.min_overlap``) is shown but not used,
            and the skill answers without it (a knowledge skill then says it doesn't know).
        blend: the ``{skill: weight}`` mix the reply was generated with, when it was a blend (asked for, or
            Auto mode's blend of its two best skills, :meth:`AdapterBot.auto_blend`); ``skill`` is then the
            chosen (heaviest) skill, whose decoding settings and knowledge the reply used.
    """

    text: str
    skill: str | None
    confidence: float | None = None
    scores: dict[str, float] = field(default_factory=dict)
    knowledge: str | None = None
    knowledge_used: bool = False
    blend: dict[str, float] | None = None

    @property
    def route(self) -> str | None | dict[str, float]:
        """What generation runs this reply's row on: the blend, else the skill (``None``: bare backbone)."""
        return self.blend if self.blend else self.skill


@dataclass
class _Turn:
    """Everything decided before generation starts."""

    reply: Reply
    context: list[int]
    decoding: dict
    copy_source: list[int]
    misfit: Callable[[list[int]], int] | None = None  # a ranked reply keeps a candidate of the lowest
    written: str | None = None  # the reply, written rather than generated (bot.about): nothing to generate
    said: str | None = None  # a skill's reply speaks of no "your ..." this message never named (dialogue.drop_unsaid)
    heard: str | None = None  # chit-chat's conversation: its reply stays on it (dialogue.stay_on_topic)


def _to_chit_chat(decision):
    """``decision`` sent to the bare backbone, with the manager's score for ``none``."""
    return dataclasses.replace(decision, skill=None, probability=decision.scores.get(NONE, 0.0))


class AdapterBot:
    """A frozen backbone, the installed skills' adapters, and the dialogue manager."""

    def __init__(self, model: AdaptedModel, tokenizer, registry: SkillRegistry, manager: DialogueManager | None = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.registry = registry
        self.manager = manager
        self.features = BackboneFeatures(model, tokenizer)
        self.specs: dict[str, SkillSpec] = {}
        self.retrievers: dict[str, Retriever] = {}
        self.first_steps: dict[str, FirstSteps] = {}  # KnowledgeSpec.first_steps_file, by skill
        self.skipped: dict[str, str] = {}
        self.engine = Engine(model, tokenizer)  # every turn's generation, continuously batched with the others
        self.blend_margin = AUTO_BLEND_MARGIN
        self.answered_floor = ANSWERED_FLOOR

    # ---- loading ------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, backbone: str | Path | None = None, skills_dir: str | Path | None = None, *,
                        device: str = "cpu", trust_remote_code: bool = False) -> "AdapterBot":
        """Load a backbone (``None``: the bundled offline one), every installed skill and the manager.

        A skill whose adapter was made for another backbone is skipped with a warning
        (see :attr:`skipped`); the others still load.
        """
        model, tokenizer, name = load_backbone(backbone, device=device, trust_remote_code=trust_remote_code)
        registry = SkillRegistry(Path(skills_dir) if skills_dir is not None else default_skills_dir())
        bot = cls(AdaptedModel(model, name), tokenizer, registry)
        for skill in registry.names():
            try:
                bot.load_skill(skill)
            except Exception as e:  # one broken skill never stops the bot
                bot.skipped[skill] = str(e)
                log.warning("skill %r skipped: %s", skill, e)
        bot.load_manager()
        return bot

    def load_skill(self, name: str) -> None:
        """Load (or reload) one installed skill's spec, adapter and knowledge."""
        spec = self.registry.spec(name)
        retriever = Retriever.from_file(self.registry.knowledge_path(name)) if spec.knowledge.mode == "retrieval" else None
        steps = self.registry.first_steps_path(name)
        first_steps = FirstSteps(steps) if steps is not None else None
        with self.engine.paused():  # between decoding steps: no row sees half a skill
            if name in self.model.skills:
                self.model.remove_adapter(name)
            self.model.load_adapter(name, self.registry.path(name))
            self.specs[name] = spec
            for found, loaded in ((retriever, self.retrievers), (first_steps, self.first_steps)):
                loaded.pop(name, None)
                if found is not None:
                    loaded[name] = found
            self.skipped.pop(name, None)

    def unload_skill(self, name: str) -> None:
        with self.engine.paused():
            self.model.remove_adapter(name)
            self.specs.pop(name, None)
            self.retrievers.pop(name, None)
            self.first_steps.pop(name, None)

    def load_manager(self) -> None:
        """Load the manager saved beside the skills (a class whose skill is not loaded routes to the bare backbone).

        The new features and manager are built first and swapped in together, so a turn routed meanwhile
        uses the old pair whole (or the new one), never a mix.
        """
        folder = self.registry.root / MANAGER_DIR
        manager_storage.recover(folder)
        features, manager = self.features, None
        if (folder / "manager_config.json").exists():
            try:
                recorded = ManagerConfig.load(folder).feature_name
                features = BackboneFeatures.from_name(self.model, self.tokenizer, recorded) or self.features
                manager = DialogueManager.load(folder, feature_fn=features)
            except Exception as e:  # a damaged manager never stops the bot
                log.warning("dialogue manager not loaded: %s", e)
                features = self.features
        self.features, self.manager = features, manager
        unknown = [name for name in self.skills if manager is not None and name not in manager.classes]
        if unknown:  # a `skill add` killed after installing its skill, before the manager learned it
            log.warning("the dialogue manager does not know skill(s) %s, so Auto mode never routes to them; add them "
                        "again (`adapterbot skill add NAME --data FILE --replace`) or retrain it (`adapterbot manager "
                        "train`); they answer when chosen by name", ", ".join(unknown))

    @property
    def skills(self) -> list[str]:
        """Names of the installed, loaded skills."""
        return self.model.skills

    # ---- one turn -----------------------------------------------------------------
    def knowledge(self, skill: str, history: Sequence[str]) -> tuple[str | None, bool]:
        """The knowledge ``skill`` has for the conversation ``history`` (oldest turn first, the user's
        message last): ``(text, used)``, as in :attr:`Reply.knowledge` and :attr:`Reply.knowledge_used`
        (``(None, False)`` for a skill without knowledge). The query is the spec's ``query_turns``
        newest turns; with more than one, a passage whose answer the bot already gave is passed over. A question told
        with an aside (:func:`bot.questions.question_part`) that finds no passage is looked up once more alone."""
        spec = self.specs[skill].knowledge
        if spec.mode == "static":
            return spec.text, True
        if spec.mode == "retrieval":
            history = validate_history(history)
            found = self._lookup(skill, history)
            question = question_part(history[-1])
            if not found.used and question is not None:  # a question told with an aside: also looked up alone
                alone = self._lookup(skill, [*history[:-1], question])
                found = alone if alone.used else found
            return found.text, found.used
        return None, False

    def _lookup(self, skill: str, history: list[str]):
        """The retriever's :class:`~skills.knowledge.Lookup` for ``history`` with ``skill``'s knowledge settings."""
        spec = self.specs[skill].knowledge
        return self.retrievers[skill].lookup_conversation(history, spec.min_overlap, spec.query_turns,
                                                          numbers_must_agree=spec.numbers_must_agree)

    def _routed(self, decision) -> Reply:
        """The reply, still without text, of an Auto turn the manager decided (a skill not loaded: the bare backbone)."""
        chosen = decision.skill if decision.skill in self.specs else None
        return Reply("", chosen, decision.probability, decision.scores, blend=self.auto_blend(chosen, decision.scores))

    def _choose(self, skill: str | None) -> Reply:
        """The reply, still without text, of a turn whose route is given (not Auto with a manager)."""
        if skill == AUTO:
            return Reply("", None)
        if isinstance(skill, Mapping):
            unknown = [name for name in skill if name not in self.specs]
            if unknown or not skill:
                raise ValueError(f"a blend maps installed skills to weights; unknown: {unknown or 'empty blend'}; "
                                 f"installed: {', '.join(self.skills) or 'none'}")
            self.model.plan(skill)  # one kind, a kind that blends, finite weights >= 0: checked before generating
            blend = {name: float(w) for name, w in skill.items()}
            if not any(w > 0 for w in blend.values()):
                raise ValueError(f"a blend needs a skill with a weight above 0, got {blend}")
            return Reply("", max(blend, key=blend.get), blend=blend)
        if skill is not None and (not isinstance(skill, str) or skill not in self.specs):
            raise ValueError(f"unknown skill {skill!r}; installed: {', '.join(self.skills) or 'none'} "
                             f"(or 'auto', or None for the bare backbone)")
        return Reply("", skill)

    def auto_blend(self, chosen: str | None, scores: dict[str, float]) -> dict[str, float] | None:
        """The blend Auto mode answers with instead of ``chosen`` alone (see :data:`AUTO_BLEND_MARGIN`), if any:
        the top two skills, when ``chosen`` is the first, both of one kind that blends, within the margin.

        A skill that answers from a knowledge file is never blended: its reply is copied from a passage, and
        another adapter only disturbs the copy (tech support's fix for "outlook won't send any emails" became
        "Receive tab." blended 0.53/0.47 with empathetic)."""
        if self.blend_margin is None or chosen is None or self.specs[chosen].knowledge.mode == "retrieval":
            return None
        blend, gap = top_two_blend(scores, self.skills)
        if blend is None or chosen not in blend or gap > self.blend_margin:
            return None
        kinds = {self.model.configs[name].kind for name in blend}
        return blend if len(kinds) == 1 and self.model.kind(kinds.pop()).blendable else None

    def _prepare(self, history: list[str], reply: Reply, overrides: dict) -> _Turn:
        """The turn's knowledge, decoding settings and context, once its route is known."""
        base = DecodingSpec(**BARE_DECODING)
        if reply.skill is not None:
            spec = self.specs[reply.skill]
            base = spec.decoding
            reply.knowledge, reply.knowledge_used = self.knowledge(reply.skill, history)
        settings = _decoding(base, overrides)
        decoding = settings.generate_kwargs()
        written = crisis_reply(history)  # whatever the route, never a generated reply (bot.crisis); the whole history
        turns = history[-settings.context_turns:] if settings.context_turns else history  # what the reply reads
        window = self.model.backbone.config.n_positions
        decoding["max_new_tokens"] = min(int(decoding["max_new_tokens"]), window // 2)
        budget = context_budget(self.tokenizer, window, decoding["max_new_tokens"])
        knowledge = reply.knowledge if reply.knowledge_used else None
        message = history[-1]

        heard = " ".join(turns) if reply.skill is None else None

        def candidate_misfit(ids: list[int]) -> int:
            text = self._decoded(ids)  # stray bytes alone read as the empty reply they become
            return misfit(message, text) + (heard is not None and drifts(text, heard))

        if written is None:
            if reply.skill is None:  # chit-chat: the bot itself, thanks and farewells, either-or questions, greetings
                # thanks with more to it ("Thanks, it's been hard. He was 14.") is answered, not welcomed; a farewell
                # with more to it ("alright, appreciate you letting me ramble. later") still gets a goodbye
                closing = closing_reply(message) if only_closing(message) or takes_leave(message) else None
                written = (about_reply(message, {n: spec.description for n, spec in self.specs.items()})
                           or well_being_reply(message) or closing or choice_reply(message) or greeting_reply(message))
            elif not reply.knowledge_used and not reply.blend:
                written = self._unused_reply(reply.skill, history)
        said = message if reply.skill is not None and knowledge is None else None  # not chit-chat's "your weekend?"
        return _Turn(reply, build_context(self.tokenizer, turns, budget, knowledge), decoding,
                     copy_source(self.tokenizer, knowledge), candidate_misfit, written, said, heard)

    def _unused_reply(self, skill: str, history: list[str]) -> str | None:
        """The written reply of knowledge skill ``skill`` when no passage is used (``None``: its adapter answers):
        its ``unused_reply``; its ``after_steps_reply`` to a follow-up on its first steps; or, when the message follows
        none of its own replies, the general first steps of the message's topic (``first_steps_file``) or else its
        ``new_problem_reply``."""
        spec = self.specs[skill].knowledge
        if spec.unused_reply is not None or spec.new_problem_reply is None:
            return spec.unused_reply
        steps = self.first_steps.get(skill)
        if (spec.after_steps_reply is not None and len(history) >= 3 and steps is not None
                and steps.says_steps(history[-2].strip()) and follows_up(history[-1])):
            return spec.after_steps_reply
        asked = any(self._asked_back_by(skill, turn) for turn in history[-2::-2][:2])  # the bot's last two turns
        if asked or self.retrievers[skill].follows_an_answer(history):
            return None
        return (steps.reply(history[-1]) if steps is not None else None) or spec.new_problem_reply

    def _asked_back_by(self, skill: str, turn: str) -> bool:
        """Whether the bot's ``turn`` is knowledge skill ``skill``'s written question back (``new_problem_reply``) or
        one of its first steps (``first_steps_file``)."""
        steps = self.first_steps.get(skill)
        said = turn.strip()
        return said == self.specs[skill].knowledge.new_problem_reply or (steps is not None and steps.says_steps(said))

    def _submit(self, history: Sequence[str], skill: str | None, overrides: dict,
                seed: int | None) -> tuple[list[_Turn], Generation]:
        """Start one turn in the engine. The list gets the :class:`_Turn` once the route is known: at once for a
        given route; for Auto, when the engine admits the turn and routes it in one batch with the others."""
        history = validate_history(history)
        turns: list[_Turn] = []

        def request(reply: Reply) -> Request | None:
            turns.append(self._prepare(history, reply, overrides))
            turn = turns[0]
            if turn.written is not None:
                return None  # nothing to generate: the generation ends with no tokens
            return Request(turn.context, turn.reply.route, turn.decoding, seed, turn.copy_source, turn.misfit)

        if skill == AUTO and (unreadable(history[-1]) or only_closing(history[-1]) or crisis_reply(history)
                              or asks_about_the_bot(history[-1]) or only_greets(history[-1])
                              or well_being_reply(history[-1])):
            skill = None  # nothing for the manager to read or a skill to answer: a bare turn, answered in writing
        if skill == AUTO and self.manager is not None:
            return turns, self.engine.submit(Pending(history, self.route_batch, lambda d: request(self._routed(d))))
        given = request(self._choose(skill))
        return turns, self.engine.submit(given) if given is not None else Generation.finished()

    def route_batch(self, histories: list[list[str]]) -> list:
        """Auto mode's decisions for ``histories``: the manager's, a question told with an aside routed by the question
        alone where it goes to a knowledge skill (:mod:`bot.questions`), chit-chat for a skill of sympathy given a
        message that laughs (:meth:`_laughing`), a knowledge skill whose file answers the message over a route that
        answers from none (:meth:`_answered`), a follow-up kept on the skill that asked back
        (:meth:`_asked_back`), and chit-chat for a skill with first steps that has nothing to go on
        (:meth:`_no_problem`) or a skill that could only say it doesn't know to a message that asks nothing
        (:meth:`_nothing_asked`). Needs a manager."""
        knowledge = [name for name, spec in self.specs.items() if spec.knowledge.mode == "retrieval"]
        decisions = route_with_questions(self.manager.route_batch, histories, knowledge,
                                         self._answers)
        out = []
        for history, decision in zip(histories, decisions):
            decision = self._answered(history, self._laughing(history, decision), knowledge)
            out.append(self._nothing_asked(history, self._no_problem(history, self._asked_back(history, decision))))
        return out

    def _laughing(self, history: list[str], decision):
        """``decision``, or chit-chat when it is a skill of sympathy (``SkillSpec.sympathy``) and the message laughs or
        celebrates (:func:`bot.social.laughs`): "today i pass my B2 english exam!! ... 🎉🎉" went to the empathetic skill
        at 0.98 and got "Oh no, that sounds really hard" (session 20's trial); or tells good news and nothing bad
        (:func:`bot.social.good_news`: "finally beat my dad at chess after 20 years of trying", session 22). A trouble
        told laughing may still go to first steps (:meth:`_answered`)."""
        spec = self.specs.get(decision.skill)
        sympathy = spec is not None and spec.sympathy
        return _to_chit_chat(decision) if sympathy and (laughs(history[-1]) or good_news(history[-1])) else decision

    def _nothing_asked(self, history: list[str], decision):
        """``decision``, or another route when it is a knowledge skill whose reply without a passage is its written "I
        don't know" (``unused_reply``: trivia), the message asks nothing (:func:`bot.questions.asks`) and no passage
        passes the gate: a skill with first steps whose topic the message names by a device or app
        (:meth:`~skills.first_steps.FirstSteps.names_topic`) at ``answered_floor`` or more ("lg tv has a pinkish tint
        on the left side of the screen" went to trivia at 0.66, tech support 0.33, session 21's trial), else chit-chat
        ("ngl this new boba place by my work is elite..." went to trivia at 0.72 and got "I'm not sure, I don't know
        that one", session 20's trial)."""
        spec = self.specs.get(decision.skill)
        if spec is None or spec.knowledge.unused_reply is None:  # an unused_reply is only for retrieval (KnowledgeSpec)
            return decision
        if asks(history[-1]) or self.knowledge(decision.skill, history)[1]:
            return decision
        others = sorted(((decision.scores.get(k, 0.0), k) for k in self.first_steps if k != decision.skill), reverse=True)
        for p, name in others:
            if p >= self.answered_floor and self.first_steps[name].names_topic(history[-1]):
                return dataclasses.replace(decision, skill=name, probability=p)
        return _to_chit_chat(decision)

    def _no_problem(self, history: list[str], decision):
        """``decision``, or chit-chat when it is a skill with first steps (tech support) that has nothing to go on: no
        passage, no first-steps topic named (:meth:`~skills.first_steps.FirstSteps.names_topic`: "do you have a favorite
        word?" names no Office), no word of trouble (:data:`skills.first_steps.TROUBLE`), and no exchange of its own to
        follow; or a message that takes leave with no passage of its own, whatever its words. "lol my cat just knocked
        my coffee over" went to tech support at 0.53 and was asked which device it was (a new user, session 19)."""
        steps = self.first_steps.get(decision.skill)
        if steps is None or follows_up(history[-1]):
            return decision
        if takes_leave(history[-1]) and not self._answers(decision.skill, history):
            return _to_chit_chat(decision)  # "ok signing off before my battery dies. take care robot friend 🔋" (s22b)
        if TROUBLE.search(history[-1]) or steps.names_topic(history[-1]):
            return decision
        if any(self._asked_back_by(decision.skill, turn) for turn in history[-2::-2][:2]):
            return decision
        if self.retrievers[decision.skill].follows_an_answer(history) or self.knowledge(decision.skill, history)[1]:
            return decision
        return _to_chit_chat(decision)

    def _asked_back(self, history: list[str], decision):
        """``decision``, or the knowledge skill whose written question back or first steps is the bot's last turn
        (``new_problem_reply``, ``first_steps_file``), when the message reads as a follow-up on it
        (:func:`skills.knowledge.follows_up`): "tried chrome and firefox, cleared the cache, even made a copy of the
        design. still hangs at 99" after tech support's question back went to the empathetic skill (session 17's
        trial). Those replies are written, so no held-out set of the eval holds them; after a fix copied from the
        file the manager decides alone (a rule there cost chit-chat after a skill, docs/DESIGN.md)."""
        if len(history) < 3 or not follows_up(history[-1]):
            return decision
        for name in self.specs:
            if name != decision.skill and self._asked_back_by(name, history[-2]):
                return dataclasses.replace(decision, skill=name, probability=decision.scores.get(name, 0.0))
        return decision

    def _answered(self, history: list[str], decision, knowledge: list[str]):
        """``decision``, or a knowledge skill whose file answers ``history`` (a passage passes its gate) when the
        decision's route answers from no file, and its score reaches ``answered_floor`` (:data:`ANSWERED_FLOOR`; any
        score for a fact asked of a skill that only answers from its file, :meth:`_asks_its_file`): over
        another knowledge skill whose file has no passage for it ("who painted girl with a pearl earring? theres a
        poster of it at my dentist..." went to tech support at 0.48, trivia 0.46, and got its question back; a FAQ
        skill just added, "how do i keep birds off my berries", to tech support at 0.85, the FAQ at 0.15), over a skill
        without knowledge or chit-chat ("so my airpods, the left one just wont connect anymore, right one works fine"
        went to chit-chat; docs/DESIGN.md). Over chit-chat, a skill's first steps answer too when the message tells of
        something not working in one of their topics (:meth:`skills.first_steps.FirstSteps.fits_trouble`: "xbox party
        chat: ... they cant hear me" went to chit-chat at 0.69); over a skill without knowledge, when it names the
        topic's device or app, not only an everyday word (:meth:`~skills.first_steps.FirstSteps.names_topic`: "tesla app
        keeps saying 'waking vehicle'... its -10 out here" went to the empathetic skill at 0.66, tech support 0.14, but
        "cant hear anything in my right ear" is no sound setting)."""
        if decision.skill in knowledge and self._answers(decision.skill, history):
            return decision
        for p, name in sorted(((decision.scores.get(k, 0.0), k) for k in knowledge if k != decision.skill), reverse=True):
            floor = p >= self.answered_floor
            if not floor and not self._asks_its_file(name, history[-1]):
                continue  # too unlikely a route: no lookup
            steps = floor and decision.skill not in knowledge and self._steps_fit(name, history,
                                                                                 everyday=decision.skill is None)
            if steps or self._answers(name, history):
                return dataclasses.replace(decision, skill=name, probability=p)
        return decision

    def _asks_its_file(self, skill: str, message: str) -> bool:
        """Whether ``message`` asks a fact (:func:`bot.questions.asks_a_fact`) of knowledge skill ``skill``, which only
        answers from its file (``unused_reply``: trivia): its file answering takes the turn under ``answered_floor``.
        "where did eminem grow up?? my roommate says st louis..." went to the empathetic skill, trivia 0.02 (session
        20's trial); questions to the bot ("who made you?") stay out."""
        return self.specs[skill].knowledge.unused_reply is not None and asks_a_fact(message)

    def _answers(self, skill: str, history: list[str]) -> bool:
        """Whether knowledge skill ``skill``'s file answers the newest message, for routing: a passage passes its gate,
        and after earlier turns it shares a word with the message, or the message follows up. "ugh fine. who painted
        the mona lisa?" after a connection's fix found a router's passage through the earlier turns, and tech support
        answered "Great news, glad it's stable again!" (session 21)."""
        passage, used = self.knowledge(skill, history)
        if not used or len(history) == 1 or follows_up(history[-1]):
            return used
        return bool(content_words(history[-1]) & content_words(passage or ""))

    def _steps_fit(self, skill: str, history: list[str], *, everyday: bool) -> bool:
        """Whether ``skill``'s first steps fit the message's trouble (never for a follow-up on the bot's last turn, but
        a first message follows none: "...keeps saying 'connection to the PS5 was lost'... already turned off the rest
        mode power saving stuff" went to the empathetic skill, session 22's trial); ``everyday=False``: only where the
        message names a topic by more than an everyday word."""
        steps = self.first_steps.get(skill)
        message = history[-1]
        if steps is None or (len(history) > 1 and follows_up(message)) or not steps.fits_trouble(message):
            return False
        return everyday or steps.names_topic(message)

    def manager_scores(self, history: Sequence[str]) -> dict[str, float]:
        """Auto mode's scores for ``history`` (:meth:`route_batch`; ``{}`` without a manager), routed in the engine
        in one batch with the turns it admits next."""
        if self.manager is None:
            return {}
        decisions: list = []
        self.engine.submit(Pending(validate_history(history), self.route_batch, decisions.append)).result()
        return dict(decisions[0].scores)

    def respond(self, history: Sequence[str], skill: str | None = AUTO, *, seed: int | None = None, **decoding) -> Reply:
        """Answer the last message of ``history`` (oldest turn first).

        Args:
            history: the conversation so far; the last entry is the user's new message (a plain string is a
                one-message conversation).
            skill: ``"auto"`` (the manager decides), an installed skill's name (forced),
                ``None`` (the bare backbone, open chit-chat), or a blend ``{"empathetic": 0.7, "trivia": 0.3}``
                of skills of one kind that blends (bottleneck, houlsby, lora).
            seed: seed of the reply's own random generator when sampling: the same seed gives the same
                reply, alone or batched with other turns (``None``: a fresh random one).
            **decoding: overrides of the skill's decoding settings (``temperature``, ``top_p``,
                ``max_new_tokens``, ``repetition_penalty``, ``do_sample``); ``None`` values are ignored.

        The turn runs in the shared :class:`~bot.engine.Engine`: concurrent turns decode together.
        """
        turns, generation = self._submit(history, skill, decoding, seed)
        ids = generation.result()
        turn = turns[0]
        turn.reply.text = self._text(ids, turn)
        return turn.reply

    def _text(self, ids: list[int], turn: _Turn) -> str:
        """The turn's reply: its written one, else its generated ``ids`` finished (:meth:`_finish`), a skill's without
        sentences about something of the user's the message never named (:func:`~bot.dialogue.drop_unsaid`)."""
        if turn.written is not None:
            return turn.written
        text = self._finish(ids, turn.decoding, turn.reply.knowledge if turn.reply.knowledge_used else None)
        if turn.heard is not None:
            return stay_on_topic(text, turn.heard)
        return text if turn.said is None else drop_unsaid(text, turn.said)

    def _decoded(self, ids: list[int]) -> str:
        """``ids`` as text, without the U+FFFD of bytes that make no whole character: a byte-level tokenizer's reply
        may stop inside one (a character still streaming waits for its rest), or sample stray bytes ("😂😂" got "�")."""
        return self.tokenizer.decode(ids, skip_special_tokens=True).replace("\ufffd", "").strip()

    def _finish(self, ids: list[int], decoding: dict, knowledge: str | None = None) -> str:
        """The reply's text, without a loop it fell into that the ``knowledge`` it used does not hold
        (:func:`~bot.dialogue.cut_loop`); one that ran out of ``max_new_tokens`` ends at its last full sentence, and
        one with no text at all (end-of-text first, or bytes of no whole character) says so (:data:`NO_REPLY`)."""
        text = cut_loop(self._decoded(ids), knowledge or "")
        text = end_at_sentence(text) if len(ids) >= decoding["max_new_tokens"] else text
        return text or NO_REPLY

    def stream(self, history: Sequence[str], skill: str | None = AUTO, *, seed: int | None = None,
               **decoding) -> Iterator[Reply]:
        """Like :meth:`respond`, yielding the reply as it grows, token by token: each yield is its own
        snapshot (a new :class:`Reply`), and the last one is complete."""
        turns, generation = self._submit(history, skill, decoding, seed)
        tokens: list[int] = []
        shown = ""
        try:
            for token in generation:
                tokens.append(token)
                text = self._decoded(tokens)
                if text != shown:
                    shown = text
                    yield dataclasses.replace(turns[0].reply, text=shown)
        finally:  # the caller stopped reading (closed the stream): the engine drops the row at its next step
            generation.cancel()
        turn = turns[0]
        turn.reply.text = self._text(tokens, turn)
        yield turn.reply

    def respond_batch(self, histories: Sequence[Sequence[str]], skills: Sequence[str | None], **decoding) -> list[str]:
        """Replies for many conversations at once, each row on its own skill with its own decoding settings
        (its skill's, plus ``decoding``'s overrides), decoded together in the engine."""
        if len(histories) != len(skills):
            raise DialogueError(f"respond_batch got {len(histories)} histories but {len(skills)} skills")
        if not histories:
            return []
        started = [self._submit(h, s, decoding, None) for h, s in zip(histories, skills)]
        return [self._text(g.result(), turns[0]) for turns, g in started]


__all__ = ["AdapterBot", "Reply", "DialogueError", "AUTO"]
