"""The web chat: built on the tiny toy bot, served in-process, driven through ``gradio_client``."""
from __future__ import annotations

import os
import shutil
import socket
import threading

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
gr = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

from tests.conftest import write_toy_data  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ui_bot(tiny_dir, tiny_skills_dir, tmp_path_factory):
    """Like ``tiny_bot`` (a private copy of the toy skills 'alpha' and 'beta'), shared by this module's server."""
    from bot import AdapterBot

    root = tmp_path_factory.mktemp("ui") / "skills"
    shutil.copytree(tiny_skills_dir, root)
    return AdapterBot.from_pretrained(tiny_dir, root)


@pytest.fixture(scope="module")
def server(ui_bot):
    from ui.app import launch

    demo = launch(ui_bot, port=free_port(), max_upload_mb=1, prevent_thread_lock=True, quiet=True)
    yield demo
    demo.close()


def client(server):
    return gradio_client.Client(server.local_url, verbose=False)


def chat(c, message: str, mode: str = "auto", overrides: dict | None = None) -> tuple:
    """One ``/chat`` call; returns (textbox, messages, scores, knowledge)."""
    out = c.predict(message, mode, overrides or {}, api_name="/chat")
    return out[0], out[1], out[2], out[3]


def text(message: dict) -> str:
    content = message["content"]
    if isinstance(content, str):
        return content
    return "".join(block.get("text", "") for block in content if isinstance(block, dict))


def labels(messages: list[dict]) -> list[str]:
    """Titles of the bot's label messages, one per bot turn."""
    return [m["metadata"]["title"] for m in messages if m["role"] == "assistant" and (m.get("metadata") or {}).get("title")]


def user_texts(messages: list[dict]) -> list[str]:
    return [text(m) for m in messages if m["role"] == "user"]


# ---- no server ---------------------------------------------------------------------------------


def test_helpers(ui_bot):
    from bot.chatbot import AUTO, Reply
    from ui.chat import CHITCHAT, clean_overrides, decoding_defaults, mode_choices, parse_mode, skill_label

    assert [v for _, v in mode_choices(ui_bot)] == ["auto", "alpha", "beta", "bare"]
    assert parse_mode("auto", ui_bot) == AUTO and parse_mode("Auto (dialogue manager)", ui_bot) == AUTO
    assert parse_mode("bare", ui_bot) is None and parse_mode("Bare backbone (chit-chat)", ui_bot) is None
    assert parse_mode("alpha", ui_bot) == "alpha"
    with pytest.raises(ValueError, match="not installed"):
        parse_mode("gamma", ui_bot)
    assert clean_overrides({}) == {} and clean_overrides(None) == {}
    assert clean_overrides({"temperature": 1, "do_sample": True, "other": 3, "top_p": None}) == {"temperature": 1.0, "do_sample": True}
    for bad in ({"top_p": 1.5}, {"max_new_tokens": 0}, {"temperature": "hot"}, {"do_sample": "yes"}, [1]):
        with pytest.raises(ValueError):
            clean_overrides(bad)
    assert decoding_defaults(ui_bot, "alpha")["max_new_tokens"] == ui_bot.specs["alpha"].decoding.max_new_tokens
    assert decoding_defaults(ui_bot, None)["repetition_penalty"] == 1.2
    assert skill_label(Reply("x", "alpha", 0.934), forced=False, has_manager=True) == "alpha · 0.93"
    assert skill_label(Reply("x", None, 0.5), forced=False, has_manager=True) == f"{CHITCHAT} · 0.50"
    assert skill_label(Reply("x", "beta"), forced=True, has_manager=True) == "beta · picked by hand"


def test_build_app(ui_bot):
    from ui.app import build_app

    demo = build_app(ui_bot)
    assert isinstance(demo, gr.Blocks) and demo.title == "Adapter-Bot"
    names = {d.api_name for d in demo.fns.values() if d.api_name and d.api_visibility == "public"}
    assert {"chat", "clear", "add_skill", "remove_skill", "skills"} <= names


def test_upload_over_the_cap_is_refused(ui_bot, tmp_path):
    from ui.skills_tab import make_add_handler

    big = tmp_path / "big.jsonl"
    big.write_bytes(b"{}\n" * 400_000)  # 1.2 MB
    add = make_add_handler(ui_bot, max_upload_mb=1)
    with pytest.raises(gr.Error, match="over the 1 MB upload limit"):
        add("newskill", "", str(big), None, False, progress=lambda *a, **k: None)


# ---- served ------------------------------------------------------------------------------------


