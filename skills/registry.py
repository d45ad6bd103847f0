"""The installed skills of one folder: ``ROOT/NAME/`` with ``skill.yaml`` and the adapter's files.

Installing is atomic: a skill is built in a temporary folder inside ``ROOT`` and renamed into
place only when complete, so a crash leaves at most a ``.tmp-*`` or ``.trash-*`` folder, which
is never listed, and never a half-installed skill. No operation touches another skill's folder.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .files import replace_folder
from .spec import SPEC_FILE, SkillSpec, SpecError, validate_skill_name

ADAPTER_CONFIG_FILE = "adapter_config.json"
ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors"
REQUIRED_FILES = (SPEC_FILE, ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE)
_STALE_PREFIXES = (".tmp-", ".trash-", ".old-")


class UnknownSkillError(LookupError):
    """No skill of that name is installed; the message lists the installed ones."""


class SkillRegistry:
    """The skills installed in ``root`` (created on the first install if missing)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).expanduser().resolve()

    def __repr__(self) -> str:
        return f"SkillRegistry({str(self.root)!r})"

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._is_installed(name)

    def path(self, name: str) -> Path:
        """Folder of skill ``name`` (whether installed or not); never outside ``root``."""
        folder = self.root / validate_skill_name(name)
        # The name cannot climb out of root; a symlinked skill folder still could.
        if folder.resolve().parent != self.root:
            raise ValueError(f"skill folder {folder} resolves to {folder.resolve()}, outside {self.root}")
        return folder

    def _is_installed(self, name: str) -> bool:
        try:
            folder = self.path(name)
        except ValueError:
            return False
        return all((folder / f).is_file() for f in REQUIRED_FILES)

    def _recover(self) -> None:
        """Put back a skill whose ``install(replace=True)`` a crash cut between its two renames."""
        for old in self.root.glob(".old-*"):
            name = old.name[len(".old-"):].rsplit("-", 1)[0]
            target = self.root / name
            if not target.exists() and all((old / f).is_file() for f in REQUIRED_FILES):
                old.rename(target)

    def names(self) -> list[str]:
        """Installed skills, sorted: folders with a valid name holding a spec and an adapter.

        Valid names start with a lowercase letter, so ``.tmp-*``, ``.trash-*`` and ``_manager``
        (the dialogue manager's folder) are never listed.
        """
        if not self.root.is_dir():
            return []
        self._recover()
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and self._is_installed(p.name))

    def _unknown(self, name: str) -> UnknownSkillError:
        return UnknownSkillError(f"no skill {name!r} installed in {self.root}; installed: {', '.join(self.names()) or 'none'}")

    def _installed(self, name: str) -> Path:
        if not self._is_installed(name):
            raise self._unknown(name)
        return self.path(name)

    def spec(self, name: str) -> SkillSpec:
        """The spec of installed skill ``name``; a spec naming another skill than its folder is an error."""
        folder = self._installed(name)
        spec = SkillSpec.load(folder / SPEC_FILE)
        if spec.name != name:
            raise SpecError("name", f"is {spec.name!r} but the skill's folder is {name!r}; they must match", folder / SPEC_FILE)
        return spec

    def knowledge_path(self, name: str) -> Path | None:
        """The knowledge file of skill ``name`` if it retrieves knowledge, else ``None``."""
        spec = self.spec(name)
        if spec.knowledge.mode != "retrieval":
            return None
        return self.path(name) / spec.knowledge.file

    def first_steps_path(self, name: str) -> Path | None:
        """The general first steps file of skill ``name`` (``KnowledgeSpec.first_steps_file``), else ``None``."""
        file = self.spec(name).knowledge.first_steps_file
        return None if file is None else self.path(name) / file

    def describe(self, name: str) -> dict[str, Any]:
        """What ``skill list`` shows of skill ``name``."""
        spec = self.spec(name)
        return {
            "name": name,
            "description": spec.description,
            "path": str(self.path(name)),
            "data": spec.data,
            "knowledge": spec.knowledge.mode,
            "kind": spec.adapter.kind,
            "splits": spec.splits,
            "card": spec.card,
        }

    def _check_complete(self, folder: Path, name: str) -> None:
        missing = [f for f in REQUIRED_FILES if not (folder / f).is_file()]
        if missing:
            raise FileNotFoundError(f"cannot install skill {name!r}: {folder} lacks {', '.join(missing)}")
        spec = SkillSpec.load(folder / SPEC_FILE)
        if spec.name != name:
            raise SpecError("name", f"is {spec.name!r} but the skill is being installed as {name!r}", folder / SPEC_FILE)

    def _refuse_existing(self, name: str, replace: bool) -> None:
        if not replace and self.path(name).exists():
            raise FileExistsError(f"skill {name!r} is already installed in {self.root}; use --replace")

    def _trash(self, folder: Path, name: str) -> Path:
        trash = self.root / f".trash-{name}-{uuid.uuid4().hex[:8]}"
        folder.rename(trash)
        return trash

    def check_installable(self, name: str, replace: bool = False) -> Path:
        """Raise now whatever :meth:`install` would refuse, so a caller can check before costly work.

        Refused: an invalid name, a folder that would resolve outside ``root``, an existing folder
        of that name without ``replace``, and a ``root`` that is not (or cannot become) a writable
        folder. Returns the skill's future folder.
        """
        target = self.path(name)
        self._refuse_existing(name, replace)
        existing = next(p for p in (self.root, *self.root.parents) if p.exists())
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            raise ValueError(f"cannot install skill {name!r} in {self.root}: {existing} is not a writable folder")
        return target

    @contextmanager
    def install(self, name: str, replace: bool = False) -> Iterator[Path]:
        """Yield an empty temporary folder to write skill ``name`` into; install it on a clean exit.

        The folder must end up holding ``skill.yaml`` (with this ``name``), ``adapter_config.json``
        and ``adapter_model.safetensors``. On an exception, or an incomplete folder, the temporary
        folder is deleted and nothing else changes. With ``replace``, an installed skill of that
        name is renamed aside, the new one renamed into place, then the old one deleted; without
        it, an existing one raises FileExistsError (checked before and after the body runs, so no
        training is wasted).
        """
        target = self.check_installable(name, replace)
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=self.root))
        tmp.chmod(0o755)  # mkdtemp makes it private; an installed skill is readable like any folder
        try:
            yield tmp
            self._check_complete(tmp, name)
            self._refuse_existing(name, replace)
            replace_folder(tmp, target, self.root / f".old-{name}-{uuid.uuid4().hex[:8]}")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def remove(self, name: str) -> None:
        """Uninstall skill ``name``: renamed away in one step, then deleted."""
        folder = self.path(name)
        if not folder.is_dir():
            raise self._unknown(name)
        shutil.rmtree(self._trash(folder, name), ignore_errors=True)

    def cleanup_stale(self, min_age_s: float = 0.0) -> list[Path]:
        """Delete the ``.tmp-*`` and ``.trash-*`` folders that interrupted installs left; return them.

        Args:
            min_age_s: keep folders modified less than this many seconds ago, which another
                process may still be installing into.
        """
        if not self.root.is_dir():
            return []
        self._recover()  # an interrupted replace's old folder is put back, not deleted
        now = time.time()
        stale = [
            p for p in self.root.iterdir()
            if p.name.startswith(_STALE_PREFIXES) and p.is_dir() and not p.is_symlink()
            and now - p.stat().st_mtime >= min_age_s
        ]
        for p in stale:
            shutil.rmtree(p, ignore_errors=True)
        return stale
