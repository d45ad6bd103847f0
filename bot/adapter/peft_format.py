"""A ``lora`` skill in PEFT's on-disk format, and a PEFT LoRA as a ``lora`` skill.

PEFT writes a LoRA as ``adapter_config.json`` (``peft_type: LORA``, ``r``, ``lora_alpha``,
``target_modules``...) and ``adapter_model.safetensors`` with keys such as
``base_model.model.transformer.h.0.attn.c_attn.lora_A.weight`` (``[r, in]``) and ``...lora_B.weight``
(``[out, r]``). A ``lora`` skill holds the same tensors under ``layers.{i}.{target}``, with the same
update ``(lora_alpha / r) * B A x``, so conversion is renaming (:mod:`.kinds.lora`).

- :func:`export_peft` writes a skill so that ``peft.PeftModel.from_pretrained(backbone, folder)``
  gives the same logits as the skill on the same backbone.
- :func:`read_peft` / :func:`convert_peft` / :func:`import_peft` read a PEFT LoRA made for the same
  backbone. Whatever a ``lora`` skill cannot express is refused, the error naming the file and the
  field: another ``peft_type``, per-module ranks or alphas, trained biases, DoRA, extra trained
  modules, LoRA on only some layers, targets other than the four projections of every block, and
  any setting this module does not know that is switched on. Settings that only matter while
  training (dropout, initialisation) are ignored. rsLoRA (scale ``alpha / sqrt(r)``) is converted
  exactly, to ``alpha * sqrt(r)`` on the ``alpha / r`` scale.

Neither direction needs the ``peft`` package; safetensors only (a pickled ``adapter_model.bin`` is refused).
"""
from __future__ import annotations

import json
import math
import re
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from skills.fields import FieldError
from skills.files import read_json_object

from .config import WEIGHTS_NAME, AdapterConfig
from .kinds.lora import TARGETS, LoraSettings

PEFT_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = "adapter_model.safetensors"
PREFIX = "base_model.model.transformer.h"  # PEFT's name of GPT-2's blocks inside a PeftModel
_KEY = re.compile(r"^base_model\.model\.transformer\.h\.(\d+)\.(" + "|".join(re.escape(t) for t in TARGETS)
                  + r")\.lora_([AB])\.weight$")

# Fields that change what the weights compute, and the values a `lora` skill can express.
_MUST_BE_OFF: dict[str, tuple[Any, ...]] = {
    "rank_pattern": ({}, None), "alpha_pattern": ({}, None), "bias": ("none",), "use_dora": (False, None),
    "lora_bias": (False, None), "modules_to_save": (None, []), "layers_to_transform": (None, []),
    "layers_pattern": (None, [], ""), "exclude_modules": (None, [], ""), "trainable_token_indices": (None, {}, []),
    "target_parameters": (None, []), "use_qalora": (False, None), "alora_invocation_tokens": (None, []),
    "layer_replication": (None, []), "megatron_config": (None, {}), "use_bdlora": (None, False, {}),
    "arrow_config": (None, {}),
}
_WHY = {
    "rank_pattern": "per-module ranks", "alpha_pattern": "per-module alphas", "bias": "trained biases",
    "use_dora": "DoRA (weight-decomposed LoRA)", "lora_bias": "a bias on lora_B", "modules_to_save": "fully trained extra modules",
    "layers_to_transform": "LoRA on only some layers", "layers_pattern": "LoRA on only some layers",
    "exclude_modules": "excluded modules", "trainable_token_indices": "trained token embeddings",
    "target_parameters": "LoRA on raw parameters", "use_qalora": "QALoRA", "alora_invocation_tokens": "activated LoRA",
    "layer_replication": "replicated layers", "megatron_config": "Megatron layers", "use_bdlora": "block-diagonal LoRA",
    "arrow_config": "Arrow routing",
}
# Fields that matter only while training, or only describe the file: read and ignored.
_IGNORED = {
    "peft_type", "task_type", "r", "lora_alpha", "target_modules", "fan_in_fan_out", "use_rslora", "base_model_name_or_path",
    "revision", "inference_mode", "peft_version", "auto_mapping", "lora_dropout", "init_lora_weights", "loftq_config",
    "eva_config", "corda_config", "lora_ga_config", "kasa_config", "monteclora_config", "velora_config", "megatron_core",
    "qalora_group_size", "ensure_weight_tying", "runtime_config",
}


class PeftFormatError(FieldError):
    """A PEFT adapter's config field holds something a ``lora`` skill cannot express."""

    what = "PEFT adapter config "


