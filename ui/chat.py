"""The Chat tab's logic: routing modes, decoding settings, and one turn streamed from ``AdapterBot.stream``.

Everything here is plain Python over :class:`bot.AdapterBot` except :func:`make_chat_handler`,
whose generator is the Gradio event behind the ``/chat`` endpoint.

One bot turn is shown as two assistant messages, grouped in one bubble:

1. a collapsible "thought" whose title is the label (``"empathetic · 0.93"``,
   ``"chit-chat (bare backbone) · picked by hand"``, or, when no skill cleared the manager's
   threshold, ``"chit-chat (bare backbone) · top skill empathetic 0.74 is under the threshold
   0.80"``) and whose body holds how the turn was routed, the decoding settings used and, for a
   skill that retrieves or carries knowledge, the passage (and whether it went into the context);
2. the reply itself, streamed token by token.

Refusals (an empty message, one over :data:`MAX_MESSAGE_CHARS`, an unknown routing mode, a bad
decoding setting) get a line that names the limit or the bad value, and change nothing. On the
page, the chat event's validator (:func:`make_chat_validator`) shows it on the input at fault and
the message stays in the box to fix; a ``gradio_client`` caller of ``/chat`` gets it raised as
``ValidationError``. :func:`make_respond_handler` is the documented API endpoint ``/respond``:
one turn, no page state, named result fields (:class:`TurnResult`); it refuses with ``gr.Error``,
which the client raises as ``AppError``.

Decoding rule: a control the user moves overrides the skill's setting (in every mode) until
the routing mode changes or "Reset" is pressed; every control left alone follows the answering
skill's own ``DecodingSpec`` (the bare backbone's built-in settings for chit-chat). The page
keeps the moved controls in a hidden JSON value, which is also how an API client passes them:
``{"temperature": 0.9, "do_sample": true}``, or ``{}`` for the skill's own settings.
"""
from __future__ import annotations

import inspect
import logging
import math
import time
from typing import Any, Callable, Iterator, TypedDict

import gradio as gr

from bot.chatbot import AUTO, BARE_DECODING, AdapterBot, Reply
from bot.errors import one_line
from skills.spec import DecodingSpec

# A streamed reply is sent to the page at most this often: each update carries the whole conversation, and with
# many sessions on a small CPU, per-token updates cost the server more than the generation they show.
STREAM_EVERY_S = 0.1
log = logging.getLogger(__name__)

AUTO_MODE = "auto"
BARE_MODE = "bare"
AUTO_LABEL = "Auto (dialogue manager)"
BARE_LABEL = "Bare backbone (chit-chat)"
CHITCHAT = "chit-chat (bare backbone)"
DECODING_KEYS = ("do_sample", "temperature", "top_p", "max_new_tokens", "repetition_penalty")
MAX_MESSAGE_CHARS = 4000  # a message, and each earlier turn sent to /respond
MAX_HISTORY_TURNS = 200  # earlier turns /respond accepts (only the newest fit the backbone's window anyway)
MAX_NEW_TOKENS = 256
NO_KNOWLEDGE = "_The last reply used no knowledge passage (only skills that retrieve or carry knowledge use one)._"


# ---- routing modes ---------------------------------------------------------------------------


def mode_choices(bot: AdapterBot) -> list[tuple[str, str]]:
    """Dropdown choices as (label, value): Auto, every loaded skill, the bare backbone."""
    return [(AUTO_LABEL, AUTO_MODE), *((name, name) for name in bot.skills), (BARE_LABEL, BARE_MODE)]


def parse_mode(mode: str | None, bot: AdapterBot) -> str | None:
    """The ``skill`` argument of ``bot.stream`` for a routing mode (a dropdown value or label).

    ``"auto"`` -> the manager decides; ``"bare"`` (or ``"none"``, or the bare label) -> ``None``;
    a loaded skill's name -> that skill. Anything else raises ValueError with a readable message.
    """
    value = (mode or AUTO_MODE).strip()
    if value.lower() in (AUTO_MODE, "auto (dialogue manager)") or value == AUTO_LABEL:
        return AUTO
    if value.lower() in (BARE_MODE, "none", "chit-chat") or value in (BARE_LABEL, CHITCHAT):
        return None
    if value in bot.skills:
        return value
    installed = ", ".join(bot.skills) or "none"
    raise ValueError(f"Unknown routing mode {value!r}: no skill of that name is installed. "
                     f"Use 'auto', 'bare' or an installed skill ({installed}).")


