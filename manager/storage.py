"""A trained manager on disk: ``manager_config.json`` + ``manager_model.safetensors``.

The safetensors file holds the head (``head.*``, standardisation buffers included), the
exemplar memory (``memory.features`` ``[N, D]``, ``memory.labels`` ``[N]`` int64 indices into the
config's ``classes``) and, when there is one, the held-out calibration memory in the same form
(``calibration.features``, ``calibration.labels``). Exemplar features are stored in float16 and
read back as float32: they are half the file's size, and only a refit after ``skill add`` or
``remove`` reads them (files written in float32, or features beyond float16's range, load as they are). Nothing is pickled; reading never runs
code from the file.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from skills.files import replace_folder

from .classifier import RoutingHead
from .config import CONFIG_NAME, WEIGHTS_NAME, ManagerConfig, ManagerFileError
from .memory import ExemplarMemory


def _compact(features: torch.Tensor) -> torch.Tensor:
    """``features`` in float16, or as they are when a value lies beyond float16's range."""
    fits = not features.numel() or features.abs().max() <= torch.finfo(torch.float16).max
    return (features.half() if fits else features).contiguous()


def save_state(folder: Path, config: ManagerConfig, head: RoutingHead, memory: ExemplarMemory,
               calibration: ExemplarMemory) -> None:
    """Write both files into a temporary sibling folder, then move it into place (:func:`skills.files.replace_folder`).

    A reader never sees a half-written manager. ``folder`` must be new or hold only a manager's
    files: it is replaced as a whole.
    """
    folder = Path(folder)
    if folder.exists():
        if not folder.is_dir():
            raise ValueError(f"{folder}: exists and is not a folder")
        foreign = sorted(p.name for p in folder.iterdir() if p.name not in (CONFIG_NAME, WEIGHTS_NAME))
        if foreign:
            raise ValueError(f"{folder}: holds files other than a manager's ({', '.join(foreign[:3])}); "
                             "refusing to replace it")
    folder.parent.mkdir(parents=True, exist_ok=True)
    features, labels = memory.tensors()
    tensors = {f"head.{k}": v.detach().contiguous() for k, v in head.state_dict().items()}
    tensors |= {"memory.features": _compact(features), "memory.labels": labels.contiguous()}
    if len(calibration):
        held_out, held_labels = calibration.tensors(config.classes)
        tensors |= {"calibration.features": _compact(held_out), "calibration.labels": held_labels.contiguous()}

    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        config.save(tmp)
        save_file(tensors, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
        aside = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old-", dir=folder.parent)) if folder.exists() else None
        replace_folder(tmp, folder, aside)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def recover(folder: Path) -> None:
    """Undo a :func:`save_state` that a crash cut between its two renames: put the old manager back."""
    folder = Path(folder)
    if folder.exists() or not folder.parent.is_dir():
        return
    olds = sorted(folder.parent.glob(f".{folder.name}.old-*"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in olds:
        if (old / CONFIG_NAME).is_file() and (old / WEIGHTS_NAME).is_file():
            os.replace(old, folder)
            return


def load_state(folder: Path) -> tuple[ManagerConfig, RoutingHead, ExemplarMemory, ExemplarMemory]:
    """Read and cross-check a saved manager; any problem is a :class:`ManagerFileError` naming the file."""
    folder = Path(folder)
    recover(folder)
    config = ManagerConfig.load(folder)
    path = folder / WEIGHTS_NAME
    try:
        state = load_file(str(path))
    except FileNotFoundError:
        raise ManagerFileError(f"{path}: missing manager weights") from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ManagerFileError(f"{path}: not a readable safetensors file ({e})") from None

    num_classes, dim, hidden = len(config.classes), config.feature_dim, config.hidden
    shapes = {"mean": (dim,), "std": (dim,)}  # by arithmetic: a huge dim in the config allocates nothing
    shapes |= ({"net.0.weight": (hidden, dim), "net.0.bias": (hidden,), "net.2.weight": (num_classes, hidden),
                "net.2.bias": (num_classes,)} if hidden else {"net.0.weight": (num_classes, dim), "net.0.bias": (num_classes,)})
    expected = {f"head.{k}": (s, torch.float32) for k, s in shapes.items()}
    memories = ("memory", "calibration") if "calibration.labels" in state or "calibration.features" in state else ("memory",)
    for memory in memories:
        labels = state.get(f"{memory}.labels")
        n = labels.shape[0] if labels is not None and labels.dim() == 1 else -1
        stored = state.get(f"{memory}.features")
        precision = torch.float16 if stored is not None and stored.dtype == torch.float16 else torch.float32
        expected |= {f"{memory}.features": ((n, dim), precision), f"{memory}.labels": ((n,), torch.int64)}
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ManagerFileError(f"{path}: tensors do not match {CONFIG_NAME} (hidden={config.hidden}, "
                               f"{num_classes} classes; missing {missing[:3]}, unexpected {unexpected[:3]})")
    for key, (shape, dtype) in expected.items():
        t = state[key]
        if tuple(t.shape) != shape or t.dtype != dtype:
            raise ManagerFileError(f"{path}: tensor {key!r} is {tuple(t.shape)} {t.dtype}, expected {shape} {dtype} "
                                   f"({num_classes} classes and feature_dim {dim} in {CONFIG_NAME})")
        if dtype.is_floating_point and not torch.isfinite(t).all():
            raise ManagerFileError(f"{path}: tensor {key!r} holds NaN or infinite values")
    for memory in memories:
        labels = state[f"{memory}.labels"]
        if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
            raise ManagerFileError(f"{path}: '{memory}.labels' has indices outside the {num_classes} classes "
                                   f"of {CONFIG_NAME}")
        counts = torch.bincount(labels, minlength=num_classes)
        if (counts > config.exemplars_per_class).any() or (memory == "memory" and (counts == 0).any()):
            raise ManagerFileError(f"{path}: every class must have {'1' if memory == 'memory' else '0'} to "
                                   f"exemplars_per_class={config.exemplars_per_class} {memory} exemplars, "
                                   f"got {dict(zip(config.classes, counts.tolist()))}")
    head = RoutingHead(dim, num_classes, hidden)
    head.load_state_dict({k[len("head."):]: v for k, v in state.items() if k.startswith("head.")})
    head.eval()
    loaded = [ExemplarMemory.from_tensors(config.classes, state[f"{m}.features"].float(), state[f"{m}.labels"]) for m in memories]
    return config, head, loaded[0], loaded[1] if len(loaded) > 1 else ExemplarMemory()
