"""A fork server that runs ``adapterbot`` commands in child processes for crash-safety tests.

Usage: ``python tests/crash_worker.py``

Start-up (importing torch and transformers) takes most of a run on a busy machine, so the
worker pays it once: it imports everything a command needs, prints ``READY``, then reads one
JSON job a line on stdin::

    {"args": [ADAPTERBOT ARGS...], "log": "/path/to/child.log", "die_after_moving": null}

For each job it forks a child that runs ``bot.cli.main(args)`` (stdout and stderr to ``log``)
and prints ``PID <pid>``, then ``EXIT <pid> code <n>`` or ``EXIT <pid> signal <n>`` once the
child is gone. The test kills the child with ``SIGKILL`` whenever it likes: a real ``kill -9``
of a process in the middle of the command.

``die_after_moving`` (a path) makes the child SIGKILL itself right after that path is renamed
away (``os.rename``/``os.replace``, which ``pathlib`` and ``shutil.move`` use too), to hit the
window of a two-step folder swap, too narrow for a random delay: the manager's save moves the
old ``_manager`` folder aside before moving the new one in, and ``skill add --replace`` moves
the installed skill's folder aside before renaming the new one into place. A swap with no such
window never triggers it, and the command then runs to its end.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402

torch.set_num_threads(1)

import bot.cli  # noqa: E402
import bot.manager_training  # noqa: E402,F401
import bot.skill_builder  # noqa: E402,F401
import bot.training  # noqa: E402,F401
import manager.storage  # noqa: E402,F401
import skills.corpora  # noqa: E402,F401
import skills.knowledge  # noqa: E402,F401
import skills.registry  # noqa: E402,F401
import transformers.generation  # noqa: E402,F401
import transformers.models.gpt2.modeling_gpt2  # noqa: E402,F401  (the slowest import, done once here)
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast  # noqa: E402,F401


def _die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _arm(path: str) -> None:
    watched = os.path.realpath(path)
    real_rename, real_replace = os.rename, os.replace

    def wrap(real):
        def move(src, dst, *args, **kwargs):
            moved_away = os.path.realpath(src) == watched
            real(src, dst, *args, **kwargs)
            if moved_away:
                _die()

        return move

    os.rename, os.replace = wrap(real_rename), wrap(real_replace)


def _child(job: dict) -> None:
    code = 3
    try:
        fd = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        if job.get("die_after_moving"):
            _arm(job["die_after_moving"])
        code = bot.cli.main(job["args"])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:  # the log shows it; the exit code tells the test
        traceback.print_exc()
        code = 3
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def main(argv: list[str]) -> int:
    print("READY", flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        job = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child(job)
        print(f"PID {pid}", flush=True)
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status):
            print(f"EXIT {pid} signal {os.WTERMSIG(status)}", flush=True)
        else:
            print(f"EXIT {pid} code {os.WEXITSTATUS(status)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
