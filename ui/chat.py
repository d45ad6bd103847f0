"""The Chat tab's logic: routing modes, decoding settings, and one turn streamed from ``AdapterBot.stream``.

Everything here is plain Python over :class:`bot.AdapterBot` except :func:`make_chat_handler`,
whose generator is the Gradio event behind the ``/chat`` endpoint.

One bot turn is shown as two assistant messages, grouped in one bubble:

1. a collapsible "thought" whose title is the label (``"empathetic · 0.93"``,
   ``"chit-chat (bare backbone) · picked by hand"``) and whose body holds how the turn was
   routed, the decoding settings used and, for a skill that retrieves or carries knowledge,
   the passage it used;
2. the reply itself, streamed token by token.

Decoding rule: a control the user moves overrides the skill's setting (in every mode) until
the routing mode changes or "Reset" is pressed; every control left alone follows the answering
skill's own ``DecodingSpec`` (the bare backbone's built-in settings for chit-chat). The page
keeps the moved controls in a hidden JSON value, which is also how an API client passes them:
``{"temperature": 0.9, "do_sample": true}``, or ``{}`` for the skill's own settings.
"""
from __future__ import annotations

import logging
import math
import time
from typing import Any, Iterator

import gradio as gr

from bot.chatbot import AUTO, BARE_DECODING, AdapterBot, Reply
from skills.spec import DecodingSpec

log = logging.getLogger(__name__)

AUTO_MODE = "auto"
BARE_MODE = "bare"
AUTO_LABEL = "Auto (dialogue manager)"
BARE_LABEL = "Bare backbone (chit-chat)"
CHITCHAT = "chit-chat (bare backbone)"
DECODING_KEYS = ("do_sample", "temperature", "top_p", "max_new_tokens", "repetition_penalty")
MAX_MESSAGE_CHARS = 4000
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
    raise ValueError(f"Skill {value!r} is not installed (any more); pick another routing mode (installed: {installed}).")


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
    """The five decoding controls' values for ``skill`` (``AUTO``: the generic defaults; ``None``: bare)."""
    base = DecodingSpec()
    if skill == AUTO:
        spec = base
    elif skill is None:
        spec = DecodingSpec(**{k: v for k, v in BARE_DECODING.items() if k in DecodingSpec.__dataclass_fields__})
    else:
        spec = bot.specs[skill].decoding
    return {k: getattr(spec, k) for k in DECODING_KEYS}


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


def describe_decoding(settings: dict[str, Any]) -> str:
    sampling = (f"sampling (temperature {settings['temperature']:.2f}, top-p {settings['top_p']:.2f})"
                if settings["do_sample"] else "greedy")
    return f"{sampling} · at most {int(settings['max_new_tokens'])} new tokens · repetition penalty {settings['repetition_penalty']:.2f}"


# ---- labels -----------------------------------------------------------------------------------


def skill_label(reply: Reply, forced: bool, has_manager: bool) -> str:
    """``"empathetic · 0.93"``, ``"chit-chat (bare backbone) · picked by hand"``, ..."""
    who = reply.skill or CHITCHAT
    if forced:
        return f"{who} · picked by hand"
    if reply.confidence is None:
        return f"{who} · no manager installed" if not has_manager else who
    return f"{who} · {reply.confidence:.2f}"


def display_scores(scores: dict[str, float]) -> dict[str, float]:
    """The manager's scores with its ``none`` class shown as chit-chat."""
    return {(CHITCHAT if k == "none" else k): float(v) for k, v in scores.items()}


def details_markdown(reply: Reply, forced: bool, settings: dict[str, Any]) -> str:
    if forced:
        how = "Picked by hand in the routing menu."
    elif reply.confidence is None:
        how = "No dialogue manager is installed: the bare backbone answered."
    else:
        top = sorted(display_scores(reply.scores).items(), key=lambda kv: -kv[1])[:3]
        how = f"Routed by the dialogue manager (confidence {reply.confidence:.2f}). Top scores: " + \
              ", ".join(f"{k} {v:.2f}" for k, v in top) + "."
    parts = [how, f"Decoding: {describe_decoding(settings)}."]
    if reply.knowledge:
        parts.append("**Knowledge passage used:**\n\n> " + reply.knowledge.replace("\n", "\n> "))
    return "\n\n".join(parts)


