"""Residual adapters for a frozen GPT-2-architecture backbone (Adapter-Bot's form).

``config``: what an adapter is (bottleneck size, the backbone it was made for);
``layer``: one block's adapters, stacked so each batch row can use a different skill;
``model``: the backbone with an adapter layer after every transformer block.
"""
from .config import AdapterConfig, AdapterMismatchError
from .layer import AdapterLayer, ResidualAdapter
from .model import AdaptedModel

__all__ = ["AdapterConfig", "AdapterMismatchError", "AdapterLayer", "ResidualAdapter", "AdaptedModel"]
