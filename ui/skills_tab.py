"""The Skills tab's logic: the table of installed skills, adding one from an upload, removing one.

Handlers raise ``gr.Error`` with a one-line message for anything the user can fix (bad name,
bad JSONL, too large a file, a name already taken); anything else is logged with its traceback
on the server and reported on the page as one generic line.

A skill trains in a child process (:mod:`bot.training_process`), so the server keeps answering
meanwhile; the handler only streams the child's progress and then swaps the new skill and the
manager into the bot. A killed or crashed child is reported on the page by its exit code.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Callable

import gradio as gr

from bot.adapter.config import kind_settings
from bot.chatbot import AdapterBot
from bot.errors import one_line
from bot.skill_builder import remove_skill, routed_line
from bot.training_process import TrainingError, TrainingStopped, add_skill_in_child
from skills.registry import UnknownSkillError
from skills.spec import AdapterTraining, validate_skill_name


log = logging.getLogger(__name__)

TABLE_HEADERS = ["Skill", "Description", "Knowledge", "Adapter", "Train", "Valid", "Test", "Test ppl (adapter)",
                 "Test ppl (bare backbone)"]
DATA_SUFFIXES = (".jsonl", ".csv")
KNOWLEDGE_SUFFIXES = (".txt", ".jsonl")
MAX_DESCRIPTION_CHARS = 300
CANCELLED = "__cancelled__"  # what the page sends to /remove_skill when the confirmation is declined
# Errors a user can fix from the page; their message is shown as it is.
EXPECTED_ERRORS = (ValueError, FileExistsError, FileNotFoundError, UnknownSkillError, UnicodeDecodeError)
# Held while a skill is added or removed: the training child reads and saves the manager, so a removal
# must not run meanwhile (it is refused at once rather than left waiting for minutes).
_CHANGING_SKILLS = threading.Lock()
TRAINING_BUSY = "A skill is training; remove skills once it has been installed."


def _figure(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "—"


def skill_rows(bot: AdapterBot) -> list[list[Any]]:
    """One row per loaded skill: name, description, knowledge mode, adapter kind and size, split sizes, test perplexities."""
    rows = []
    for name, spec in sorted(bot.specs.items()):
        splits, card = spec.splits or {}, spec.card or {}
        adapter = f"{bot.model.configs[name].kind}, {bot.model.adapter_size(name):,} numbers"
        rows.append([name, spec.description, spec.knowledge.mode, adapter,
                     splits.get("train", "—"), splits.get("valid", "—"), splits.get("test", "—"),
                     _figure(card.get("test_ppl")), _figure(card.get("test_ppl_backbone"))])
    return rows


def skills_table(bot: AdapterBot) -> dict[str, Any]:
    """The Dataframe value (headers and rows)."""
    return {"headers": TABLE_HEADERS, "data": skill_rows(bot) or [["(no skill installed)"] + [""] * (len(TABLE_HEADERS) - 1)]}


def skills_summary(bot: AdapterBot) -> str:
    """A line over the table: where skills live, the manager, and any skill that failed to load."""
    manager = "a dialogue manager routes between them" if bot.manager is not None else "no dialogue manager is installed"
    text = f"{len(bot.skills)} skill(s) installed in `{bot.registry.root}`; {manager}."
    for name, why in sorted(bot.skipped.items()):
        text += f"\n\n**Not loaded:** `{name}` is installed but could not be loaded: {one_line(ValueError(why))}"
    return text


def _readable(e: BaseException, uploads: dict[str, str]) -> str:
    """One line of ``e``, with the server's temporary upload paths replaced by the uploaded file names."""
    text = one_line(e)
    for path, shown in uploads.items():
        text = text.replace(path, shown)
    return text


def _check_upload(path: str | None, what: str, suffixes: tuple[str, ...], max_mb: float, required: bool) -> Path | None:
    if not path:
        if required:
            raise ValueError(f"Choose a {what} file to upload ({' or '.join(suffixes)}).")
        return None
    p = Path(path)
    if p.suffix.lower() not in suffixes:
        raise ValueError(f"The {what} file {p.name!r} must end in {' or '.join(suffixes)}.")
    size = p.stat().st_size
    if size > max_mb * 2**20:
        raise ValueError(f"The {what} file {p.name!r} is {size / 2**20:.1f} MB, over the {max_mb:g} MB upload limit.")
    if size == 0:
        raise ValueError(f"The {what} file {p.name!r} is empty.")
    return p


def warnings_markdown(warnings: list[str]) -> str:
    """The add's warnings as a block under the status line ("" when there are none)."""
    if not warnings:
        return ""
    title = "Warning" if len(warnings) == 1 else f"{len(warnings)} warnings"
    return f"\n\n> ⚠️ **{title}**\n>\n" + "".join(f"> - {sentence(w)}\n" for w in warnings)


def sentence(text: str) -> str:
    """``text`` with a capital first letter and a closing full stop."""
    text = text.strip()
    return (text[:1].upper() + text[1:]).rstrip(".") + "." if text else text


