"""Adapters of several kinds on one frozen GPT-2-architecture backbone, mixable per batch row.

``config``: what an adapter file is (kind, the kind's settings, the backbone it was made for);
``kinds/``: one file per kind (``bottleneck``, ``houlsby``, ``lora``, ``prefix``, ``prompt``) and the registry;
``routing``: a call's route as data (each row's skill or blend), private to the calling thread;
``bank``: one kind's skills, stacked so each batch row can use a different one;
``model``: the backbone with a bank per kind.
"""
from .config import AdapterConfig, AdapterMismatchError, BackboneSignature
from .kinds import KINDS
from .model import AdaptedModel

__all__ = ["AdapterConfig", "AdapterMismatchError", "BackboneSignature", "AdaptedModel", "KINDS"]