# ---- export ------------------------------------------------------------------------------------------------
def peft_config(settings: LoraSettings, base_model_name_or_path: str | None) -> dict[str, Any]:
    """PEFT's ``adapter_config.json`` for a ``lora`` skill (the fields PEFT reads; the rest take its defaults)."""
    alpha = int(settings.alpha) if float(settings.alpha).is_integer() else float(settings.alpha)
    return {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base_model_name_or_path,
        "r": settings.rank, "lora_alpha": alpha, "target_modules": sorted(settings.targets),
        "fan_in_fan_out": True,  # GPT-2's projections are Conv1D, weights stored [in, out]
        "lora_dropout": 0.0, "bias": "none", "use_rslora": False, "use_dora": False, "rank_pattern": {}, "alpha_pattern": {},
        "modules_to_save": None, "layers_to_transform": None, "layers_pattern": None, "init_lora_weights": True,
        "inference_mode": True,
    }


def export_peft(model, name: str, folder: Path | str, base_model_name_or_path: str | None = None) -> Path:
    """Write ``lora`` skill ``name`` of ``model`` (an :class:`~bot.adapter.AdaptedModel`) into ``folder`` in PEFT's format.

    ``base_model_name_or_path`` (default: the backbone name the skill records) is what PEFT's
    ``AutoPeftModelForCausalLM`` would load; ``PeftModel.from_pretrained(backbone, folder)`` ignores it.
    Returns ``folder``.
    """
    config = model.configs.get(name)
    if config is None:
        raise KeyError(f"no adapter named {name!r}; loaded: {', '.join(model.skills) or 'none'}")
    if config.kind != "lora":
        raise ValueError(f"skill {name!r} is a {config.kind!r} adapter; only a lora skill has a PEFT format")
    state = {}
    for key, tensor in model.adapter_state_dict(name).items():
        assert key.startswith("layers."), key
        state[f"{PREFIX}.{key[len('layers.'):]}"] = tensor.contiguous()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = peft_config(config.settings, base_model_name_or_path or config.signature.backbone)
    (folder / PEFT_CONFIG).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    save_file(state, str(folder / PEFT_WEIGHTS), metadata={"format": "pt"})
    return folder


# ---- import ------------------------------------------------------------------------------------------------
def _is_off(value: Any, allowed: tuple[Any, ...]) -> bool:
    return any(value == a and type(value) is type(a) or (value is None and a is None) for a in allowed)


def _targets(target_modules: Any, num_layers: int, path: Path) -> list[str]:
    """Which of :data:`TARGETS` PEFT's ``target_modules`` selects, the same in every block; anything else is refused."""
    blocks = [f"transformer.h.{i}" for i in range(num_layers)]
    ours = [f"{b}.{t}" for b in blocks for t in TARGETS]
    others = ["transformer.wte", "transformer.wpe", "lm_head"] + [f"{b}.{m}" for b in blocks for m in
                                                                    ("ln_1", "ln_2", "attn", "mlp", "mlp.act", "attn.attn_dropout")]
    if target_modules == "all-linear":  # PEFT: every linear layer but the output head
        return list(TARGETS)
    if isinstance(target_modules, str):  # PEFT: a regular expression, matched whole against module names
        try:
            rule = re.compile(target_modules)
        except re.error as e:
            raise PeftFormatError("target_modules", f"is not a valid regular expression ({e})", path) from None
        matches = lambda key: rule.fullmatch(key) is not None  # noqa: E731
    elif isinstance(target_modules, list) and target_modules and all(isinstance(t, str) for t in target_modules):
        matches = lambda key: any(key == t or key.endswith("." + t) for t in target_modules)  # noqa: E731
        unused = [t for t in target_modules if not any(k == t or k.endswith("." + t) for k in ours + others)]
        if unused:
            raise PeftFormatError("target_modules", f"names {unused}, which match no module of a GPT-2 block "
                                  f"(supported: {', '.join(TARGETS)})", path)
    else:
        raise PeftFormatError("target_modules", f"must be a non-empty list of module names or a regular expression, "
                              f"got {target_modules!r}", path)
    outside = [k for k in others if matches(k)]
    if outside:
        raise PeftFormatError("target_modules", f"selects {outside[:3]}; a lora skill adapts only {', '.join(TARGETS)}", path)
    chosen = [t for t in TARGETS if matches(f"{blocks[0]}.{t}")]
    for b in blocks:
        here = [t for t in TARGETS if matches(f"{b}.{t}")]
        if here != chosen:
            raise PeftFormatError("target_modules", f"selects {here} in {b} but {chosen} in {blocks[0]}; a lora skill "
                                  "adapts the same projections in every block", path)
    if not chosen:
        raise PeftFormatError("target_modules", f"selects none of {', '.join(TARGETS)}", path)
    return chosen


