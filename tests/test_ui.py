"""The web chat: built on the tiny toy bot, served in-process, driven through ``gradio_client``."""
from __future__ import annotations

import os
import re
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
    """One ``/chat`` call, then the side panel the page shows after it; returns (textbox, messages, scores, knowledge)."""
    box, messages = c.predict(message, mode, overrides or {}, api_name="/chat")
    scores, knowledge = c.predict(api_name="/chat_panel")[:2]
    return box, messages, scores, knowledge


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
    from bot.chatbot import AUTO
    from ui.chat import (MAX_MESSAGE_CHARS, check_history, check_message, clean_overrides, decoding_defaults, describe_decoding,
                         mode_choices, parse_mode)

    assert [v for _, v in mode_choices(ui_bot)] == ["auto", "alpha", "beta", "bare"]
    assert parse_mode("auto", ui_bot) == AUTO and parse_mode("Auto (dialogue manager)", ui_bot) == AUTO
    assert parse_mode("bare", ui_bot) is None and parse_mode("Bare backbone (chit-chat)", ui_bot) is None
    assert parse_mode("alpha", ui_bot) == "alpha"
    with pytest.raises(ValueError, match="Unknown routing mode 'gamma'.*'auto', 'bare' or an installed skill \\(alpha, beta\\)"):
        parse_mode("gamma", ui_bot)
    assert clean_overrides({}) == {} and clean_overrides(None) == {}
    assert clean_overrides({"temperature": 1, "do_sample": True, "other": 3, "top_p": None}) == {"temperature": 1.0, "do_sample": True}
    for bad in ({"top_p": 1.5}, {"max_new_tokens": 0}, {"temperature": "hot"}, {"do_sample": "yes"}, [1]):
        with pytest.raises(ValueError):
            clean_overrides(bad)
    assert decoding_defaults(ui_bot, "alpha")["max_new_tokens"] == ui_bot.specs["alpha"].decoding.max_new_tokens
    bare = decoding_defaults(ui_bot, None)
    assert bare["do_sample"] is True and bare["candidates"] == 8 and bare["repetition_penalty"] == 1.0
    assert "the likeliest of 8 replies" in describe_decoding(bare)
    assert "likeliest" not in describe_decoding(decoding_defaults(ui_bot, "alpha"))
    assert check_message("  hi  ") == "hi" and check_message("x" * MAX_MESSAGE_CHARS) == "x" * MAX_MESSAGE_CHARS
    with pytest.raises(ValueError, match="The message has 4,001 characters, over the limit of 4,000"):
        check_message("x" * 4001)
    with pytest.raises(ValueError, match="empty"):
        check_message(" \n ")
    assert check_history(None) == [] and check_history(["a", "b"]) == ["a", "b"]
    with pytest.raises(ValueError, match=r"history\[1\] must be a string, got int"):
        check_history(["a", 3])
    with pytest.raises(ValueError, match=r"history\[0\] has 4,001 characters, over the limit of 4,000"):
        check_history(["x" * 4001])
    with pytest.raises(ValueError, match="history has 201 turns, over the limit of 200"):
        check_history(["a"] * 201)


