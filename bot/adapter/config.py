"""The configuration of one skill's residual adapter, saved as ``adapter_config.json``."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from skills.fields import FieldError, check_types, from_mapping

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"


class AdapterConfigError(FieldError):
    """A field of an adapter config is unknown or holds a bad value."""

    what = "adapter config "


class AdapterMismatchError(ValueError):
    """An adapter file was made for a different backbone than the one loaded."""


@dataclass
class AdapterConfig:
    """Shape of a residual adapter and the backbone it belongs to.

    Attributes:
        bottleneck: width ``r`` of the adapter's bottleneck; each block gets
            ``2 * hidden_size * r + r + 3 * hidden_size`` parameters. Adapter-Bot used 200 on
            DialoGPT-medium; 64 keeps a skill near 2% of the bundled backbone.
        backbone: name of the backbone the adapter was trained on (hub id, ``bundled``, or
            the folder name of a local backbone).
        hidden_size: the backbone's hidden size (``n_embd``); checked on load.
        num_layers: the backbone's number of transformer blocks (``n_layer``); checked on load.
        layer_norm_eps: epsilon of the adapter's own LayerNorm, as the backbone's.
    """

    bottleneck: int = 64
    backbone: str = ""
    hidden_size: int = 0
    num_layers: int = 0
    layer_norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        check_types(self, AdapterConfigError)
        if self.bottleneck < 1:
            raise AdapterConfigError("bottleneck", f"must be at least 1, got {self.bottleneck}")

    def describe_backbone(self) -> str:
        return f"{self.backbone!r} (hidden size {self.hidden_size}, {self.num_layers} layers)"

    def check_compatible(self, other: "AdapterConfig", where: str = "adapter") -> None:
        """Raise :class:`AdapterMismatchError` naming both backbones when they differ."""
        if (self.backbone, self.hidden_size, self.num_layers) != (other.backbone, other.hidden_size, other.num_layers):
            raise AdapterMismatchError(
                f"{where} was made for backbone {self.describe_backbone()}, "
                f"but the loaded backbone is {other.describe_backbone()}; retrain the skill on this backbone"
            )

    def save(self, folder: Path) -> None:
        (Path(folder) / CONFIG_NAME).write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> "AdapterConfig":
        path = Path(folder) / CONFIG_NAME
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: missing adapter config") from None
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object")
        try:
            return from_mapping(cls, data, AdapterConfigError)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