def test_turns_in_auto_and_manual_mode(server, ui_bot):
    c = client(server)
    box, messages, scores, _ = chat(c, "i feel sad today")
    assert box == "" and user_texts(messages) == ["i feel sad today"]
    [label] = labels(messages)
    assert any(label.startswith(name) for name in [*ui_bot.skills, "chit-chat"])
    assert " · 0." in label or " · 1.00" in label
    shown = {item["label"] for item in scores["value"]["confidences"]}
    assert {"alpha", "beta", "chit-chat (bare backbone)"} <= shown

    _, messages, _, _ = chat(c, "my printer will not print", mode="alpha")
    assert labels(messages)[-1] == "alpha · picked by hand"
    _, messages, _, _ = chat(c, "hello how are you", mode="bare", overrides={"max_new_tokens": 5})
    assert labels(messages)[-1] == "chit-chat (bare backbone) · picked by hand"
    assert "at most 5 new tokens" in text(messages[-2])
    assert user_texts(messages) == ["i feel sad today", "my printer will not print", "hello how are you"]
    assert len(messages) == 9  # each turn: the user's message, the label, the reply

    messages, _, _ = c.predict(api_name="/clear")
    assert messages == []
    _, messages, _, _ = chat(c, "hello again", mode="beta")
    assert user_texts(messages) == ["hello again"] and labels(messages) == ["beta · picked by hand"]


def test_sessions_stay_apart(server):
    results: dict[str, list] = {}
    errors: list[BaseException] = []

    def talk(who: str) -> None:
        try:
            c = client(server)
            chat(c, f"{who} first message")
            _, messages, _, _ = chat(c, f"{who} second message")
            results[who] = messages
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=talk, args=(who,)) for who in ("anna", "bob")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert user_texts(results["anna"]) == ["anna first message", "anna second message"]
    assert user_texts(results["bob"]) == ["bob first message", "bob second message"]


def test_empty_message_and_bad_settings_add_no_turn(server):
    c = client(server)
    _, messages, _, _ = chat(c, "   ")
    assert messages == []
    _, messages, _, _ = chat(c, "hello there")
    assert len(messages) == 3
    for message, mode, overrides in [("", "auto", {}), ("hi", "no_such_skill", {}), ("hi", "alpha", {"top_p": 7})]:
        box, after, _, _ = chat(c, message, mode, overrides)
        assert after == messages
        assert box == message  # the user's text stays in the box to fix and resend


def test_bad_uploads_give_readable_errors(server, tmp_path):
    c = client(server)
    good = write_toy_data(tmp_path / "good.jsonl", "alpha")
    bad_json = tmp_path / "broken.jsonl"
    bad_json.write_text('{"context": ["hi"], "response": \nnot json at all\n', encoding="utf-8")
    wrong_type = tmp_path / "notes.pdf"
    wrong_type.write_text("hello", encoding="utf-8")
    cases = [
        ("Bad Name!", good, "invalid skill name"),
        ("auto", good, "reserved"),
        ("alpha", good, "already installed"),
        ("newskill", bad_json, "no usable example"),
        ("newskill", wrong_type, "Invalid file type"),  # refused by gr.File(file_types=...)
    ]
    for name, path, expected in cases:
        with pytest.raises(Exception) as info:
            c.predict(name, "a description", gradio_client.handle_file(str(path)), None, False, api_name="/add_skill")
        message = str(info.value)
        assert expected in message, message
        assert "Traceback" not in message and "File \"" not in message
        assert "/gradio/" not in message  # the server's temporary upload path is not shown
    with pytest.raises(Exception, match="Choose a data file"):
        c.predict("newskill", "", None, None, False, api_name="/add_skill")
    names = [s["name"] for s in c.predict(api_name="/skills")]
    assert names == ["alpha", "beta"]


def test_training_settings_from_the_page_reach_the_skill(server, ui_bot, tmp_path):
    c = client(server)
    data = gradio_client.handle_file(str(write_toy_data(tmp_path / "printers.jsonl", "alpha")))
    with pytest.raises(Exception, match="greater than maximum value 1.0"):  # the page's bounds hold for API calls too
        c.predict("delta", "", data, None, False, 2, 100.0, api_name="/add_skill")
    assert "delta" not in ui_bot.registry.names()
    status, *_ = c.predict("delta", "", data, None, False, 1, 0.01, api_name="/add_skill")
    assert "Installed **delta**" in status
    adapter = ui_bot.specs["delta"].adapter
    assert (adapter.epochs, adapter.learning_rate) == (1, 0.01)
    c.predict("delta", api_name="/remove_skill")


def test_add_use_and_remove_a_skill(server, ui_bot, tmp_path):
    c = client(server)
    data = write_toy_data(tmp_path / "printers.jsonl", "alpha")
    status, table, _, _ = c.predict("gamma", "fixes printers", gradio_client.handle_file(str(data)), None, False,
                                    api_name="/add_skill")
    assert "Installed **gamma**" in status
    assert "gamma" in [row[0] for row in table["data"]]
    assert [s["name"] for s in c.predict(api_name="/skills")] == ["alpha", "beta", "gamma"]
    _, messages, _, _ = chat(c, "my router will not connect", mode="gamma")
    assert labels(messages) == ["gamma · picked by hand"]

    status, table, _, _ = c.predict("gamma", api_name="/remove_skill")
    assert "Removed **gamma**" in status and "gamma" not in [row[0] for row in table["data"]]
    assert "gamma" not in ui_bot.skills and "gamma" not in ui_bot.registry
    _, after, _, _ = chat(c, "my router will not connect", mode="gamma")
    assert after == messages  # no longer offered: refused without a turn
    with pytest.raises(Exception, match="No skill 'gamma' is installed"):
        c.predict("gamma", api_name="/remove_skill")
