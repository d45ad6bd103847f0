"""What an adapter file is: its kind, the kind's settings, and the backbone it was made for.

``adapter_config.json`` is one flat JSON object: ``kind``, the backbone signature fields, and the
kind's own settings (``bottleneck`` for ``bottleneck``, ``rank``/``alpha``/``targets`` for ``lora``...).
A file without ``kind`` is a ``bottleneck`` adapter: files written before kinds existed load unchanged.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from skills.fields import FieldError, check_types, from_mapping
from skills.files import read_json_object

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
DEFAULT_KIND = "bottleneck"


class AdapterConfigError(FieldError):
    """A field of an adapter config is unknown or holds a bad value."""

    what = "adapter config "


class AdapterMismatchError(ValueError):
    """An adapter file was made for a different backbone, or is of another kind, than expected."""


@dataclass
class BackboneSignature:
    """The backbone an adapter belongs to, checked whenever an adapter is loaded.

    Attributes:
        backbone: name of the backbone (hub id, ``bundled``, or the folder name of a local backbone).
        hidden_size: the backbone's hidden size (``n_embd``).
        num_layers: the backbone's number of transformer blocks (``n_layer``).
        layer_norm_eps: the backbone's LayerNorm epsilon, which adapters' own normalisations reuse.
    """

    backbone: str = ""
    hidden_size: int = 0
    num_layers: int = 0
    layer_norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        check_types(self, AdapterConfigError)

    def describe(self) -> str:
        return f"{self.backbone!r} (hidden size {self.hidden_size}, {self.num_layers} layers)"

    def check_compatible(self, other: "BackboneSignature", where: str = "adapter") -> None:
        """Raise :class:`AdapterMismatchError` naming both backbones when they differ."""
        if (self.backbone, self.hidden_size, self.num_layers) != (other.backbone, other.hidden_size, other.num_layers):
            raise AdapterMismatchError(
                f"{where} was made for backbone {self.describe()}, "
                f"but the loaded backbone is {other.describe()}; retrain the skill on this backbone"
            )


def kind_settings(kind: str, settings: dict[str, Any]) -> Any:
    """``kind``'s settings dataclass from ``settings`` (missing ones take defaults); an unknown kind or
    setting, or a bad value, raises :class:`AdapterConfigError` naming it and what is known."""
    from .kinds import KINDS

    if not isinstance(kind, str) or kind not in KINDS:
        raise AdapterConfigError("kind", f"must be one of {', '.join(KINDS)}, got {kind!r}")
    return from_mapping(KINDS[kind].Settings, settings, AdapterConfigError)


@dataclass
class AdapterConfig:
    """One skill's adapter: its kind, that kind's settings dataclass, and its backbone's signature."""

    kind: str
    settings: Any
    signature: BackboneSignature

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self.settings), **asdict(self.signature)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AdapterConfig":
        """Parse the flat JSON object; an unknown field or kind raises :class:`AdapterConfigError` naming it."""
        data = dict(data)
        kind = data.pop("kind", DEFAULT_KIND)
        own = {f.name for f in fields(BackboneSignature)}
        settings = kind_settings(kind, {k: v for k, v in data.items() if k not in own})
        signature = from_mapping(BackboneSignature, {k: v for k, v in data.items() if k in own}, AdapterConfigError)
        return cls(kind, settings, signature)

    def save(self, folder: Path) -> None:
        (Path(folder) / CONFIG_NAME).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> "AdapterConfig":
        path = Path(folder) / CONFIG_NAME
        data = read_json_object(path, "adapter config")
        try:
            return cls.from_dict(data)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
