"""Adding a skill in a separate process, so that a running server keeps answering while it trains.

The server side, :func:`add_skill_in_child`, starts ``python -m bot.training_process`` (a fresh
interpreter: no state of the server, its threads or its ``__main__`` is copied into it), writes one
JSON request to its stdin and reads JSON lines from its stdout until it exits:

- ``{"progress": FRACTION, "message": TEXT}``: a training progress report;
- ``{"result": {...}}``: the :class:`bot.skill_builder.AddResult`'s fields;
- ``{"error": {"type": NAME, "types": [NAMES...], "message": ONE_LINE}}``: why the add was refused
  (``types``: the names of the exception's classes, most derived first, so the caller can tell a
  user's mistake from a bug without unpickling anything).

Nothing but JSON crosses the pipe. The child loads its own copy of the backbone (the server's, by
path or hub id, on the same device) and the skills folder, and runs :func:`bot.skill_builder.add_skill`:
the skill is installed atomically and the manager, when there is one, learns it and is saved, both by
the child. The server then swaps them in through the bot's public methods (``bot.load_skill``,
``bot.load_manager``). Anything printed by libraries in the child goes to its stderr (the server's
log), never into the protocol.

A child that dies (killed, out of memory, crashed) raises :class:`TrainingStopped` with its exit
code; the folder an interrupted install left (``.tmp-NAME-*``) is deleted and a skill it installed
but could not finish (installed before the manager learned it) is removed again, so the skills
folder holds the skills it held before.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from skills.spec import AdapterTraining

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]
NICE = 10  # the child's scheduling niceness: on a small machine, chat turns come first
PROGRESS_INTERVAL_S = 0.1  # the child reports progress at most this often (the first and last report always)
_PROJECT_ROOT = Path(__file__).resolve().parent.parent

_children: list[subprocess.Popen] = []  # the training processes now running (for tests and shutdown)
_children_lock = threading.Lock()


class TrainingError(Exception):
    """The child refused or failed the add; ``types`` names the original exception's classes."""

    def __init__(self, message: str, type_name: str = "Exception", types: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.type_name = type_name
        self.types = tuple(types) or (type_name,)

    def is_a(self, *classes: type[BaseException]) -> bool:
        """Whether the original exception was an instance of one of ``classes`` (compared by name)."""
        return any(c.__name__ in self.types for c in classes)


class TrainingStopped(RuntimeError):
    """The training process exited without a result (killed, crashed, out of memory)."""

    def __init__(self, message: str, exit_code: int | None) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def running() -> list[subprocess.Popen]:
    """The training processes started by this process that are still running."""
    with _children_lock:
        return [p for p in _children if p.poll() is None]


def backbone_source(bot) -> str:
    """What to load the bot's backbone from in another process: its local folder or hub id."""
    backbone = bot.model.backbone
    source = getattr(backbone, "name_or_path", None) or getattr(backbone.config, "_name_or_path", None)
    if not source:
        raise ValueError("cannot tell where the bot's backbone was loaded from, so a training process cannot load it")
    return str(Path(source).resolve()) if Path(source).is_dir() else str(source)


def _device(bot) -> str:
    return str(next(bot.model.backbone.parameters()).device)


def _threads() -> int:
    return max(1, (os.cpu_count() or 1) // 2)  # leave half the cores to the server


def _stale(root: Path, name: str) -> set[Path]:
    return set(root.glob(f".tmp-{name}-*")) if root.is_dir() else set()


def _identity(folder: Path) -> tuple[int, int] | None:
    """Something that changes when an install renames a new folder into place."""
    try:
        st = folder.stat()
    except OSError:
        return None
    return st.st_ino, st.st_dev


def add_skill_in_child(bot, name: str, data: str | Path, *, description: str = "", knowledge: str | Path | None = None,
                       replace: bool = False, training: AdapterTraining | None = None, data_label: str | None = None,
                       progress: Progress | None = None, faq: bool = False):
    """:func:`bot.skill_builder.add_skill` in a child process, then the new skill and manager swapped into ``bot``.

    ``bot`` keeps serving meanwhile: this call only waits for the child (streaming its progress to
    ``progress``) and then calls ``bot.load_skill(name)`` and ``bot.load_manager()``.

    Raises:
        TrainingError: the child refused or failed the add (bad name, data, settings...), with the
            original exception's class names and its one-line message.
        TrainingStopped: the child exited without a result; nothing was installed (unless a
            ``replace`` had already swapped the new skill in, which the message then says).
    """
    from .skill_builder import AddResult, remove_skill

    registry = bot.registry
    training = training or AdapterTraining()
    request = {
        "backbone": backbone_source(bot), "device": _device(bot), "skills_dir": str(registry.root),
        "name": name, "data": str(Path(data).resolve()) if not str(data).startswith("hf:") else str(data),
        "description": description, "knowledge": str(Path(knowledge).resolve()) if knowledge else None,
        "replace": bool(replace), "training": dataclasses.asdict(training), "data_label": data_label,
        "threads": _threads(), "nice": NICE, "faq": bool(faq),
    }
    before_tmp = _stale(registry.root, name)
    was_installed = name in registry
    before_identity = _identity(registry.path(name)) if was_installed else None

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PROJECT_ROOT), env.get("PYTHONPATH")) if p)
    # Run from the project's folder (every path in the request is absolute), so nothing in the server's
    # working folder (a ``bot.py`` of the user's, say) can shadow the packages.
    proc = subprocess.Popen([sys.executable, "-m", "bot.training_process"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=None, text=True, encoding="utf-8", bufsize=1, env=env,
                            cwd=str(_PROJECT_ROOT))
    with _children_lock:
        _children[:] = [p for p in _children if p.poll() is None] + [proc]
    result: dict | None = None
    error: dict | None = None
    try:
        try:
            proc.stdin.write(json.dumps(request) + "\n")
            proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass  # the child died at once; its exit code says why
        for line in proc.stdout:
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                log.warning("training process: unreadable line %r", line[:200])
                continue
            if not isinstance(message, dict):
                continue
            if "progress" in message and progress is not None:
                try:
                    progress(float(message["progress"]), str(message.get("message", "")))
                except (TypeError, ValueError):
                    pass
            elif isinstance(message.get("result"), dict):
                result = message["result"]
            elif isinstance(message.get("error"), dict):
                error = message["error"]
        code = proc.wait()
        if result is not None and code != 0:  # the add was complete when it reported its result
            log.warning("training process for %r exited with code %s after reporting its result", name, code)
    except BaseException:
        proc.kill()  # the caller gave up (e.g. the server is stopping): so does the training
        proc.wait()
        raise
    finally:
        proc.stdout.close()
        with _children_lock:
            if proc in _children:
                _children.remove(proc)

    if error is not None:
        types = tuple(str(t) for t in error.get("types", ()) if isinstance(t, str))
        raise TrainingError(str(error.get("message", "")), str(error.get("type", "Exception")), types)
    if result is None:
        raise _stopped(bot, name, code, before_tmp, was_installed, before_identity, replace, remove_skill)

    # The child installed the skill and saved the manager: swap both in, skill first, so the manager
    # never routes to a class whose adapter is missing.
    if progress is not None:
        progress(1.0, f"{name}: loading the new skill")
    try:
        bot.load_skill(name)
        bot.load_manager()
    except BaseException:
        if not replace:  # as add_skill does: a failed add leaves nothing behind
            if name in bot.skills:
                bot.unload_skill(name)
            remove_skill(registry, name)
            bot.load_manager()
        raise
    known = {f.name for f in dataclasses.fields(AddResult)}
    fields = {k: v for k, v in result.items() if k in known}
    fields["path"] = Path(fields.get("path") or registry.path(name))
    return AddResult(**fields)


def _stopped(bot, name, code, before_tmp, was_installed, before_identity, replace, remove_skill) -> TrainingStopped:
    """Clean up after a child that exited without a result, and say what happened."""
    import shutil

    registry = bot.registry
    for leftover in _stale(registry.root, name) - before_tmp:  # the install it was writing
        shutil.rmtree(leftover, ignore_errors=True)
    how = f"the training process exited with code {code}"
    if code is not None and code < 0:
        log.warning("training process for %r killed by signal %d", name, -code)
    installed = name in registry  # (also puts back a skill a replace's interrupted swap left aside)
    if installed and not was_installed:  # killed after installing, before the manager learned it: undo
        remove_skill(registry, name)
        bot.load_manager()
        return TrainingStopped(f"Training stopped: {how}; nothing was installed.", code)
    if installed and replace and _identity(registry.path(name)) != before_identity:
        bot.load_skill(name)
        bot.load_manager()
        return TrainingStopped(f"Training stopped: {how} after the new {name!r} was installed; it is loaded, but the "
                               "dialogue manager may not have learned it (run `adapterbot manager train`).", code)
    return TrainingStopped(f"Training stopped: {how}; nothing was installed.", code)


# ---- the child ------------------------------------------------------------------------------------

def _serve(request: dict[str, Any], send: Callable[[dict], None]) -> None:
    import torch

    from skills import SkillRegistry

    from .adapter import AdaptedModel
    from .backbone import load_backbone
    from .chatbot import AdapterBot
    from .skill_builder import add_skill

    torch.set_num_threads(int(request.get("threads") or 1))
    name = request["name"]
    send({"progress": 0.0, "message": f"{name}: loading the backbone"})
    # A lean bot: the backbone and the manager. Adding a skill trains on the bare backbone and never
    # reads the other skills' adapters or knowledge, so they are not loaded.
    model, tokenizer, backbone = load_backbone(request["backbone"], device=request.get("device") or "cpu")
    bot = AdapterBot(AdaptedModel(model, backbone), tokenizer, SkillRegistry(request["skills_dir"]))
    bot.load_manager()
    if request.get("nice"):  # only now: start-up at full priority, the long part niced
        try:
            os.nice(int(request["nice"]))
        except (AttributeError, OSError):
            pass
    last = 0.0

    def progress(fraction: float, message: str) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= PROGRESS_INTERVAL_S or fraction >= 1.0:
            last = now
            send({"progress": float(fraction), "message": message})

    result = add_skill(bot, name, request["data"], description=request.get("description") or "",
                       knowledge=request.get("knowledge"), replace=bool(request.get("replace")),
                       training=AdapterTraining(**request["training"]), progress=progress, show_bar=False,
                       data_label=request.get("data_label"), faq=bool(request.get("faq")))
    fields = dataclasses.asdict(result)
    fields["path"] = str(result.path)
    send({"result": fields})


def main() -> int:
    """The child: read one request from stdin, report on stdout (JSON lines), exit 0 on success."""
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints go to the log, not into the protocol
    sys.stdout = sys.stderr
    logging.basicConfig(level=logging.WARNING, format="[training process] %(levelname)s %(name)s: %(message)s")

    def send(message: dict) -> None:
        protocol.write(json.dumps(message) + "\n")
        protocol.flush()

    try:
        _serve(json.loads(sys.stdin.readline()), send)
    except BaseException as e:  # reported as data: type names and one line, nothing pickled
        from .errors import one_line

        expected = isinstance(e, (ValueError, LookupError, OSError))
        if not expected:
            log.exception("adding the skill failed")
        try:
            send({"error": {"type": type(e).__name__, "types": [c.__name__ for c in type(e).__mro__],
                            "message": one_line(e)}})
        except OSError:
            pass
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