def mode_info(bot: AdapterBot, mode: str | None) -> str:
    """One line under the routing menu saying what the chosen mode does."""
    try:
        skill = parse_mode(mode, bot)
    except ValueError as e:
        return f"**Note:** {e}"
    if skill == AUTO:
        if bot.manager is None:
            return "No dialogue manager is installed, so Auto answers with the bare backbone."
        return "The dialogue manager picks a skill (or plain chit-chat) for every message."
    if skill is None:
        return "Every message is answered by the frozen backbone alone, with no adapter."
    spec = bot.specs[skill]
    extra = {"retrieval": " · retrieves a knowledge passage", "static": " · carries fixed knowledge"}.get(spec.knowledge.mode, "")
    return f"**{skill}**: {spec.description or 'no description'}{extra}"


# ---- decoding ---------------------------------------------------------------------------------


def decoding_defaults(bot: AdapterBot, skill: str | None) -> dict[str, Any]:
    """The five decoding controls' values for ``skill`` (``AUTO``: the generic defaults; ``None``: bare), and its
    sample-and-rank ``candidates`` (no control: shown in a turn's details)."""
    base = DecodingSpec()
    if skill == AUTO:
        spec = base
    elif skill is None:
        spec = DecodingSpec(**{k: v for k, v in BARE_DECODING.items() if k in DecodingSpec.__dataclass_fields__})
    else:
        spec = bot.specs[skill].decoding
    return {k: getattr(spec, k) for k in (*DECODING_KEYS, "candidates")}


def clean_overrides(raw: Any) -> dict[str, Any]:
    """Checked decoding overrides from the page or an API client (unknown keys and ``None`` dropped).

    Raises ValueError naming the bad field.
    """
    if raw in (None, "", []):
        return {}
    if not isinstance(raw, dict):
        raise ValueError("Decoding overrides must be a JSON object such as {\"temperature\": 0.9}.")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in DECODING_KEYS or value is None:
            continue
        if key == "do_sample":
            if not isinstance(value, bool):
                raise ValueError("do_sample must be true or false.")
            out[key] = value
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{key} must be a number, got {value!r}.")
        if key == "max_new_tokens":
            if not 1 <= value <= MAX_NEW_TOKENS:
                raise ValueError(f"max_new_tokens must be between 1 and {MAX_NEW_TOKENS}, got {value}.")
            out[key] = int(value)
        elif key == "top_p":
            if not 0 < value <= 1:
                raise ValueError(f"top_p must be in (0, 1], got {value}.")
            out[key] = float(value)
        else:
            if value <= 0:
                raise ValueError(f"{key} must be above 0, got {value}.")
            out[key] = float(value)
    return out


# ---- input checks -----------------------------------------------------------------------------


def check_message(message: str | None) -> str:
    """The message to send, stripped; ValueError naming the limit for an empty or too long one."""
    text = (message or "").strip()
    if not text:
        raise ValueError(f"The message is empty: type a message of up to {MAX_MESSAGE_CHARS:,} characters.")
    if len(text) > MAX_MESSAGE_CHARS:
        raise ValueError(f"The message has {len(text):,} characters, over the limit of {MAX_MESSAGE_CHARS:,}; "
                         "shorten it and send it again.")
    return text


