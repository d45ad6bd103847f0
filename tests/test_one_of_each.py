"""One of each job (#13.8): a second atomic file write, type checker, one_line or _fmt fails here."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bot", "skills", "manager", "ui")
# Renames that are not an atomic write: putting back a folder that a crash left aside.
RENAME_EXCEPTIONS = {"manager/storage.py": 1}  # recover(): the old manager back into place


def sources() -> dict[str, str]:
    return {p.relative_to(ROOT).as_posix(): p.read_text(encoding="utf-8")
            for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def test_one_atomic_file_write():
    for rel, text in sources().items():
        if rel == "skills/files.py":
            continue
        assert "mkstemp(" not in text, f"{rel} writes a temporary file itself: use skills.files.atomic_write"
        n = text.count("os.replace(")
        assert n <= RENAME_EXCEPTIONS.get(rel, 0), (
            f"{rel} calls os.replace {n} time(s): write files with skills.files.atomic_write(_text) and swap "
            "folders with skills.files.replace_folder, or document a new exception here")


def test_one_definition_of_each_helper():
    patterns = {"one_line": r"^def _?one_line\(", "fmt": r"^def _?fmt\(", "pad": r"^def pad(_left)?\(",
                "type checker": r"^def (_typed|typed|_check_types|check_types)\(", "atomic write": r"^def _?atomic_write\("}
    for job, pattern in patterns.items():
        where = [rel for rel, text in sources().items() if re.search(pattern, text, re.M)]
        assert len(where) == 1, f"{job} is defined in {where}; keep one"