def test_labels_say_why_the_bare_backbone_answered():
    from bot.chatbot import Reply
    from ui.chat import CHITCHAT, details_markdown, skill_label

    settings = {"do_sample": False, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 8, "repetition_penalty": 1.0}
    assert skill_label(Reply("x", "alpha", 0.934, {"none": 0.05, "alpha": 0.934}), forced=False, threshold=0.8) == "alpha · 0.93"
    assert skill_label(Reply("x", "beta"), forced=True, threshold=0.8) == "beta · picked by hand"
    assert skill_label(Reply("x", None), forced=False, threshold=None) == f"{CHITCHAT} · no manager installed"
    # chit-chat itself won: its own probability
    assert skill_label(Reply("x", None, 0.6, {"none": 0.6, "alpha": 0.4}), forced=False, threshold=0.8) == f"{CHITCHAT} · 0.60"
    # a skill won but under the threshold: the label says so instead of "chit-chat · 0.10"
    missed = Reply("x", None, 0.10, {"none": 0.10, "alpha": 0.74, "beta": 0.16})
    assert skill_label(missed, forced=False, threshold=0.8) == \
        f"{CHITCHAT} · top skill alpha 0.74 is under the threshold 0.80"
    details = details_markdown(missed, False, settings, 0.8)
    assert "threshold of 0.80" in details and "**alpha**, scored 0.74" in details and "chit-chat's own score: 0.10" in details
    assert details_markdown(Reply("x", None), False, settings, 0.8).startswith("Not routed (a message without words")
    assert "No dialogue manager" in details_markdown(Reply("x", None), False, settings, None)
    # never "0.80 is under the threshold 0.80", nor a threshold of 0.995 shown as 1.00
    assert skill_label(Reply("x", None, 0.2, {"none": 0.2, "alpha": 0.7996}), forced=False, threshold=0.8).endswith(
        "alpha 0.7996 is under the threshold 0.8000")
    assert skill_label(Reply("x", None, 0.01, {"none": 0.01, "alpha": 0.99}), forced=False, threshold=0.995).endswith(
        "alpha 0.990 is under the threshold 0.995")


def test_passage_retrieved_but_not_used_is_labelled_so():
    from bot.chatbot import Reply
    from ui.chat import NO_KNOWLEDGE, knowledge_markdown

    assert knowledge_markdown(Reply("x", "alpha")) == NO_KNOWLEDGE
    used = knowledge_markdown(Reply("x", "alpha", knowledge="Paris is the capital.", knowledge_used=True))
    assert used.startswith("**alpha** grounded its reply on") and "> Paris is the capital." in used
    unused = knowledge_markdown(Reply("x", "alpha", knowledge="Paris is the capital.", knowledge_used=False))
    assert "did not use it" in unused and "grounded" not in unused


def test_build_app(ui_bot):
    from ui.app import build_app

    demo = build_app(ui_bot)
    assert isinstance(demo, gr.Blocks) and demo.title == "Adapter-Bot"
    names = {d.api_name for d in demo.fns.values() if d.api_name and d.api_visibility == "public"}
    assert names == {"respond", "add_skill", "remove_skill", "skills"}
    undocumented = {d.api_name for d in demo.fns.values() if d.api_visibility == "undocumented"}
    assert {"chat", "clear"} <= undocumented  # the page's own events: callable, not offered as the API
    [box] = [b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "ab-message"]
    assert box.max_length is None  # the browser must not cut a long paste silently; the server refuses it by name
    assert "4,000 characters" in box.placeholder


def test_add_warnings_are_shown(ui_bot, tmp_path, monkeypatch):
    from bot.skill_builder import AddResult
    from ui import skills_tab

    shown: list[tuple[str, str | None]] = []
    result = AddResult("delta", tmp_path, 30, 0, [], {"train": 24, "valid": 3, "test": 3}, 40.0, 45.0, 0.02, 1.0, True,
                       warnings=["the skill did not learn: its test perplexity is not below the bare backbone's",
                                 "the test split has only 3 example(s)"])
    monkeypatch.setattr(skills_tab, "add_skill_in_child", lambda *a, **k: result)
    monkeypatch.setattr(gr, "Warning", lambda message, title=None, **k: shown.append((message, title)))
    data = write_toy_data(tmp_path / "d.jsonl", "alpha")
    status, *_ = skills_tab.make_add_handler(ui_bot, max_upload_mb=1)("delta", "", str(data), progress=lambda *a, **k: None)
    assert status.startswith("Installed **delta**") and "so Auto can route to it." in status
    assert status.endswith("> ⚠️ **2 warnings**\n>\n"
                           "> - The skill did not learn: its test perplexity is not below the bare backbone's.\n"
                           "> - The test split has only 3 example(s).\n")
    assert shown == [("The skill did not learn: its test perplexity is not below the bare backbone's.",
                      "Skill 'delta' installed with a warning"),
                     ("The test split has only 3 example(s).", "Skill 'delta' installed with a warning")]
    result.warnings, result.routing = [], {"tech_support": 2, "delta": 1}
    status, *_ = skills_tab.make_add_handler(ui_bot, max_upload_mb=1)("delta", "", str(data), progress=lambda *a, **k: None)
    assert "⚠️" not in status and len(shown) == 2
    assert ("so Auto can route to it: it routes 1 of 3 held-out test conversations to it (33%; each test example "
            "alone and after small talk; only 1 test examples, too few to trust the share).") in status


