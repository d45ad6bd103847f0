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


def test_chat_goes_on_while_a_skill_trains_then_the_skill_is_used_without_restart(server, bot, tmp_path):
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

    # The skill the child trained is swapped into the running server: no restart.
    status, table, _, _ = job.result(timeout=WAIT_S)
    assert "Installed **gamma**" in status and "The dialogue manager learned the new skill" in status
    assert "gamma" in [row[0] for row in table["data"]]
    assert "gamma" in bot.skills and "gamma" in bot.manager.skills
    assert bot.specs["gamma"].adapter.epochs == 50
    _, messages, _, _ = chat(c, "my router will not connect", mode="gamma")
    assert labels(messages) == ["gamma · picked by hand"]
    assert "gamma" in bot.respond(["my router will not connect"]).scores  # the manager can route to it
    c.predict("gamma", api_name="/remove_skill")
    assert bot.registry.names() == ["alpha", "beta"]


def test_a_killed_training_leaves_the_server_serving(server, bot, tmp_path):
    from bot.training_process import running

    before = bot.registry.names()
    manager = list(bot.manager.skills)
    c = client(server)
    job = start_training(c, "delta", write_toy_data(tmp_path / "printers.jsonl", "alpha"), epochs=50)
    wait_for_epochs(job)
    with pytest.raises(Exception, match="A skill is training"):  # the child saves the manager: no removal meanwhile
        c.predict("beta", api_name="/remove_skill")
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


def test_a_child_that_died_after_installing_is_undone(bot, tmp_path):
    """Killed between the install and the manager's update: the half-added skill and the temporary folder go."""
    import shutil as sh

    from bot.skill_builder import remove_skill
    from bot.training_process import _stopped

    registry = bot.registry
    spec = registry.spec("alpha")
    spec.name = "omega"
    with registry.install("omega") as folder:  # what the child had installed when it died
        for f in ("adapter_config.json", "adapter_model.safetensors"):
            sh.copyfile(registry.path("alpha") / f, folder / f)
        spec.save(folder)
    (registry.root / ".tmp-omega-abc123").mkdir()  # and a second install it was writing
    error = _stopped(bot, "omega", -9, set(), False, None, False, remove_skill)
    assert str(error) == "Training stopped: the training process exited with code -9; nothing was installed."
    assert error.exit_code == -9
    assert registry.names() == ["alpha", "beta"]
    assert sorted(p.name for p in registry.root.iterdir()) == ["_manager", "alpha", "beta"]


def test_training_errors_keep_their_class_names():
    from bot.training_process import TrainingError
    from skills.registry import UnknownSkillError

    e = TrainingError("no skill 'x' installed", "UnknownSkillError", ("UnknownSkillError", "LookupError", "Exception"))
    assert e.is_a(UnknownSkillError, ValueError) and not e.is_a(ValueError) and str(e) == "no skill 'x' installed"