def check_history(history: Any) -> list[str]:
    """The earlier turns sent to ``/respond`` (oldest first); ValueError naming the limit or the bad turn."""
    if history in (None, ""):
        return []
    if not isinstance(history, list):
        raise ValueError(f"history must be a list of turns (strings, oldest first), got {type(history).__name__}.")
    if len(history) > MAX_HISTORY_TURNS:
        raise ValueError(f"history has {len(history):,} turns, over the limit of {MAX_HISTORY_TURNS}; send the newest only.")
    for i, turn in enumerate(history):
        if not isinstance(turn, str):
            raise ValueError(f"history[{i}] must be a string, got {type(turn).__name__}.")
        if len(turn) > MAX_MESSAGE_CHARS:
            raise ValueError(f"history[{i}] has {len(turn):,} characters, over the limit of {MAX_MESSAGE_CHARS:,}.")
    return list(history)


def refusal(e: ValueError) -> gr.Error:
    """The ``gr.Error`` that refuses a turn: shown on the page, raised by an API client."""
    return gr.Error(one_line(e), title="Message not sent", print_exception=False)


def describe_decoding(settings: dict[str, Any]) -> str:
    sampling = (f"sampling (temperature {settings['temperature']:.2f}, top-p {settings['top_p']:.2f})"
                if settings["do_sample"] else "greedy")
    if settings["do_sample"] and settings.get("candidates", 1) > 1:
        sampling += f", the likeliest of {settings['candidates']} replies"
    return f"{sampling} · at most {int(settings['max_new_tokens'])} new tokens · repetition penalty {settings['repetition_penalty']:.2f}"


# ---- labels -----------------------------------------------------------------------------------


def manager_threshold(bot: AdapterBot) -> float | None:
    """The probability a skill must reach for the manager to choose it (``None`` without a manager)."""
    return bot.manager.config.threshold if bot.manager is not None else None


def under_threshold(reply: Reply, threshold: float | None) -> tuple[str, float] | None:
    """``(skill, score)`` of the manager's top class when it was a skill under ``threshold``, so the
    bare backbone answered instead; ``None`` otherwise (a skill answered, or chit-chat itself won)."""
    if reply.skill is not None or threshold is None or not reply.scores:
        return None
    top, score = max(reply.scores.items(), key=lambda kv: kv[1])
    return None if top == "none" else (top, score)


def _apart(score: float, threshold: float) -> tuple[str, str]:
    """Both figures with 2 decimals, or more where 2 would round the threshold (0.995 is not 1.00)
    or print a score under it as equal to it."""
    digits = 2
    while digits < 6 and (round(threshold, digits) != threshold or f"{score:.{digits}f}" == f"{threshold:.{digits}f}"):
        digits += 1
    return f"{score:.{digits}f}", f"{threshold:.{digits}f}"


def skill_label(reply: Reply, forced: bool, threshold: float | None) -> str:
    """``"empathetic · 0.93"``, ``"chit-chat (bare backbone) · picked by hand"``,
    ``"chit-chat (bare backbone) · top skill empathetic 0.74 is under the threshold 0.80"``, ...

    ``threshold``: the manager's (:func:`manager_threshold`), ``None`` when no manager is installed.
    """
    who = reply.skill or CHITCHAT
    if forced:
        return f"{who} · picked by hand"
    if reply.confidence is None:
        return f"{who} · no manager installed" if threshold is None else who
    missed = under_threshold(reply, threshold)
    if missed is not None:
        score, bar = _apart(missed[1], threshold)
        return f"{CHITCHAT} · top skill {missed[0]} {score} is under the threshold {bar}"
    return f"{who} · {reply.confidence:.2f}"


def display_scores(scores: dict[str, float]) -> dict[str, float]:
    """The manager's scores with its ``none`` class shown as chit-chat."""
    return {(CHITCHAT if k == "none" else k): float(v) for k, v in scores.items()}


def _quote(text: str) -> str:
    return "> " + text.replace("\n", "\n> ")


def passage_markdown(reply: Reply) -> str:
    """The passage of a knowledge skill's turn, saying whether it went into the context ("" if none)."""
    if not reply.knowledge:
        return ""
    if reply.knowledge_used:
        return f"**{reply.skill}** grounded its reply on:\n\n" + _quote(reply.knowledge)
    return (f"**{reply.skill}** retrieved this passage but did not use it (it does not cover the message), "
            "so it answered without knowledge:\n\n" + _quote(reply.knowledge))