def test_training_progress_names_the_skill(tiny_bot, tmp_path):
    from ui.skills_tab import make_add_handler

    shown: list[str] = []
    data = write_toy_data(tmp_path / "printers.jsonl", "alpha")
    status, *_ = make_add_handler(tiny_bot, max_upload_mb=1)("money", "", str(data), None, False, 2,
                                                             progress=lambda fraction, desc="": shown.append(desc))
    assert "Installed **money**" in status
    assert "money: epoch 2/2" in shown, shown  # the page's progress bar names the skill ...
    assert not [d for d in shown if "_new_" in d], shown  # ... never the temporary name it trains under


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


def test_refusals_name_the_limit_or_value_and_add_no_turn(server):
    c = client(server)
    _, messages, _, _ = chat(c, "hello there")
    assert len(messages) == 3
    cases = [  # the validator names the parameter and the limit or value; the page shows it on that input
        ("x" * 50_000, "auto", {}, "- message: The message has 50,000 characters, over the limit of 4,000"),
        ("   ", "auto", {}, "- message: The message is empty"),
        ("hi", "nonexistent", {}, "- mode: Unknown routing mode 'nonexistent'"),
        ("hi", "alpha", {"top_p": 7}, "- overrides: top_p must be in (0, 1], got 7"),
        ("hi", "alpha", {"max_new_tokens": 999}, "- overrides: max_new_tokens must be between 1 and 256, got 999"),
    ]
    for message, mode, overrides, expected in cases:
        with pytest.raises(gradio_client.exceptions.ValidationError) as info:
            chat(c, message, mode, overrides)
        assert expected in str(info.value), str(info.value)
    _, after, _, _ = chat(c, "and again")
    assert user_texts(after) == ["hello there", "and again"]  # nothing was added by the refused turns
    assert after[:3] == messages


def test_respond_endpoint_has_named_documented_fields(server, ui_bot):
    c = client(server)
    info = c.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert "/chat" not in info and "/clear" not in info  # the page's events are not the documented API
    params = [p["parameter_name"] for p in info["/respond"]["parameters"]]
    assert params == ["message", "history", "mode", "overrides"]
    [returns] = info["/respond"]["returns"]
    assert set(returns["type"]["properties"]) == {"reply", "skill", "confidence", "label", "scores", "passage"}
    assert "value_" not in str(info["/respond"])

    out = c.predict("i feel sad today", api_name="/respond")
    assert set(out) == {"reply", "skill", "confidence", "label", "scores", "passage"}
    assert isinstance(out["reply"], str) and out["passage"] is None
    assert set(out["scores"]) == {"none", "alpha", "beta"} and abs(sum(out["scores"].values()) - 1) < 1e-4
    assert out["confidence"] == pytest.approx(out["scores"][out["skill"] or "none"])
    expected = ui_bot.respond(["i feel sad today"], skill="auto")  # greedy: the same reply
    assert (out["reply"], out["skill"]) == (expected.text, expected.skill)

    forced = c.predict(message="my printer will not print", history=["hi", "hello"], mode="alpha",
                       overrides={"max_new_tokens": 3}, api_name="/respond")
    assert forced["skill"] == "alpha" and forced["confidence"] is None and forced["scores"] == {}
    assert forced["label"] == "alpha · picked by hand"
    assert forced["reply"] == ui_bot.respond(["hi", "hello", "my printer will not print"], skill="alpha", max_new_tokens=3).text
    bare = c.predict("hello", mode="bare", api_name="/respond")
    assert bare["skill"] is None and bare["label"] == "chit-chat (bare backbone) · picked by hand"

    for kwargs, expected in [
        ({"message": "x" * 4001}, "The message has 4,001 characters, over the limit of 4,000"),
        ({"message": "hi", "mode": "nonexistent"}, "Unknown routing mode 'nonexistent'"),
        ({"message": "hi", "overrides": {"temperature": -1}}, "temperature must be above 0, got -1"),
        ({"message": "hi", "history": ["ok", 5]}, "history[1] must be a string, got int"),
    ]:
        with pytest.raises(gradio_client.exceptions.AppError) as info:
            c.predict(**kwargs, api_name="/respond")
        assert expected in str(info.value), str(info.value)


