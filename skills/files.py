"""File helpers shared by the whole project: reading a UTF-8 file, writing one atomically, swapping a folder.

This is the one place that writes a file through a temporary file and ``os.replace``. ``manager/``
imports it too (the only thing it takes from ``skills/``); neither package imports ``bot/``.
"""
from __future__ import annotations

import codecs
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

MAX_BYTES = 200 * 1024 * 1024


def read_text(path: Path, max_bytes: int = MAX_BYTES) -> str:
    """Text of a UTF-8 file; a file over ``max_bytes`` or with non-UTF-8 bytes raises ValueError naming the line."""
    path = Path(path)
    size = path.stat().st_size
    if size > max_bytes:
        raise ValueError(f"{path}: {size / 2**20:.1f} MB is over the size limit of {max_bytes / 2**20:.1f} MB")
    raw = path.read_bytes().removeprefix(codecs.BOM_UTF8)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ValueError(f"{path}: line {line}: byte 0x{raw[e.start]:02x} is not UTF-8; save the file as UTF-8") from None


def read_json_object(path: Path, what: str) -> dict:
    """The JSON object in ``path``; a missing file, bad JSON or another JSON value raises naming the file
    (``FileNotFoundError`` "PATH: missing WHAT", else ``ValueError``)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: missing {what}") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Let ``write`` fill a temporary file beside ``path``, then ``os.replace`` it onto ``path``.

    Readers see the old file or the new one, never half of one; on any error the temporary file
    is deleted and ``path`` is untouched. The file is made readable by others (``0o644``), as
    ``mkstemp`` makes it private.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` as UTF-8 with ``\\n`` line ends, atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8", newline="\n"))


def replace_folder(new: Path, target: Path, aside: Path | None) -> None:
    """Move the complete folder ``new`` to ``target`` by renames, replacing a folder already there.

    An existing ``target`` is first renamed to ``aside`` (a free path, or an empty folder), then
    ``new`` is renamed to ``target`` (``aside`` may be ``None`` when there is no ``target``); if that fails the old folder is put back, else it is deleted.
    A crash between the two renames leaves the old folder at ``aside``, for the caller's recovery
    to put back.
    """
    moved = Path(target).exists()
    if moved:
        os.replace(target, aside)
    try:
        os.replace(new, target)
    except BaseException:
        if moved:
            os.replace(aside, target)
        raise
    if moved:
        shutil.rmtree(aside, ignore_errors=True)
