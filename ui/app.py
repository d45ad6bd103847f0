"""The Adapter-Bot web app (Gradio): a Chat tab and a Skills tab over one :class:`bot.AdapterBot`.

Public API:

- :func:`build_app` ``(bot, max_upload_mb=50) -> gr.Blocks``
- :func:`launch` ``(bot, host="127.0.0.1", port=7860, share=False, max_upload_mb=50, api_key=None, **kwargs)``

Endpoints (for ``gradio_client.Client``; the app's "Use via API" page documents the public ones,
and docs/http_api.md shows them in use):

- ``/respond`` ``(message, history=[], mode="auto", overrides={}) -> dict`` with ``reply``,
  ``skill``, ``confidence``, ``label``, ``scores`` and ``passage`` (:data:`ui.chat.RESPOND_DOC`):
  one turn, no page state. A refusal raises an error naming the limit or the bad value.
- ``/add_skill`` ``(name, description, data_file, knowledge_file, replace, epochs, learning_rate, kind, faq) ->
  (status, table, summary, remove menu)``: trains and installs a skill in a child process (progress
  is reported while it trains; chat goes on meanwhile); the status lists the add's warnings, if any.
- ``/remove_skill`` ``(name) -> (status, table, summary, remove menu)``.
- ``/skills`` ``() -> list of dicts``: the loaded skills with their descriptions, splits and test figures.

Beside them, on the same host and port, :func:`launch` serves the OpenAI-compatible API of
:mod:`ui.openai_api` (``POST /v1/chat/completions``, ``GET /v1/models``).

Undocumented (the page's own events; ``conversation`` is per-session state, kept by the client's
session and never sent): ``/chat`` ``(message, mode, overrides) -> (textbox, chatbot)``, streamed;
``/chat_panel`` ``() -> (scores, knowledge, knowledge accordion, do_sample, temperature, top_p,
max_new_tokens, repetition_penalty)``, the side panel of the last turn, which the page runs once ``/chat`` is
done; and ``/clear`` ``() -> (chatbot, scores, knowledge)``.
"""
from __future__ import annotations

import logging
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from bot.adapter import KINDS  # noqa: E402
from bot.chatbot import AdapterBot  # noqa: E402
from skills.spec import AdapterTraining  # noqa: E402

from .chat import (  # noqa: E402
    AUTO_MODE, DECODING_KEYS, MAX_MESSAGE_CHARS, MAX_NEW_TOKENS, NO_KNOWLEDGE, RESPOND_DOC, decoding_defaults,
    make_chat_handler, make_chat_validator, make_panel_handler, make_respond_handler, mode_choices, mode_info,
    new_conversation, parse_mode,
)
from .skills_tab import CANCELLED, make_add_handler, make_remove_handler, skills_summary, skills_table  # noqa: E402

log = logging.getLogger(__name__)

TITLE = "Adapter-Bot"
INTRO = ("One frozen conversational backbone, a small adapter per skill. In **Auto** mode the dialogue manager "
         "picks the skill for every message; pick a skill (or the bare backbone) in *Routing* to choose it yourself.")
DECODING_RULE = ("Each control follows the answering skill's own setting until you move it; a moved control "
                 "applies to every reply until you change the routing mode or press *Reset*.")
TRAINING = AdapterTraining()  # the Skills tab's training defaults
MODEL_EVENTS = "model"  # chat, the APIs and remove share the model (see build_app)
MODEL_CONCURRENCY = 16  # turns run at once: the engine (bot/engine.py) decodes them together in shared steps
TRAINING_EVENTS = "training"  # adding a skill: trains in a child process, never in the model's slot
TRAINING_CONCURRENCY = 1  # one training at a time (the others queue)

THEME = gr.themes.Soft(
    primary_hue="indigo", secondary_hue="sky", neutral_hue="slate",
    font=["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif"],  # no web font download
    font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"],
)
CSS = """
.gradio-container { max-width: 1320px !important; margin: 0 auto !important; }
#ab-header h1 { margin-bottom: 0.1em; }
#ab-header p { margin-top: 0; color: var(--body-text-color-subdued); }
#ab-side { gap: 10px; }
#ab-chatbot { flex-grow: 1; }
#ab-status { font-size: 0.9em; color: var(--body-text-color-subdued); }
"""

# JavaScript run in the page when a decoding control is moved: remember it in the hidden overrides.
_MARK_JS = "(overrides, value) => Object.assign({{}}, overrides || {{}}, {{{key}: value}})"