def details_markdown(reply: Reply, forced: bool, settings: dict[str, Any], threshold: float | None) -> str:
    """The body of a turn's label thought: how it was routed, the decoding used, the passage."""
    missed = under_threshold(reply, threshold) if not forced else None
    if forced:
        how = "Picked by hand in the routing menu."
    elif reply.confidence is None:
        how = ("No dialogue manager is installed: the bare backbone answered." if threshold is None
               else "Not routed (a message without words, not in English, or only thanks or goodbye): the bare backbone answered.")
    else:
        top = sorted(display_scores(reply.scores).items(), key=lambda kv: -kv[1])[:3]
        scores = "Top scores: " + ", ".join(f"{k} {v:.2f}" for k, v in top) + "."
        if missed is not None:
            score, bar = _apart(missed[1], threshold)
            how = (f"No skill cleared the dialogue manager's threshold of {bar}: the top skill, **{missed[0]}**, "
                   f"scored {score}, so the bare backbone answered (chit-chat's own score: {reply.confidence:.2f}). {scores}")
        else:
            how = f"Routed by the dialogue manager (confidence {reply.confidence:.2f}, threshold {threshold:.2f}). {scores}"
    if reply.blend:
        mix = " + ".join(f"{name} {weight:.2f}" for name, weight in sorted(reply.blend.items(), key=lambda kv: -kv[1]))
        how += f" Answered with a blend of adapters: {mix}."
    parts = [how, f"Decoding: {describe_decoding(settings)}."]
    if reply.knowledge:
        parts.append(passage_markdown(reply))
    return "\n\n".join(parts)


def knowledge_markdown(reply: Reply) -> str:
    return passage_markdown(reply) or NO_KNOWLEDGE


# ---- conversation state -----------------------------------------------------------------------


def new_conversation() -> dict[str, list]:
    """Per-session state: ``turns`` (plain text, oldest first, as ``bot.stream`` reads them) and
    ``messages`` (what the Chatbot shows)."""
    return {"turns": [], "messages": []}


def bot_messages(reply: Reply | None, label: str, details: str, done: bool, seconds: float | None = None) -> list[dict]:
    """The two assistant messages of one turn (label thought, then the reply text)."""
    meta: dict[str, Any] = {"title": label, "status": "done" if done else "pending"}
    if seconds is not None:
        meta["duration"] = round(seconds, 2)
    text = reply.text if reply is not None else ""
    if done and not text:
        text = "_(the model produced no text for this turn)_"
    return [{"role": "assistant", "content": details, "metadata": meta}, {"role": "assistant", "content": text}]


def manager_opinion(bot: AdapterBot, history: list[str]) -> dict[str, float]:
    """The manager's scores for a turn whose skill was picked by hand ({} without a manager, or on failure), routed
    in the engine with the turns it admits next."""
    try:
        return bot.manager_scores(history)
    except Exception:  # only informative: never let it stop the reply
        log.warning("manager scores for a hand-picked turn failed", exc_info=True)
        return {}


# ---- the chat event ---------------------------------------------------------------------------


def make_chat_validator(bot: AdapterBot) -> Callable[..., tuple]:
    """The chat event's validator: Gradio runs it before the turn is queued and, on a refusal, shows
    each message on its input (the message box, the routing menu) on the page, while an API client
    raises ``ValidationError`` naming the parameter and the message."""

    def verdict(check: Callable[[Any], Any], value: Any) -> dict:
        try:
            check(value)
        except ValueError as e:
            return gr.validate(False, one_line(e))
        return gr.validate(True, "")

    def validate(message: str | None, mode: str | None, overrides: Any, conversation: Any) -> tuple:
        return (verdict(check_message, message), verdict(lambda m: parse_mode(m, bot), mode),
                verdict(clean_overrides, overrides), gr.validate(True, ""))

    return validate