def knowledge_markdown(reply: Reply) -> str:
    if not reply.knowledge:
        return NO_KNOWLEDGE
    return f"**{reply.skill}** grounded its reply on:\n\n> " + reply.knowledge.replace("\n", "\n> ")


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
    """The manager's scores for a turn whose skill was picked by hand ({} without a manager, or on failure)."""
    if bot.manager is None:
        return {}
    try:
        return dict(bot.manager.route(history).scores)
    except Exception:  # only informative: never let it stop the reply
        log.warning("manager scores for a hand-picked turn failed", exc_info=True)
        return {}


def one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text[:400]


# ---- the chat event ---------------------------------------------------------------------------


def make_chat_handler(bot: AdapterBot):
    """The generator behind ``/chat``: ``(message, mode, overrides, conversation)`` ->
    ``(textbox, chatbot, conversation, scores, knowledge, knowledge accordion, do_sample,
    temperature, top_p, max_new_tokens, repetition_penalty)``, yielded as the reply grows.
    """
    n_controls = len(DECODING_KEYS)

    def unchanged(message: str, conversation: dict) -> tuple:
        return (message, conversation["messages"], conversation, gr.skip(), gr.skip(), gr.skip(), *([gr.skip()] * n_controls))

    def chat(message: str | None, mode: str | None, overrides: Any, conversation: dict | None) -> Iterator[tuple]:
        conversation = conversation if isinstance(conversation, dict) and "turns" in conversation else new_conversation()
        text = (message or "").strip()
        if not text:
            gr.Warning("Type a message first: an empty message gets no reply.")
            yield unchanged("", conversation)
            return
        if len(text) > MAX_MESSAGE_CHARS:
            gr.Warning(f"That message is too long ({len(text)} characters); keep it under {MAX_MESSAGE_CHARS}.")
            yield unchanged(message or "", conversation)
            return
        try:
            skill = parse_mode(mode, bot)
            moved = clean_overrides(overrides)
        except ValueError as e:
            gr.Warning(one_line(e))
            yield unchanged(message or "", conversation)
            return

        forced = skill != AUTO
        history = [*conversation["turns"], text]
        before = [*conversation["messages"], {"role": "user", "content": text}]
        start = time.perf_counter()
        first = ("Routing…", "The dialogue manager is choosing a skill…") if not forced else \
            (f"{skill or CHITCHAT} · picked by hand", "Generating…")
        yield ("", before + bot_messages(None, *first, done=False),
               gr.skip(), gr.skip(), gr.skip(), gr.skip(), *([gr.skip()] * n_controls))

        opinion = manager_opinion(bot, history) if forced else None
        reply: Reply | None = None
        settings: dict[str, Any] = {}
        label = details = ""
        try:
            for reply in bot.stream(history, skill=skill, **moved):
                if not label:  # routing is decided before the first token
                    settings = {**decoding_defaults(bot, reply.skill), **moved}
                    label = skill_label(reply, forced, bot.manager is not None)
                    details = details_markdown(reply, forced, settings)
                yield ("", before + bot_messages(reply, label, details, done=False), gr.skip(), gr.skip(), gr.skip(),
                       gr.skip(), *([gr.skip()] * n_controls))
        except ValueError as e:  # e.g. a skill removed from another tab while this page still offered it
            log.warning("chat turn refused: %s", e)
            gr.Warning(one_line(e))
            yield unchanged(message or "", conversation)
            return
        except Exception:
            log.exception("chat turn failed")
            gr.Warning("Sorry, generating the reply failed; the server log has the details. Please try again.")
            yield unchanged(message or "", conversation)
            return
        if reply is None:  # cannot happen with AdapterBot.stream, which always yields the final reply
            gr.Warning("The bot returned no reply; please try again.")
            yield unchanged(message or "", conversation)
            return

        messages = before + bot_messages(reply, label, details, done=True, seconds=time.perf_counter() - start)
        conversation = {"turns": [*history, reply.text], "messages": messages}
        if reply.scores:
            scores = gr.Label(value=display_scores(reply.scores), label="Skill scores · last turn")
        elif opinion:
            scores = gr.Label(value=display_scores(opinion), label="Manager's scores · skill picked by hand")
        else:
            scores = gr.Label(value=None, label="Skill scores · no manager installed")
        knowledge_title = f"Knowledge used · {reply.skill}" if reply.knowledge else "Knowledge used"
        controls = [gr.skip() if k in moved else settings[k] for k in DECODING_KEYS]
        yield ("", messages, conversation, scores, knowledge_markdown(reply),
               gr.Accordion(label=knowledge_title, open=bool(reply.knowledge)), *controls)

    return chat
