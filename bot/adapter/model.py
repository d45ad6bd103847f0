"""A frozen backbone and a bank of adapters per kind, any mix of which a batch may use row by row."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .bank import Bank
from .config import WEIGHTS_NAME, AdapterConfig, AdapterConfigError, AdapterMismatchError, BackboneSignature, kind_settings
from .kinds import KINDS, Kind
from .kinds.attention import ExtraKeyValues
from .routing import BankRows, Route, RoutePlan, activated, row_mixes

_UNSET: Any = object()


class AdaptedModel(nn.Module):
    """A frozen GPT-2-architecture causal LM with per-skill adapters of any kind in :mod:`.kinds`.

    The backbone's modules and state dict stay exactly as loaded; each kind attaches through hooks
    only while a call routes a row to it. The skill of each batch row is data given with the call:
    ``model(input_ids, route=["a", None, {"a": 0.5, "b": 0.5}])``, ``model.generate(..., route=...)``
    or ``with model.route(...)`` around several calls. A route belongs to the calling thread
    (:mod:`.routing`), so concurrent calls on different skills do not interfere.
    """

    def __init__(self, backbone: nn.Module, backbone_name: str) -> None:
        super().__init__()
        self.backbone = backbone
        for p in backbone.parameters():
            p.requires_grad_(False)
        backbone.eval()
        cfg = backbone.config
        self.signature = BackboneSignature(backbone_name, cfg.n_embd, cfg.n_layer, float(cfg.layer_norm_epsilon))
        self.banks = nn.ModuleDict()  # kind name -> Bank, created with its first skill
        self.configs: dict[str, AdapterConfig] = {}
        self._kinds: dict[str, Kind] = {}
        self._merged: tuple[str, list] | None = None  # a LoRA skill merged into the backbone

    # ---- skills -----------------------------------------------------------------
    @property
    def skills(self) -> list[str]:
        return list(self.configs)

    def kind(self, name: str) -> Kind:
        """The :class:`Kind` object of kind ``name`` for this backbone."""
        if name not in self._kinds:
            kind_settings(name, {})  # an unknown kind raises, naming the known ones
            self._kinds[name] = KINDS[name](self.backbone, self.signature)
        return self._kinds[name]

    def new_config(self, kind: str = "bottleneck", **settings: Any) -> AdapterConfig:
        """A config for a fresh adapter of ``kind`` on this backbone; a bad setting raises naming it."""
        return AdapterConfig(kind, kind_settings(kind, settings), self.signature)

    def add_adapter(self, name: str, config: AdapterConfig) -> None:
        """Add a fresh adapter for ``name`` (the identity, for kinds that can start as one); it starts frozen."""
        config.signature.check_compatible(self.signature, where=f"adapter {name!r}")
        self._add(name, config, self.kind(config.kind).new_module(config.settings))

    def _add(self, name: str, config: AdapterConfig, module: nn.Module) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"an adapter name must be a non-empty string, got {name!r}")
        if name in self.configs:
            raise ValueError(f"an adapter named {name!r} is already loaded")
        if config.kind not in self.banks:
            self.banks[config.kind] = Bank(self.kind(config.kind))
        self.banks[config.kind].add(module.to(next(self.backbone.parameters()).device))
        self.configs[name] = config
        self.set_trainable(name, False)

    def remove_adapter(self, name: str) -> None:
        if self._merged and self._merged[0] == name:
            self.unmerge()
        bank, slot = self._slot(name)
        bank.remove(slot)
        del self.configs[name]

    def module(self, name: str) -> nn.Module:
        """The trainable module of skill ``name``."""
        bank, slot = self._slot(name)
        return bank.adapters[slot]

    def set_trainable(self, name: str, trainable: bool) -> None:
        for p in self.module(name).parameters():
            p.requires_grad_(trainable)
        self.invalidate()

    def adapter_parameters(self, name: str) -> list[nn.Parameter]:
        return list(self.module(name).parameters())

    def adapter_size(self, name: str) -> int:
        """Numbers in the skill's file (for ``prefix``, fewer than it trains: its MLP is dropped)."""
        return sum(t.numel() for t in self.adapter_state_dict(name).values())

    def adapter_state_dict(self, name: str) -> dict[str, torch.Tensor]:
        """The skill's file tensors, named as its kind names them (no slot, no skill name)."""
        state = self.kind(self.configs[name].kind).file_state(self.module(name))
        return {k: t.detach().cpu().contiguous() for k, t in state.items()}

    def invalidate(self) -> None:
        """Forget every bank's stacked weights (after weights change in place)."""
        for bank in self.banks.values():
            bank.invalidate()

    def save_adapter(self, name: str, folder: Path) -> None:
        """Write ``adapter_config.json`` and ``adapter_model.safetensors`` for one skill."""
        state = self.adapter_state_dict(name)
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.configs[name].save(folder)
        save_file(state, str(folder / WEIGHTS_NAME), metadata={"format": "pt"})

    def load_adapter(self, name: str, folder: Path, kind: str | None = None) -> None:
        """Load one skill; a file for another backbone or kind (when ``kind`` is given), or a damaged one, is refused whole."""
        folder = Path(folder)
        config = AdapterConfig.load(folder)
        path = folder / WEIGHTS_NAME
        config.signature.check_compatible(self.signature, where=f"adapter {str(folder)!r}")
        if kind is not None and config.kind != kind:
            raise AdapterMismatchError(f"adapter {str(folder)!r} is of kind {config.kind!r}, expected {kind!r}")
        try:
            state = load_file(str(path))
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: missing adapter weights") from None
        except (SafetensorError, OSError, ValueError) as e:
            raise ValueError(f"{path}: not a readable safetensors file ({e})") from None
        kind_ = self.kind(config.kind)
        expected = kind_.file_shapes(config.settings)  # by arithmetic: a huge setting allocates nothing
        missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        if missing or unexpected:
            raise ValueError(f"{path}: tensors do not match adapter_config.json (kind {config.kind!r}; "
                             f"missing {missing[:3]}, unexpected {unexpected[:3]})")
        for key, shape in expected.items():
            if tuple(state[key].shape) != tuple(shape):
                raise ValueError(f"{path}: tensor {key!r} has shape {tuple(state[key].shape)}, expected {tuple(shape)}")
            if not torch.isfinite(state[key]).all():
                raise ValueError(f"{path}: tensor {key!r} holds NaN or infinite values")
        module = kind_.new_module(config.settings, for_training=False)
        module.load_state_dict(state)
        self._add(name, config, module)

    def _slot(self, name: str) -> tuple[Bank, int]:
        if name not in self.configs:
            raise KeyError(f"no adapter named {name!r}; loaded: {', '.join(self.skills) or 'none'}")
        kind = self.configs[name].kind
        return self.banks[kind], [n for n, c in self.configs.items() if c.kind == kind].index(name)

    # ---- routing ----------------------------------------------------------------
    def plan(self, route: Route) -> RoutePlan | None:
        """What each bank applies to each row of ``route`` (``None``: every row on the bare backbone)."""
        mixes = row_mixes(route)
        for mix in mixes:
            for name in mix:
                self._slot(name)
        if self._merged is not None:
            merged = self._merged[0]
            if any(mix != {merged: 1.0} for mix in mixes):
                raise ValueError(f"skill {merged!r} is merged into the backbone, so only its rows can run; "
                                 "call unmerge() to route other skills or the bare backbone")
            return None
        kinds: dict[int, str] = {}
        for b, mix in enumerate(mixes):
            row_kinds = {self.configs[n].kind for n in mix}
            if len(row_kinds) > 1:
                raise ValueError(f"a blend mixes skills of one kind; {dict(mix)} mixes kinds {sorted(row_kinds)}")
            if len(mix) > 1 and not KINDS[next(iter(row_kinds))].blendable:
                raise ValueError(f"skills of kind {next(iter(row_kinds))!r} cannot be blended; route {dict(mix)} to one skill")
            if row_kinds:
                kinds[b] = row_kinds.pop()
        if not kinds:
            return None
        banks: dict[str, BankRows] = {}
        for kind in sorted(set(kinds.values())):
            rows = [b for b, k in kinds.items() if k == kind]
            width = max(len(mixes[b]) for b in rows)
            slots = torch.full((len(mixes), width), -1, dtype=torch.long)
            weights = torch.zeros(len(mixes), width)
            for b in rows:
                for j, (name, w) in enumerate(mixes[b].items()):
                    slots[b, j], weights[b, j] = self._slot(name)[1], w
            names = {tuple(mix.items()) for mix in mixes}
            uniform = None
            if len(names) == 1 and len(mixes[0]) == 1 and next(iter(mixes[0].values())) == 1.0:
                uniform = int(slots[0, 0])
            plain = width == 1 and all(mixes[b][next(iter(mixes[b]))] == 1.0 for b in rows)
            train = None
            if uniform is not None:
                module = self.banks[kind].adapters[uniform]
                if any(p.requires_grad for p in module.parameters()):  # training: autograd through this skill only
                    train = module
            banks[kind] = BankRows(slots, None if plain else weights, uniform, train)
        attention = [self.banks[k] for k in banks if isinstance(self.kind(k), ExtraKeyValues)]
        return RoutePlan(banks, attention)

    @contextmanager
    def route(self, route: Route | RoutePlan) -> Iterator[None]:
        """Run the block with ``route``: one skill for every row, or one route per row (``None`` = bare,
        ``{skill: weight}`` = a blend), or a plan made earlier by :meth:`plan`. It holds in this thread only, and nests."""
        plan = route if isinstance(route, RoutePlan) else self.plan(route)
        banks = [] if plan is None else [self.banks[kind] for kind in plan.banks]
        for bank in banks:
            bank.acquire()
        try:
            with activated(plan):
                yield
        finally:
            for bank in banks:
                bank.release()

    def forward(self, *args, route: Route = _UNSET, **kwargs):
        if route is _UNSET:
            return self.backbone(*args, **kwargs)
        with self.route(route):
            return self.backbone(*args, **kwargs)

    def generate(self, *args, route: Route = _UNSET, **kwargs):
        if route is _UNSET:
            return self.backbone.generate(*args, **kwargs)
        with self.route(route):
            return self.backbone.generate(*args, **kwargs)

    # ---- merging (kinds that can fold into the backbone: lora) ---------------------
    @torch.no_grad()
    def merge(self, name: str) -> None:
        """Fold skill ``name`` into the backbone's weights, so its rows cost nothing extra (single-skill deployments).

        While merged, only ``name`` can be routed; :meth:`unmerge` restores the exact original weights.
        """
        kind = self.kind(self.configs[name].kind) if name in self.configs else None
        if kind is None or not hasattr(kind, "merge"):
            raise ValueError(f"only a loaded skill of a kind that merges (lora) can be merged; {name!r} is "
                             f"{'of kind ' + repr(kind.name) if kind else 'not loaded'}")
        if self._merged is not None:
            raise ValueError(f"skill {self._merged[0]!r} is already merged; unmerge() it first")
        self._merged = (name, kind.merge(self.module(name)))

    @torch.no_grad()
    def unmerge(self) -> None:
        if self._merged is not None:
            for weight, original in self._merged[1]:
                weight.copy_(original)
            self._merged = None