def make_add_handler(bot: AdapterBot, max_upload_mb: float) -> Callable:
    """``/add_skill``: ``(name, description, data_file, knowledge_file, replace, epochs, learning_rate, kind, faq)`` ->
    ``(status, table, summary, remove menu)``; the last three may be left out (defaults; ``kind`` at its defaults).

    Cheap checks (name, settings, uploads, a name already taken) run here; reading the data and training
    run in a child process (:func:`bot.training_process.add_skill_in_child`), whose refusals come back as
    the same one-line messages, and whose progress drives ``progress``."""

    def add(name: str | None, description: str | None, data_file: str | None, knowledge_file: str | None = None,
            replace: bool = False, epochs: float | None = None, learning_rate: float | None = None,
            kind: str | None = None, faq: bool = False, progress=gr.Progress()):
        uploads: dict[str, str] = {}
        try:
            name = validate_skill_name((name or "").strip())
            given = (("epochs", epochs), ("learning_rate", learning_rate), ("kind", kind))
            training = AdapterTraining(**{k: v for k, v in given if v is not None})
            kind_settings(training.kind, training.settings)
            description = " ".join((description or "").split())
            if len(description) > MAX_DESCRIPTION_CHARS:
                raise ValueError(f"Keep the description under {MAX_DESCRIPTION_CHARS} characters (it has {len(description)}).")
            data = _check_upload(data_file, "data", DATA_SUFFIXES, max_upload_mb, required=True)
            knowledge = _check_upload(knowledge_file, "knowledge", KNOWLEDGE_SUFFIXES, max_upload_mb, required=False)
            uploads = {str(p): p.name for p in (data, knowledge) if p is not None}
            if name in bot.registry.names() and not replace:
                raise FileExistsError(f"A skill named {name!r} is already installed; tick 'Replace' to retrain it, or pick another name.")
            progress(0.0, desc=f"{name}: starting the training process")
            with _CHANGING_SKILLS:
                result = add_skill_in_child(bot, name, data, description=description, knowledge=knowledge,
                                            replace=bool(replace), training=training, data_label=data.name, faq=bool(faq),
                                            progress=lambda fraction, message: progress(fraction, desc=message))
        except TrainingStopped as e:
            log.error("add skill %r: %s", name, e)
            raise gr.Error(str(e), title="Skill not added", print_exception=False) from None
        except TrainingError as e:
            if not e.is_a(*EXPECTED_ERRORS):
                log.error("adding skill %r failed in the training process: %s: %s", name, e.type_name, e)
                raise gr.Error("Adding the skill failed unexpectedly; the server log has the details.",
                               title="Skill not added", print_exception=False) from None
            message = _readable(e, uploads)
            log.warning("add skill %r refused: %s", name, message)
            raise gr.Error(message, title="Skill not added", print_exception=False) from None
        except EXPECTED_ERRORS as e:
            message = _readable(e, uploads)
            log.warning("add skill %r refused: %s", name, message)
            raise gr.Error(message, title="Skill not added", print_exception=False) from None
        except Exception:
            log.exception("adding skill %r failed", name)
            raise gr.Error("Adding the skill failed unexpectedly; the server log has the details.",
                           title="Skill not added", print_exception=False) from None
        skipped = f" ({result.skipped_note})" if result.skipped else ""
        routed = f": it {routed_line(result.name, result.routing)}" if result.routing else ""
        manager = (f"The dialogue manager learned the new skill, so Auto can route to it{routed}."
                   if result.manager_updated else "No dialogue manager is installed: pick the skill by hand in the Chat tab.")
        status = (f"Installed **{result.name}** from {result.examples} example(s){skipped}: "
                  f"train/valid/test {result.splits.get('train')}/{result.splits.get('valid')}/{result.splits.get('test')}, "
                  f"test perplexity {result.test_ppl:.2f} (bare backbone {result.test_ppl_backbone:.2f}), "
                  f"trained in {result.train_seconds:.0f} s. {manager}")
        status += warnings_markdown(result.warnings)
        for warning in result.warnings:
            gr.Warning(sentence(warning), title=f"Skill {result.name!r} installed with a warning", duration=None)
        gr.Info(f"Skill {result.name!r} installed; it is ready in the Chat tab.")
        return status, skills_table(bot), skills_summary(bot), gr.Dropdown(choices=bot.skills, value=None)

    return add


def make_remove_handler(bot: AdapterBot) -> Callable:
    """``/remove_skill``: ``(name)`` -> ``(status, table, summary, remove menu)``."""

    def remove(name: str | None):
        if name == CANCELLED:  # the user said no in the page's confirmation dialog
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        try:
            name = validate_skill_name((name or "").strip()) if name else None
            if name is None:
                raise ValueError("Pick the skill to remove first.")
            if not _CHANGING_SKILLS.acquire(blocking=False):
                raise ValueError(TRAINING_BUSY)
            try:
                if name not in bot.registry:
                    raise UnknownSkillError(f"No skill {name!r} is installed.")
                remove_skill(bot.registry, name)
                if name in bot.skills:
                    bot.unload_skill(name)
                bot.load_manager()
            finally:
                _CHANGING_SKILLS.release()
        except EXPECTED_ERRORS as e:
            log.warning("remove skill %r refused: %s", name, e)
            raise gr.Error(one_line(e), title="Skill not removed", print_exception=False) from None
        except Exception:
            log.exception("removing skill %r failed", name)
            raise gr.Error("Removing the skill failed unexpectedly; the server log has the details.",
                           title="Skill not removed", print_exception=False) from None
        gr.Info(f"Skill {name!r} removed.")
        status = f"Removed **{name}**; the other skills are unchanged."
        return status, skills_table(bot), skills_summary(bot), gr.Dropdown(choices=bot.skills, value=None)

    return remove