def make_chat_handler(bot: AdapterBot) -> Callable[..., Iterator[tuple]]:
    """The page's chat event (``/chat``, undocumented: the page's own outputs; API users call
    ``/respond``): ``(message, mode, overrides, conversation)`` -> ``(textbox, chatbot, conversation)``,
    yielded as the reply grows. The side panel (scores, knowledge, decoding controls) follows once the
    turn is done, from :func:`make_panel_handler` (``/chat_panel``).

    Its validator (:func:`make_chat_validator`) refuses bad input before the turn is queued; the
    same checks here give the turn its values and refuse with ``gr.Error`` should the input have
    changed meaning since (a skill removed meanwhile). A turn that fails once generation has
    begun first restores the conversation shown.
    """

    def unchanged(message: str, conversation: dict) -> tuple:
        return message, conversation["messages"], conversation

    def chat(message: str | None, mode: str | None, overrides: Any, conversation: dict | None) -> Iterator[tuple]:
        conversation = conversation if isinstance(conversation, dict) and "turns" in conversation else new_conversation()
        try:
            text = check_message(message)
            skill = parse_mode(mode, bot)
            moved = clean_overrides(overrides)
        except ValueError as e:
            raise refusal(e) from None

        forced = skill != AUTO
        threshold = manager_threshold(bot)
        history = [*conversation["turns"], text]
        before = [*conversation["messages"], {"role": "user", "content": text}]
        start = time.perf_counter()
        first = ("Routing…", "The dialogue manager is choosing a skill…") if not forced else \
            (f"{skill or CHITCHAT} · picked by hand", "Generating…")
        # Only the conversation streams: Gradio rebuilds every component a yield leaves unchanged (gr.skip()).
        yield "", before + bot_messages(None, *first, done=False), gr.skip()

        opinion = manager_opinion(bot, history) if forced else None
        reply: Reply | None = None
        settings: dict[str, Any] = {}
        label = details = ""
        shown_at = 0.0
        try:
            for reply in bot.stream(history, skill=skill, **moved):
                if not label:  # routing is decided before the first token
                    settings = {**decoding_defaults(bot, reply.skill), **moved}
                    label = skill_label(reply, forced, threshold)
                    details = details_markdown(reply, forced, settings, threshold)
                elif time.perf_counter() - shown_at < STREAM_EVERY_S:
                    continue  # the first text goes out at once; later text at most every STREAM_EVERY_S (the final below)
                shown_at = time.perf_counter()
                yield "", before + bot_messages(reply, label, details, done=False), gr.skip()
        except ValueError as e:  # e.g. a skill removed from another tab while this page still offered it
            log.warning("chat turn refused: %s", e)
            yield unchanged(message or "", conversation)
            raise refusal(e) from None
        except Exception:
            log.exception("chat turn failed")
            yield unchanged(message or "", conversation)
            raise gr.Error("Generating the reply failed; the server log has the details. Please try again.",
                           title="No reply", print_exception=False) from None
        if reply is None:  # cannot happen with AdapterBot.stream, which always yields the final reply
            yield unchanged(message or "", conversation)
            raise gr.Error("The bot returned no reply; please try again.", title="No reply", print_exception=False)

        messages = before + bot_messages(reply, label, details, done=True, seconds=time.perf_counter() - start)
        scores = (display_scores(reply.scores), "Skill scores · last turn") if reply.scores else \
            (display_scores(opinion), "Manager's scores · skill picked by hand") if opinion else \
            (None, "Skill scores · no manager installed")
        knowledge_title = f"Knowledge used · {reply.skill}" if reply.knowledge_used else \
            f"Knowledge retrieved, not used · {reply.skill}" if reply.knowledge else "Knowledge used"
        panel = {"scores": scores, "knowledge": knowledge_markdown(reply), "knowledge_title": knowledge_title,
                 "knowledge_open": bool(reply.knowledge), "controls": {k: settings[k] for k in DECODING_KEYS if k not in moved}}
        yield "", messages, {"turns": [*history, reply.text], "messages": messages, "panel": panel}

    return chat