class AdapterBotApp(gr.Blocks):
    """``gr.Blocks`` whose ``launch`` brings the app's theme and style unless told otherwise."""

    def launch(self, *args, **kwargs):  # type: ignore[override]
        kwargs.setdefault("theme", THEME)
        kwargs.setdefault("css", CSS)
        return super().launch(*args, **kwargs)


def _header(bot: AdapterBot) -> str:
    backbone = bot.model.signature.backbone
    manager = "dialogue manager on" if bot.manager is not None else "no dialogue manager"
    return (f"# {TITLE}\n{INTRO}\n\n<small>Backbone `{backbone}` · {len(bot.skills)} skill(s) · {manager}</small>")


def build_app(bot: AdapterBot, max_upload_mb: float = 50) -> gr.Blocks:
    """The web app over ``bot`` (not launched). Use :func:`launch` to serve it.

    Args:
        bot: the loaded bot; every session shares it, while each keeps its own conversation.
        max_upload_mb: the largest data or knowledge file the Skills tab accepts.
    """
    defaults = decoding_defaults(bot, parse_mode(AUTO_MODE, bot))

    with AdapterBotApp(title=TITLE, analytics_enabled=False) as demo:
        conversation = gr.State(new_conversation())
        header = gr.Markdown(_header(bot), elem_id="ab-header")
        with gr.Tabs():
            with gr.Tab("Chat", id="chat"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=2, min_width=420):
                        chatbot = gr.Chatbot(
                            label="Conversation", elem_id="ab-chatbot", height=560, layout="bubble",
                            feedback_options=None, group_consecutive_messages=True, buttons=["copy"],
                            placeholder="**Say hello.** Ask a question, describe a problem, or tell me how you feel.",
                        )
                        # No max_length: the browser would cut a long paste silently. The server refuses a
                        # message over the limit with an error that names it, and the text stays in the box.
                        message = gr.Textbox(
                            placeholder=f"Type a message (up to {MAX_MESSAGE_CHARS:,} characters) and press Enter",
                            label="Message", show_label=False, lines=1, max_lines=6, submit_btn="Send", autofocus=True,
                            elem_id="ab-message",
                        )
                        with gr.Row():
                            gr.Examples(["I failed my exam today.", "Who wrote Hamlet?", "My laptop will not turn on.",
                                         "Hi! How is your day going?"], inputs=message, label="Try")
                        clear = gr.Button("Clear conversation", variant="secondary", size="sm")
                    with gr.Column(scale=1, min_width=300, elem_id="ab-side"):
                        with gr.Group():
                            mode = gr.Dropdown(mode_choices(bot), value=AUTO_MODE, label="Routing", allow_custom_value=True,
                                               info="Auto, or one skill for every message", elem_id="ab-mode")
                            mode_help = gr.Markdown(mode_info(bot, AUTO_MODE), padding=True)
                        scores = gr.Label(value=None, label="Skill scores · last turn", num_top_classes=8, show_heading=False,
                                          elem_id="ab-scores")
                        with gr.Accordion("Knowledge used", open=False) as knowledge_box:
                            knowledge = gr.Markdown(NO_KNOWLEDGE, label="Knowledge", padding=True, elem_id="ab-knowledge")
                        with gr.Accordion("Decoding", open=False):
                            gr.Markdown(DECODING_RULE, elem_id="ab-status")
                            do_sample = gr.Checkbox(defaults["do_sample"], label="Sample (off: greedy, repeatable replies)")
                            temperature = gr.Slider(0.05, 2.0, defaults["temperature"], step=0.05, label="Temperature",
                                                    info="used when sampling")
                            top_p = gr.Slider(0.05, 1.0, defaults["top_p"], step=0.05, label="Top-p", info="used when sampling")
                            max_new_tokens = gr.Slider(1, MAX_NEW_TOKENS, defaults["max_new_tokens"], step=1,
                                                       label="Max new tokens")
                            repetition_penalty = gr.Slider(1.0, 2.0, defaults["repetition_penalty"], step=0.05,
                                                           label="Repetition penalty", info="1 = off")
                            reset = gr.Button("Reset to the skill's settings", size="sm")
                        # Decoding controls the user moved, as sent to /chat: {} = the skill's own settings.
                        overrides = gr.JSON({}, visible=False)

            with gr.Tab("Skills", id="skills") as skills_tab:
                summary = gr.Markdown(skills_summary(bot))
                table = gr.Dataframe(value=skills_table(bot), interactive=False, wrap=True, label="Installed skills",
                                     elem_id="ab-skills-table",  # descriptions wrap, so every figure column stays in view
                                     column_widths=["10%", "28%", "8%", "14%", "6%", "6%", "6%", "11%", "11%"])
                with gr.Row(equal_height=False):
                    with gr.Column(scale=3):
                        gr.Markdown("### Add a skill\nUpload dialogues as JSONL, one example a line: "
                                    '`{"context": ["turn", ...], "response": "...", "knowledge": "optional"}`. '
                                    "A new adapter trains on the frozen backbone in a separate process (chat goes on "
                                    "meanwhile); the skill is usable as soon as it is installed.")
                        with gr.Row():
                            new_name = gr.Textbox(label="Name", placeholder="e.g. cooking",
                                                  info="lowercase letters, digits, '_' or '-'")
                            new_description = gr.Textbox(label="Description", placeholder="What the skill is for")
                        with gr.Row():
                            data_file = gr.File(label=f"Dialogues (.jsonl, ≤ {max_upload_mb:g} MB)",
                                                file_types=[".jsonl", ".csv"], type="filepath", height=120, elem_id="ab-data-file")
                            knowledge_file = gr.File(label="Knowledge (optional, .txt or .jsonl)",
                                                     file_types=[".txt", ".jsonl"], type="filepath", height=120,
                                                     elem_id="ab-knowledge-file")
                        with gr.Row():
                            faq = gr.Checkbox(False, label="Answer from the dialogues (FAQ)",
                                              info="every dialogue becomes a passage, and the skill copies the answer "
                                                   "of the one most like the user's message: far better replies from a "
                                                   "small backbone when the data answers questions (not with a knowledge file)")
                            replace = gr.Checkbox(False, label="Replace a skill of the same name")
                        with gr.Accordion("Training settings", open=False):
                            with gr.Row():
                                epochs = gr.Slider(1, 50, TRAINING.epochs, step=1, label="Most epochs",
                                                   info="stops early once validation perplexity stops improving; "
                                                        "small datasets often need more")
                                learning_rate = gr.Number(TRAINING.learning_rate, label="Learning rate", minimum=1e-6,
                                                          maximum=1.0, info="AdamW learning rate of the adapter")
                            kind = gr.Dropdown(list(KINDS), value=TRAINING.kind, label="Adapter kind",
                                               info="; ".join(f"{k}: {c.attaches}" for k, c in KINDS.items()))
                        add = gr.Button("Train and install", variant="primary")
                        add_status = gr.Markdown(min_height=40)
                    with gr.Column(scale=2):
                        gr.Markdown("### Remove a skill\nIts folder and its manager class go; other skills are untouched.")
                        remove_name = gr.Dropdown(bot.skills, value=None, label="Skill to remove", allow_custom_value=True)
                        remove = gr.Button("Remove skill", variant="stop")
                        remove_status = gr.Markdown(min_height=40)

        controls = [do_sample, temperature, top_p, max_new_tokens, repetition_penalty]

        # ---- chat -------------------------------------------------------------------------
        chat_inputs = [message, mode, overrides, conversation]
        chat = make_chat_handler(bot)
        message.submit(chat, chat_inputs, [message, chatbot, conversation], api_name="chat", api_visibility="undocumented",
                       validator=make_chat_validator(bot), concurrency_id=MODEL_EVENTS, concurrency_limit=MODEL_CONCURRENCY,
                       show_progress="minimal", show_progress_on=chatbot,
                       ).success(make_panel_handler(), conversation, [scores, knowledge, knowledge_box, *controls],
                                 api_name="chat_panel", api_visibility="undocumented", queue=False)
        gr.api(make_respond_handler(bot), api_name="respond", api_description=RESPOND_DOC, concurrency_id=MODEL_EVENTS,
               concurrency_limit=MODEL_CONCURRENCY)

        def clear_chat():
            return new_conversation(), [], gr.Label(value=None, label="Skill scores · last turn"), NO_KNOWLEDGE

        clear.click(clear_chat, None, [conversation, chatbot, scores, knowledge], api_name="clear", queue=False,
                    api_visibility="undocumented")
        # The Chatbot's own trash button empties the display; forget the conversation with it.
        chatbot.clear(clear_chat, None, [conversation, chatbot, scores, knowledge], queue=False, api_visibility="private")

        # ---- routing and decoding ---------------------------------------------------------
        def on_mode(choice):
            try:
                values = decoding_defaults(bot, parse_mode(choice, bot))
            except ValueError:
                values = decoding_defaults(bot, parse_mode(AUTO_MODE, bot))
            return {}, mode_info(bot, choice), *(values[k] for k in DECODING_KEYS)

        mode.input(on_mode, mode, [overrides, mode_help, *controls], queue=False, api_visibility="private")
        reset.click(on_mode, mode, [overrides, mode_help, *controls], queue=False, api_visibility="private")
        for key, control in zip(DECODING_KEYS, controls):
            control.input(None, [overrides, control], overrides, js=_MARK_JS.format(key=key), queue=False,
                          api_visibility="private")

        # ---- skills -----------------------------------------------------------------------
        def refresh(choice):
            """Menus and table from the bot's current skills (another session may have changed them)."""
            installed = choice in bot.skills or choice in (AUTO_MODE, "bare")
            return (gr.Dropdown(choices=mode_choices(bot), value=choice if installed else AUTO_MODE),
                    skills_table(bot), skills_summary(bot), gr.Dropdown(choices=bot.skills), _header(bot))

        refresh_outputs = [mode, table, summary, remove_name, header]
        skill_outputs = [table, summary, remove_name]
        add.click(make_add_handler(bot, max_upload_mb),
                  [new_name, new_description, data_file, knowledge_file, replace, epochs, learning_rate, kind, faq],
                  [add_status, *skill_outputs], api_name="add_skill", concurrency_id=TRAINING_EVENTS,
                  concurrency_limit=TRAINING_CONCURRENCY, show_progress_on=add_status,
                  ).success(refresh, mode, refresh_outputs, queue=False, api_visibility="private")
        remove.click(make_remove_handler(bot), remove_name, [remove_status, *skill_outputs], api_name="remove_skill",
                     concurrency_id=MODEL_EVENTS, concurrency_limit=MODEL_CONCURRENCY, show_progress_on=remove_status,
                     js=f"(name) => !name || confirm(`Remove the skill '${{name}}'? Its files are deleted.`) ? name : '{CANCELLED}'",
                     ).success(refresh, mode, refresh_outputs, queue=False, api_visibility="private")
        demo.load(refresh, mode, refresh_outputs, queue=False, api_visibility="private")
        skills_tab.select(refresh, mode, refresh_outputs, queue=False, api_visibility="private")

        def list_skills() -> list[dict]:
            """The loaded skills: name, description, knowledge mode, split sizes and test figures."""
            return [{"name": name, "description": spec.description, "knowledge": spec.knowledge.mode,
                     "splits": dict(spec.splits), "card": dict(spec.card)} for name, spec in sorted(bot.specs.items())]

        gr.api(list_skills, api_name="skills", queue=False)

    # Light events run two at a time. Chat and remove share MODEL_CONCURRENCY slots: concurrent turns
    # join the engine's shared batch, and a removal waits for the step boundary (AdapterBot.unload_skill).
    # Adding a skill has its own slot (TRAINING_EVENTS): it trains in a child process and only swaps the
    # finished skill in through bot.load_skill / bot.load_manager, so chat goes on.
    demo.queue(default_concurrency_limit=2)
    return demo


