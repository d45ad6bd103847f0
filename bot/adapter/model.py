"""A frozen backbone with a residual :class:`AdapterLayer` on the output of every block."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .config import WEIGHTS_NAME, AdapterConfig
from .layer import AdapterLayer, ResidualAdapter

Route = str | None | Sequence[str | None]


class AdaptedModel(nn.Module):
    """A frozen GPT-2-architecture causal LM whose blocks are followed by per-skill adapters.

    Adapters are attached with forward hooks, so the backbone's own modules and state dict
    stay exactly as loaded. Use :meth:`route` to choose the skill of each batch row. The hooks
    are in place only while a route that uses an adapter is active: the bare backbone runs
    exactly as loaded, at no cost.
    """

    def __init__(self, backbone: nn.Module, backbone_name: str) -> None:
        super().__init__()
        self.backbone = backbone
        for p in backbone.parameters():
            p.requires_grad_(False)
        backbone.eval()
        cfg = backbone.config
        self.signature = AdapterConfig(
            bottleneck=1, backbone=backbone_name, hidden_size=cfg.n_embd, num_layers=cfg.n_layer,
            layer_norm_eps=float(cfg.layer_norm_epsilon),
        )
        self.layers = nn.ModuleList(AdapterLayer(cfg.n_embd, cfg.layer_norm_epsilon) for _ in range(cfg.n_layer))
        self.configs: dict[str, AdapterConfig] = {}
        self._route: int | torch.Tensor | None = None
        self._hooks: list = []
        self._route_lock = threading.RLock()  # a route is model-wide state: one thread's route at a time

    # ---- skills -----------------------------------------------------------------
    @property
    def skills(self) -> list[str]:
        return list(self.configs)

    def new_config(self, bottleneck: int) -> AdapterConfig:
        s = self.signature
        return AdapterConfig(bottleneck, s.backbone, s.hidden_size, s.num_layers, s.layer_norm_eps)

    def add_adapter(self, name: str, config: AdapterConfig) -> None:
        """Add a fresh (identity) adapter for ``name``; it starts frozen."""
        config.check_compatible(self.signature, where=f"adapter {name!r}")
        if not isinstance(name, str) or not name:
            raise ValueError(f"an adapter name must be a non-empty string, got {name!r}")
        if name in self.configs:
            raise ValueError(f"an adapter named {name!r} is already loaded")
        ref = next(self.backbone.parameters())
        for layer in self.layers:  # slot len(configs) in every layer: the name is only a key of ``configs``
            layer.adapters.append(ResidualAdapter(config.hidden_size, config.bottleneck, config.layer_norm_eps).to(ref.device))
            layer.invalidate()
        self.configs[name] = config
        self.set_trainable(name, False)

    def remove_adapter(self, name: str) -> None:
        slot = self.skill_index(name)
        for layer in self.layers:
            del layer.adapters[slot]
            layer.invalidate()
        del self.configs[name]

    def set_trainable(self, name: str, trainable: bool) -> None:
        for p in self.adapter_parameters(name):
            p.requires_grad_(trainable)
        for layer in self.layers:
            layer.invalidate()

    def adapter_parameters(self, name: str) -> list[nn.Parameter]:
        slot = self.skill_index(name)
        return [p for layer in self.layers for p in layer.adapters[slot].parameters()]

    def adapter_state_dict(self, name: str) -> dict[str, torch.Tensor]:
        slot = self.skill_index(name)
        return {  # the file's tensor names: ``layers.{block}.{ln,down,up}.{weight,bias}``, with no slot or name
            f"layers.{i}.{key}": t.detach().cpu().contiguous()
            for i, layer in enumerate(self.layers)
            for key, t in layer.adapters[slot].state_dict().items()
        }

    def save_adapter(self, name: str, folder: Path) -> None:
        """Write ``adapter_config.json`` and ``adapter_model.safetensors`` for one skill."""
        state = self.adapter_state_dict(name)
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.configs[name].save(folder)
        save_file(state, str(folder / WEIGHTS_NAME), metadata={"format": "pt"})

    def load_adapter(self, name: str, folder: Path) -> None:
        """Load one skill's adapter; a file for another backbone, or a damaged one, is refused whole."""
        folder = Path(folder)
        config = AdapterConfig.load(folder)
        path = folder / WEIGHTS_NAME
        config.check_compatible(self.signature, where=f"adapter {str(folder)!r}")
        try:
            state = load_file(str(path))
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: missing adapter weights") from None
        except (SafetensorError, OSError, ValueError) as e:
            raise ValueError(f"{path}: not a readable safetensors file ({e})") from None
        d, r = config.hidden_size, config.bottleneck  # shapes by arithmetic: a huge bottleneck allocates nothing
        shapes = {"ln.weight": (d,), "ln.bias": (d,), "down.weight": (r, d), "down.bias": (r,), "up.weight": (d, r), "up.bias": (d,)}
        expected = {f"layers.{i}.{k}": torch.Size(s) for i in range(len(self.layers)) for k, s in shapes.items()}
        missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        if missing or unexpected:
            raise ValueError(f"{path}: tensors do not match adapter_config.json (missing {missing[:3]}, unexpected {unexpected[:3]})")
        for key, shape in expected.items():
            if state[key].shape != shape:
                raise ValueError(f"{path}: tensor {key!r} has shape {tuple(state[key].shape)}, expected {tuple(shape)}")
            if not torch.isfinite(state[key]).all():
                raise ValueError(f"{path}: tensor {key!r} holds NaN or infinite values")
        self.add_adapter(name, config)
        slot = self.skill_index(name)
        for i, layer in enumerate(self.layers):
            prefix = f"layers.{i}."
            layer.adapters[slot].load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
            layer.invalidate()

    def _check(self, name: str) -> None:
        if name not in self.configs:
            raise KeyError(f"no adapter named {name!r}; loaded: {', '.join(self.skills) or 'none'}")

    # ---- routing ----------------------------------------------------------------
    def skill_index(self, name: str | None) -> int:
        """Slot of skill ``name`` in every :class:`AdapterLayer` (``-1``: the bare backbone)."""
        if name is None:
            return -1
        self._check(name)
        return self.skills.index(name)

    @contextmanager
    def route(self, skills: Route) -> Iterator[None]:
        """Run the backbone with ``skills`` (one name for every row, or one per row; ``None`` = bare).

        Inside the block, every forward pass (including each step of ``generate()`` with
        the KV cache) applies to row ``b`` the adapter of ``skills[b]``. Routes nest (the
        outer one is restored on exit); another thread's route waits until this one ends.
        """
        names = [skills] if skills is None or isinstance(skills, str) else list(skills)
        indices = [self.skill_index(n) for n in names]
        if all(i < 0 for i in indices):
            route: int | torch.Tensor | None = None
        elif len(set(indices)) == 1:
            route = indices[0]
        else:
            route = torch.tensor(indices, dtype=torch.long)
        with self._route_lock:
            previous = self._route
            self._set_route(route)
            try:
                yield
            finally:
                self._set_route(previous)

    def _set_route(self, route: int | torch.Tensor | None) -> None:
        self._route = route
        for layer in self.layers:
            layer.set_route(route)
        if route is None:
            for handle in self._hooks:
                handle.remove()
            self._hooks = []
        elif not self._hooks:
            self._hooks = [block.register_forward_hook(_hook(layer))
                           for block, layer in zip(self.backbone.transformer.h, self.layers)]

    def forward(self, *args, **kwargs):
        return self.backbone(*args, **kwargs)

    def generate(self, *args, **kwargs):
        return self.backbone.generate(*args, **kwargs)


def _hook(layer: AdapterLayer):
    def hook(module: nn.Module, args: tuple, output):
        if isinstance(output, tuple):
            return (layer(output[0]),) + output[1:]
        return layer(output)

    return hook
