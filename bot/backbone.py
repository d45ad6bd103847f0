"""Loading the frozen backbone: a hub id, a local folder, or the bundled offline default."""
from __future__ import annotations

from pathlib import Path

import torch

BUNDLED_BACKBONE = Path(__file__).resolve().parent / "bundled" / "backbone"
BUNDLED_NAME = "bundled"


class BackboneError(RuntimeError):
    """The backbone could not be loaded; the message says why and what to do."""


def backbone_name(name_or_path: str | Path | None) -> str:
    """The name an adapter records for its backbone: ``bundled``, a hub id, or a folder's name."""
    if name_or_path is None:
        return BUNDLED_NAME
    path = Path(name_or_path)
    if path.is_dir():
        return BUNDLED_NAME if path.resolve() == BUNDLED_BACKBONE else path.resolve().name
    return str(name_or_path)


def fuse_gelu(model: torch.nn.Module) -> None:
    """Compute GPT-2's ``gelu_new`` with torch's fused tanh-GELU kernel (HF's ``gelu_pytorch_tanh``).

    The same function to float rounding (outputs differ by under 1e-6), but one kernel keeps one
    tensor for the backward pass where the composed formula keeps five, which is most of what
    an adapter's training step holds beyond the frozen weights.
    """
    from transformers.activations import GELUTanh, NewGELUActivation

    for module in list(model.modules()):
        for name, child in module.named_children():
            if type(child) is NewGELUActivation:
                setattr(module, name, GELUTanh())
    if getattr(model.config, "activation_function", None) == "gelu_new":
        model.config.activation_function = "gelu_pytorch_tanh"


def load_backbone(name_or_path: str | Path | None = None, *, device: str | torch.device = "cpu",
                  trust_remote_code: bool = False):
    """Load a GPT-2-architecture causal LM and its tokenizer, frozen and in eval mode.

    Args:
        name_or_path: a hub id such as ``microsoft/DialoGPT-small`` (downloaded only then),
            a local folder with ``config.json``, or ``None`` for the bundled offline backbone.
        device: where to put the model.
        trust_remote_code: passed to transformers; off unless the user asks for it.

    Returns:
        ``(model, tokenizer, name)``, ``name`` being what adapters record (:func:`backbone_name`).
        GPT-2's GELU runs as one fused kernel (:func:`fuse_gelu`).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = BUNDLED_BACKBONE if name_or_path is None else name_or_path
    local = Path(source).is_dir()
    if name_or_path is None and not local:
        raise BackboneError(f"the bundled backbone is missing at {BUNDLED_BACKBONE}; reinstall adapter-bot "
                            "or rebuild it with `python -m bot.recipes.backbone`")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(source), local_files_only=local, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(str(source), local_files_only=local,
                                                     trust_remote_code=trust_remote_code, dtype=torch.float32)
    except (OSError, ValueError) as e:
        where = f"local folder {str(source)!r}" if local else f"hub id {str(source)!r}"
        raise BackboneError(f"could not load the backbone from {where}: {e}\n"
                            "Run without --backbone to use the bundled offline backbone.") from None
    if model.config.model_type != "gpt2":
        raise BackboneError(f"backbone {str(source)!r} is a {model.config.model_type!r} model; "
                            "Adapter-Bot needs a GPT-2-architecture causal LM (DialoGPT is one)")
    if tokenizer.eos_token_id is None:
        raise BackboneError(f"backbone {str(source)!r}: its tokenizer has no EOS token to separate turns")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    fuse_gelu(model)
    model.to(device)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, tokenizer, backbone_name(name_or_path)
