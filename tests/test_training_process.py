"""Training never blocks chat: the Skills tab trains in a child process (``bot.training_process``).

A served app on the tiny toy bot, driven through ``gradio_client``: a chat turn completes while a
skill trains; a SIGKILLed training process leaves the server answering and the skills folder as it
was; a skill trained in the child is usable in the server at once, without a restart.
"""
from __future__ import annotations

import os
import shutil
import signal
import time

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
gr = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

from tests.conftest import write_toy_data  # noqa: E402
from tests.test_ui import chat, free_port, labels  # noqa: E402

WAIT_S = 240  # the child's start-up (importing torch, loading the backbone) is slow on a busy machine


@pytest.fixture(scope="module")
def bot(tiny_dir, tiny_skills_dir, tmp_path_factory):
    from bot import AdapterBot

    root = tmp_path_factory.mktemp("training-process") / "skills"
    shutil.copytree(tiny_skills_dir, root)
    return AdapterBot.from_pretrained(tiny_dir, root)


@pytest.fixture(scope="module")
def server(bot):
    from bot.training_process import running
    from ui.app import launch

    demo = launch(bot, port=free_port(), max_upload_mb=1, prevent_thread_lock=True, quiet=True)
    yield demo
    for proc in running():  # a failed test must not leave a training behind
        proc.kill()
    demo.close()


def client(server):
    return gradio_client.Client(server.local_url, verbose=False)


def start_training(c, name: str, data, epochs: int):
    return c.submit(name, "toy", gradio_client.handle_file(str(data)), None, False, epochs, 1e-3, api_name="/add_skill")


def wait_for_epochs(job) -> None:
    """Until the page's progress bar shows the child training (its backbone loaded, epochs running)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        assert not job.done(), job.result()  # raises the add's error if it failed early
        units = job.status().progress_data or []
        if any("epoch" in (u.desc or "") for u in units):
            return
        time.sleep(0.05)
    raise AssertionError("the training process never reported an epoch")


def test_chat_goes_on_while_a_skill_trains(server, bot, tmp_path):
    from bot.training_process import running

    c, other = client(server), client(server)
    job = start_training(c, "gamma", write_toy_data(tmp_path / "printers.jsonl", "alpha"), epochs=50)
    wait_for_epochs(job)
    [child] = running()
    started = time.monotonic()
    _, messages, _, _ = chat(other, "i feel sad today", mode="beta")
    assert labels(messages) == ["beta · picked by hand"]
    assert child.poll() is None and not job.done(), "the chat turn waited for the training to end"
    assert time.monotonic() - started < 30
    status, *_ = job.result(timeout=WAIT_S)
    assert "Installed **gamma**" in status
    c.predict("gamma", api_name="/remove_skill")


def test_a_killed_training_leaves_the_server_serving(server, bot, tmp_path):
    from bot.training_process import running

    before = bot.registry.names()
    manager = list(bot.manager.skills)
    c = client(server)
    job = start_training(c, "delta", write_toy_data(tmp_path / "printers.jsonl", "alpha"), epochs=50)
    wait_for_epochs(job)
    [child] = running()
    os.kill(child.pid, signal.SIGKILL)
    with pytest.raises(Exception, match="the training process exited with code -9; nothing was installed") as info:
        job.result(timeout=WAIT_S)
    assert "Traceback" not in str(info.value)
    assert not running()
    _, messages, _, _ = chat(c, "my printer will not print", mode="alpha")
    assert labels(messages) == ["alpha · picked by hand"]
    assert bot.registry.names() == before == ["alpha", "beta"] and bot.skills == before
    assert sorted(p.name for p in bot.registry.root.iterdir()) == ["_manager", "alpha", "beta"]  # no leftover folder
    assert bot.manager is not None and list(bot.manager.skills) == manager


def test_a_skill_trained_in_the_child_is_used_without_restart(server, bot, tmp_path):
    c = client(server)
    status, table, _, _ = c.predict("gamma", "fixes printers", gradio_client.handle_file(str(write_toy_data(
        tmp_path / "printers.jsonl", "alpha"))), None, False, 2, 1e-3, api_name="/add_skill")
    assert "Installed **gamma**" in status and "The dialogue manager learned the new skill" in status
    assert "gamma" in [row[0] for row in table["data"]]
    assert "gamma" in bot.skills and "gamma" in bot.manager.skills  # swapped into the running bot
    assert bot.specs["gamma"].adapter.epochs == 2
    _, messages, _, _ = chat(c, "my router will not connect", mode="gamma")
    assert labels(messages) == ["gamma · picked by hand"]
    reply = bot.respond(["my router will not connect"])  # the manager can route to the new skill
    assert "gamma" in reply.scores
    c.predict("gamma", api_name="/remove_skill")


def test_child_errors_come_back_readable(bot, tmp_path):
    """A refusal raised in the child reaches the caller as its class names and one line."""
    from bot.training_process import TrainingError, add_skill_in_child

    bad = tmp_path / "broken.jsonl"
    bad.write_text('{"context": ["hi"], "response": \nnot json at all\n', encoding="utf-8")
    with pytest.raises(TrainingError, match="no usable example") as info:
        add_skill_in_child(bot, "newskill", bad)
    assert info.value.is_a(ValueError) and "Traceback" not in str(info.value)
    assert bot.registry.names() == ["alpha", "beta"]