def test_a_fallback_turn_is_labelled_with_the_threshold(server, ui_bot):
    def top_skill(m: str) -> tuple[str, float]:
        return max(ui_bot.manager.route([m]).scores.items(), key=lambda kv: kv[1])

    # a message whose top class is a skill that a threshold of 1.0 turns away, its score short of 1 in the label's digits
    message = next(m for m in ("i feel sad today", "my printer will not print", "i feel lonely lately", "my router will not connect",
                               "the printer is sad today", "printer sad")  # the last two mix both toy skills' words
                   if top_skill(m)[0] != "none" and top_skill(m)[1] < 0.999)
    top, score = top_skill(message)
    threshold, ui_bot.manager.config.threshold = ui_bot.manager.config.threshold, 1.0  # no skill can clear it
    try:
        out = client(server).predict(message, api_name="/respond")
        _, messages, _, _ = chat(client(server), message)
    finally:
        ui_bot.manager.config.threshold = threshold
    assert out["skill"] is None and out["confidence"] == pytest.approx(out["scores"]["none"])
    # e.g. "... top skill beta 0.97 is under the threshold 1.00" (more digits where 2 would print them equal)
    shown = re.fullmatch(rf"chit-chat \(bare backbone\) · top skill {top} (0\.\d+) is under the threshold (1\.0+)", out["label"])
    assert shown and float(shown[1]) == pytest.approx(score, abs=0.01), out["label"]
    assert labels(messages) == [out["label"]]
    assert f"No skill cleared the dialogue manager's threshold of {shown[2]}" in text(messages[1])


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
    test_size = ui_bot.specs["gamma"].splits["test"]  # 30 toy examples: a test split too small to judge, and it says so
    assert f"The test split has only {test_size} example(s)" in status, status
    assert "will likely read poorly" in status and "Answer from the dialogues" in status  # the toy adapter is weak
    assert "gamma" in [row[0] for row in table["data"]]
    assert [s["name"] for s in c.predict(api_name="/skills")] == ["alpha", "beta", "gamma"]
    _, messages, _, _ = chat(c, "my router will not connect", mode="gamma")
    assert labels(messages) == ["gamma · picked by hand"]

    status, table, _, _ = c.predict("gamma", api_name="/remove_skill")
    assert "Removed **gamma**" in status and "gamma" not in [row[0] for row in table["data"]]
    assert "gamma" not in ui_bot.skills and "gamma" not in ui_bot.registry
    with pytest.raises(gradio_client.exceptions.ValidationError, match="Unknown routing mode 'gamma'"):  # refused, named
        chat(c, "my router will not connect", mode="gamma")
    _, after, _, _ = chat(c, "hello", mode="beta")
    assert user_texts(after) == ["my router will not connect", "hello"]  # the refused turn left no trace
    with pytest.raises(Exception, match="No skill 'gamma' is installed"):
        c.predict("gamma", api_name="/remove_skill")


def test_a_skill_added_as_a_faq_from_the_page_copies_from_its_dialogues(server, ui_bot, tmp_path):
    from skills.knowledge import read_passages

    c = client(server)
    data = write_toy_data(tmp_path / "printers.jsonl", "alpha")
    status, *_ = c.predict("faqs", "fixes printers", gradio_client.handle_file(str(data)), None, False, 1, 0.005,
                           "bottleneck", True, api_name="/add_skill")
    assert "Installed **faqs**" in status and "will likely read poorly" not in status, status
    spec = ui_bot.specs["faqs"]
    assert spec.knowledge.mode == "retrieval" and spec.decoding.copy_boost is not None
    assert len(read_passages(ui_bot.registry.path("faqs") / spec.knowledge.file)) == 30
    c.predict("faqs", api_name="/remove_skill")
