"""A trained manager on disk: ``manager_config.json`` + ``manager_model.safetensors``.

The safetensors file holds the head (``head.*``, standardisation buffers included), the
exemplar memory (its features and ``memory.labels`` ``[N]``, int64 indices into the config's
``classes``) and, when there is one, the held-out calibration memory in the same form
(``calibration.*``). Exemplar features are stored in float16 and read back as float32: they are
most of the file, and only a refit after ``skill add`` or ``remove`` reads them (files written in
float32, or features beyond float16's range, load as they are).

Features are stored by column (:func:`pack`): the columns that are mostly zeros (as the bundled
features' hashed n-grams) as compressed sparse rows (``.sparse_columns``,
``.sparse_offsets``, ``.sparse_index`` in int16 or int32, ``.sparse_values``), the others as one dense block
(``.dense``). A file with one dense ``.features`` tensor, as written before, loads too. Nothing is
pickled; reading never runs code from the file.
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


SPARSE_BELOW = 0.25  # a column with non-zeros in fewer than this share of the rows is stored sparse


def _compact(features: torch.Tensor) -> torch.Tensor:
    """``features`` in float16, or as they are when a value lies beyond float16's range."""
    fits = not features.numel() or features.abs().max() <= torch.finfo(torch.float16).max
    return (features.half() if fits else features).contiguous()


def _index_type(columns: int) -> torch.dtype:
    """The narrowest integer type that numbers ``columns`` sparse columns: int16 up to 32,767 columns, else int32."""
    return torch.int16 if columns <= torch.iinfo(torch.int16).max else torch.int32


def pack(prefix: str, features: torch.Tensor) -> dict[str, torch.Tensor]:
    """The tensors that store ``features`` ``[N, D]`` under ``prefix`` (see the module's docstring)."""
    features = _compact(features)
    nonzero = features != 0
    sparse = nonzero.float().mean(0) < SPARSE_BELOW if features.shape[0] else torch.zeros(features.shape[1], dtype=torch.bool)
    part = features[:, sparse]
    rows, index = part.nonzero(as_tuple=True)
    offsets = torch.zeros(features.shape[0] + 1, dtype=torch.int64)
    offsets[1:] = torch.bincount(rows, minlength=features.shape[0]).cumsum(0)
    return {f"{prefix}.dense": features[:, ~sparse].contiguous(),
            f"{prefix}.sparse_columns": sparse.nonzero()[:, 0].contiguous(),
            f"{prefix}.sparse_offsets": offsets, f"{prefix}.sparse_index": index.to(_index_type(int(sparse.sum()))).contiguous(),
            f"{prefix}.sparse_values": part[rows, index].contiguous()}