def make_panel_handler() -> Callable[[dict | None], tuple]:
    """The side panel after a chat turn (``/chat_panel``, undocumented, chained to ``/chat``): ``(conversation)``
    -> ``(scores, knowledge, knowledge accordion, do_sample, temperature, top_p, max_new_tokens,
    repetition_penalty)`` of the session's last turn; the controls the user moved are left as they are."""

    def panel(conversation: dict | None) -> tuple:
        shown = conversation.get("panel") if isinstance(conversation, dict) else None
        if not shown:
            return tuple(gr.skip() for _ in range(3 + len(DECODING_KEYS)))
        value, label = shown["scores"]
        controls = shown["controls"]
        return (gr.Label(value=value, label=label), shown["knowledge"],
                gr.Accordion(label=shown["knowledge_title"], open=shown["knowledge_open"]),
                *(controls[k] if k in controls else gr.skip() for k in DECODING_KEYS))

    return panel


# ---- the API endpoint -------------------------------------------------------------------------


class TurnResult(TypedDict):
    """What ``/respond`` returns (documented in docs/http_api.md and the app's API page)."""

    reply: str
    skill: str | None
    confidence: float | None
    label: str
    scores: dict[str, float]
    passage: str | None


# Shown as plain text on the app's API page (and passed to gr.api as the endpoint's description).
RESPOND_DOC = f"""One turn of the chat, without page state: send the new message and, optionally, the earlier turns.

Arguments: message (the user's new message, at most {MAX_MESSAGE_CHARS:,} characters); history (earlier turns,
oldest first, user and bot alternating, at most {MAX_HISTORY_TURNS} turns of at most {MAX_MESSAGE_CHARS:,} characters
each; default none); mode ("auto": the dialogue manager picks; an installed skill's name; or "bare": the
backbone alone); overrides (decoding settings such as {{"temperature": 0.9, "do_sample": true}}; default the
answering skill's own).

Returns a dict: reply (the bot's text); skill (the skill that answered, null for the bare backbone);
confidence (the manager's probability of the class that answered: the skill's, or chit-chat's scores["none"]
when the bare backbone answered, also when it did because the top skill was under the threshold; null when the
mode was picked by hand or no manager is installed); label (how the page labels the turn, e.g. "chit-chat (bare
backbone) · top skill empathetic 0.74 is under the threshold 0.80"); scores (every class's probability,
"none" = chit-chat; empty when the mode was picked by hand or no manager is installed); passage (the knowledge
passage that went into the context, or null).

Refusals raise an error naming the limit or the bad value: an empty or too long message, an unknown mode, a bad
setting or history."""


def make_respond_handler(bot: AdapterBot) -> Callable[..., TurnResult]:
    """The function behind ``/respond`` (see :data:`RESPOND_DOC`); refusals raise ``gr.Error``."""

    def respond(message: str, history: list[str] | None = None, mode: str = AUTO_MODE,
                overrides: dict[str, Any] | None = None) -> TurnResult:
        try:
            turns = [*check_history(history), check_message(message)]
            skill = parse_mode(mode, bot)
            moved = clean_overrides(overrides)
            threshold = manager_threshold(bot)
            reply = bot.respond(turns, skill=skill, **moved)
        except ValueError as e:
            raise refusal(e) from None
        except Exception:
            log.exception("/respond failed")
            raise gr.Error("Generating the reply failed; the server log has the details. Please try again.",
                           title="No reply", print_exception=False) from None
        return TurnResult(reply=reply.text, skill=reply.skill, confidence=reply.confidence,
                          label=skill_label(reply, skill != AUTO, threshold), scores=dict(reply.scores),
                          passage=reply.knowledge if reply.knowledge_used else None)

    # gr.api reads the result's type from inspect.signature, which leaves this module's annotations as
    # strings (``from __future__ import annotations``): resolved, TurnResult's fields reach the API docs.
    respond.__signature__ = inspect.signature(respond, eval_str=True)  # type: ignore[attr-defined]
    return respond