def read_peft(model, folder: Path | str) -> tuple[AdapterConfig, dict[str, torch.Tensor]]:
    """A PEFT LoRA folder as a ``lora`` skill of ``model``: its config and its tensors, named as the skill names them."""
    folder = Path(folder)
    path = folder / PEFT_CONFIG
    data = read_json_object(path, "PEFT adapter config")
    if "peft_type" not in data:
        hint = " (this is an Adapter-Bot adapter config: install it as a skill folder instead)" if "kind" in data else ""
        raise PeftFormatError("peft_type", f"is missing; a PEFT adapter config names its method{hint}", path)
    if data["peft_type"] != "LORA":
        raise PeftFormatError("peft_type", f"is {data['peft_type']!r}; only LORA adapters can be imported", path)
    if data.get("task_type") not in (None, "CAUSAL_LM"):
        raise PeftFormatError("task_type", f"is {data['task_type']!r}; a skill is a CAUSAL_LM adapter", path)
    for field, allowed in _MUST_BE_OFF.items():
        if field in data and not _is_off(data[field], allowed):
            raise PeftFormatError(field, f"is {data[field]!r}: {_WHY[field]} cannot be expressed by a lora skill", path)
    for field, value in data.items():
        if field not in _MUST_BE_OFF and field not in _IGNORED and value not in (None, False, {}, [], ""):
            raise PeftFormatError(field, f"is {value!r}: a setting this importer does not know, so it cannot tell "
                                  "whether the skill would compute the same", path)
    rank, alpha = data.get("r", 8), data.get("lora_alpha", 8)
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
        raise PeftFormatError("r", f"must be an integer >= 1, got {rank!r}", path)
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not math.isfinite(alpha) or alpha <= 0:
        raise PeftFormatError("lora_alpha", f"must be a number > 0, got {alpha!r}", path)
    if data.get("use_rslora", False) is True:
        alpha = alpha * math.sqrt(rank)  # rsLoRA scales by alpha / sqrt(r); a lora skill by alpha / r
    elif data.get("use_rslora", False) not in (False, None):
        raise PeftFormatError("use_rslora", f"must be true or false, got {data['use_rslora']!r}", path)
    targets = _targets(data.get("target_modules"), model.signature.num_layers, path)
    config = model.new_config("lora", rank=rank, alpha=float(alpha), targets=targets)

    weights = folder / PEFT_WEIGHTS
    if not weights.is_file():
        pickled = folder / "adapter_model.bin"
        raise FileNotFoundError(f"{weights}: missing" + (f"; {pickled.name} is a pickle, which is never loaded: "
                                                         "convert it to safetensors first" if pickled.exists() else ""))
    try:
        raw = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{weights}: not a readable safetensors file ({e})") from None
    state, unexpected = {}, []
    for key, tensor in raw.items():
        match = _KEY.match(key)
        if match is None or match.group(2) not in targets:
            unexpected.append(key)
            continue
        layer, target, ab = match.groups()
        state[f"layers.{layer}.{target}.lora_{ab}.weight"] = tensor.to(torch.float32)
    expected = model.kind("lora").file_shapes(config.settings)
    missing = sorted(set(expected) - set(state))
    if unexpected or missing:
        raise ValueError(f"{weights}: tensors do not match {PEFT_CONFIG} (r {rank}, targets {targets}, "
                         f"{model.signature.num_layers} blocks): unexpected {sorted(unexpected)[:3]}, "
                         f"missing {[f'{PREFIX}.{k[7:]}' for k in missing[:3]]}")
    for key, shape in expected.items():
        if tuple(state[key].shape) != tuple(shape):
            raise ValueError(f"{weights}: tensor {PREFIX}.{key[7:]} has shape {tuple(state[key].shape)}, expected "
                             f"{tuple(shape)} on backbone {model.signature.describe()}: was it made for another backbone "
                             f"({data.get('base_model_name_or_path')!r})?")
    return config, state


def convert_peft(model, peft_folder: Path | str, out: Path | str) -> AdapterConfig:
    """Write the PEFT LoRA in ``peft_folder`` into ``out`` as a ``lora`` skill's adapter files; return its config."""
    config, state = read_peft(model, peft_folder)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config.save(out)
    save_file({k: v.contiguous() for k, v in state.items()}, str(out / WEIGHTS_NAME), metadata={"format": "pt"})
    return config


def import_peft(model, name: str, folder: Path | str) -> AdapterConfig:
    """Load the PEFT LoRA in ``folder`` into ``model`` as ``lora`` skill ``name`` (with every check of ``load_adapter``)."""
    with tempfile.TemporaryDirectory(prefix="adapterbot-peft-") as tmp:
        config = convert_peft(model, folder, tmp)
        model.load_adapter(name, Path(tmp), kind="lora")
    return config