def launch(bot: AdapterBot, host: str = "127.0.0.1", port: int = 7860, share: bool = False, max_upload_mb: float = 50,
           api_key: str | None = None, **kwargs):
    """Build the app and serve it on ``host:port`` (``share``: also through a public Gradio link).

    Extra keyword arguments go to ``gr.Blocks.launch`` (e.g. ``prevent_thread_lock=True``,
    ``quiet=True`` in tests). Unexpected errors never reach the page (``show_error=False``);
    uploads over ``max_upload_mb`` are refused by the server.

    The OpenAI-compatible API (:mod:`ui.openai_api`: ``/v1/chat/completions``, ``/v1/models``) is
    served on the same host and port: its routes go into Gradio's own FastAPI app through
    ``launch``'s ``app_kwargs`` (FastAPI's ``routes``), ahead of Gradio's, so Gradio keeps its
    server, share link, queue and upload limit. ``api_key``: the bearer key those routes require.
    """
    from .openai_api import openai_routes

    if not api_key and (share or host not in ("127.0.0.1", "localhost", "::1")):
        log.warning("serving beyond this machine (%s) without an API key: anyone who reaches it can use /v1 "
                    "(set --api-key)", "a share link" if share else host)
    app_kwargs = dict(kwargs.pop("app_kwargs", None) or {})
    app_kwargs["routes"] = [*openai_routes(bot, api_key), *app_kwargs.get("routes", [])]
    kwargs["app_kwargs"] = app_kwargs
    demo = build_app(bot, max_upload_mb=max_upload_mb)
    kwargs.setdefault("show_error", False)
    kwargs.setdefault("max_file_size", f"{max_upload_mb:g}mb")
    kwargs.setdefault("footer_links", ["api"])
    demo.launch(server_name=host, server_port=port, share=share, **kwargs)
    return demo
