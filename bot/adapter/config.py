"""The configuration of one skill's residual adapter, saved as ``adapter_config.json``."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"


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
        for f in fields(self):
            value = getattr(self, f.name)
            expected = float if f.type in ("float", float) else int if f.type in ("int", int) else str
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
                setattr(self, f.name, value)
            if not isinstance(value, expected) or isinstance(value, bool):
                raise ValueError(f"adapter config field {f.name!r} must be {expected.__name__}, got {value!r}")
        if self.bottleneck < 1:
            raise ValueError(f"adapter config field 'bottleneck' must be at least 1, got {self.bottleneck}")

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
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{path}: unknown field(s) {', '.join(map(repr, unknown))}")
        try:
            return cls(**data)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
