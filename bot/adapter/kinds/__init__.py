"""The adapter kinds, by name. Adding a kind: its file in this folder, and one line below."""
from .base import Kind
from .bottleneck import Bottleneck
from .houlsby import Houlsby
from .lora import Lora
from .prefix import Prefix
from .prompt import Prompt

KINDS: dict[str, type[Kind]] = {k.name: k for k in (Bottleneck, Houlsby, Lora, Prefix, Prompt)}

__all__ = ["KINDS", "Kind"]