def unpack(state: dict[str, torch.Tensor], prefix: str, rows: int, dim: int, path: Path) -> torch.Tensor:
    """The float32 features ``[rows, dim]`` stored under ``prefix`` by :func:`pack` (or as one dense
    ``.features`` tensor); a tensor of the wrong shape, type or range is a :class:`ManagerFileError`."""
    def bad(key: str, why: str) -> ManagerFileError:
        return ManagerFileError(f"{path}: tensor '{prefix}.{key}' {why} ({rows} {prefix} rows, feature_dim {dim} "
                                f"in {CONFIG_NAME})")

    def get(key: str, shape: tuple[int, ...] | None, dtypes: tuple[torch.dtype, ...]) -> torch.Tensor:
        t = state.get(f"{prefix}.{key}")
        if t is None:
            raise bad(key, "is missing")
        if (shape is not None and tuple(t.shape) != shape) or t.dtype not in dtypes or (shape is None and t.dim() != 1):
            raise bad(key, f"is {tuple(t.shape)} {t.dtype}, expected {shape or '1-D'} {' or '.join(map(str, dtypes))}")
        if t.dtype.is_floating_point and not torch.isfinite(t).all():
            raise bad(key, "holds NaN or infinite values")
        return t

    floats = (torch.float16, torch.float32)
    if f"{prefix}.features" in state:
        return get("features", (rows, dim), floats).float()
    columns = get("sparse_columns", None, (torch.int64,))
    if columns.numel() and (columns.min() < 0 or columns.max() >= dim or (columns.diff() <= 0).any()):
        raise bad("sparse_columns", f"must be increasing column numbers below {dim}")
    dense = get("dense", (rows, dim - columns.numel()), floats)
    offsets = get("sparse_offsets", (rows + 1,), (torch.int64,))
    index = get("sparse_index", None, (_index_type(columns.numel()),))
    values = get("sparse_values", tuple(index.shape), floats)
    if offsets[0] != 0 or (offsets.diff() < 0).any() or offsets[-1] != index.numel():
        raise bad("sparse_offsets", f"must rise from 0 to the {index.numel()} stored values")
    if index.numel() and (index.min() < 0 or index.max() >= columns.numel()):
        raise bad("sparse_index", f"must index the {columns.numel()} sparse columns")
    features = torch.zeros(rows, dim)
    keep = torch.ones(dim, dtype=torch.bool)
    keep[columns] = False
    features[:, keep] = dense.float()
    row_of = torch.repeat_interleave(torch.arange(rows), offsets.diff())
    features[row_of, columns[index.long()]] = values.float()
    return features


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
    tensors |= pack("memory", features) | {"memory.labels": labels.contiguous()}
    if len(calibration):
        held_out, held_labels = calibration.tensors(config.classes)
        tensors |= pack("calibration", held_out) | {"calibration.labels": held_labels.contiguous()}

    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; a saved manager is readable like a skill's folder
    try:
        config.save(tmp)
        save_file(tensors, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
        (tmp / WEIGHTS_NAME).chmod(0o644)
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
    expected = {f"head.{k}": s for k, s in shapes.items()}
    memories = ("memory", "calibration") if any(k.startswith("calibration.") for k in state) else ("memory",)
    layouts = {"features", "dense", "sparse_columns", "sparse_offsets", "sparse_index", "sparse_values", "labels"}
    known = set(expected) | {f"{m}.{part}" for m in memories for part in layouts}
    missing = sorted(set(expected) - set(state)) + [f"{m}.labels" for m in memories if f"{m}.labels" not in state]
    unexpected = sorted(set(state) - known)
    if missing or unexpected:
        raise ManagerFileError(f"{path}: tensors do not match {CONFIG_NAME} (hidden={config.hidden}, "
                               f"{num_classes} classes; missing {missing[:3]}, unexpected {unexpected[:3]})")
    for key, shape in expected.items():
        t = state[key]
        if tuple(t.shape) != shape or t.dtype != torch.float32:
            raise ManagerFileError(f"{path}: tensor {key!r} is {tuple(t.shape)} {t.dtype}, expected {shape} torch.float32 "
                                   f"({num_classes} classes and feature_dim {dim} in {CONFIG_NAME})")
        if not torch.isfinite(t).all():
            raise ManagerFileError(f"{path}: tensor {key!r} holds NaN or infinite values")
    loaded = []
    for memory in memories:
        labels = state[f"{memory}.labels"]
        if labels.dim() != 1 or labels.dtype != torch.int64:
            raise ManagerFileError(f"{path}: tensor '{memory}.labels' is {tuple(labels.shape)} {labels.dtype}, "
                                   "expected 1-D torch.int64")
        if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
            raise ManagerFileError(f"{path}: '{memory}.labels' has indices outside the {num_classes} classes "
                                   f"of {CONFIG_NAME}")
        counts = torch.bincount(labels, minlength=num_classes)
        if (counts > config.exemplars_per_class).any() or (memory == "memory" and (counts == 0).any()):
            raise ManagerFileError(f"{path}: every class must have {'1' if memory == 'memory' else '0'} to "
                                   f"exemplars_per_class={config.exemplars_per_class} {memory} exemplars, "
                                   f"got {dict(zip(config.classes, counts.tolist()))}")
        features = unpack(state, memory, labels.shape[0], dim, path)
        loaded.append(ExemplarMemory.from_tensors(config.classes, features, labels))
    head = RoutingHead(dim, num_classes, hidden)
    head.load_state_dict({k[len("head."):]: v for k, v in state.items() if k.startswith("head.")})
    head.eval()
    return config, head, loaded[0], loaded[1] if len(loaded) > 1 else ExemplarMemory()
