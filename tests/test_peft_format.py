"""A ``lora`` skill in PEFT's format and back: PEFT itself computes the same logits (tiny random GPT-2)."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from bot.adapter.peft_format import PeftFormatError, export_peft, import_peft, read_peft
from bot.backbone import load_backbone

TOL = dict(atol=1e-5, rtol=1e-5)


def perturbed_lora(model, name, **settings):
    model.add_adapter(name, model.new_config("lora", **settings))
    g = torch.Generator().manual_seed(len(name))
    with torch.no_grad():
        for p in model.adapter_parameters(name):
            p.add_(torch.randn(p.shape, generator=g) * 0.2)
    model.invalidate()


def ids(n=3, t=7):
    return torch.randint(0, 250, (n, t), generator=torch.Generator().manual_seed(5))


def logits(model, route, x):
    with torch.no_grad():
        return model(input_ids=x, attention_mask=torch.ones_like(x), route=route).logits


def peft_model(tiny_dir, seed=1, **config):
    peft = pytest.importorskip("peft", reason="peft is not installed (pip install 'adapter-bot[peft]')")
    backbone, _, _ = load_backbone(tiny_dir)
    torch.manual_seed(seed)
    lora = peft.LoraConfig(fan_in_fan_out=True, init_lora_weights=False, task_type="CAUSAL_LM", **config)
    return peft.get_peft_model(backbone, lora)


def test_export_loads_in_peft_with_the_same_logits(tiny, tiny_dir, tmp_path):
    peft = pytest.importorskip("peft", reason="peft is not installed (pip install 'adapter-bot[peft]')")
    model, _ = tiny
    perturbed_lora(model, "s", rank=4, alpha=8, targets=["attn.c_attn", "attn.c_proj", "mlp.c_fc"])
    export_peft(model, "s", tmp_path / "peft")
    config = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 4 and config["lora_alpha"] == 8
    assert config["fan_in_fan_out"] is True and config["task_type"] == "CAUSAL_LM" and config["base_model_name_or_path"]
    assert sorted(config["target_modules"]) == ["attn.c_attn", "attn.c_proj", "mlp.c_fc"]
    keys = load_file(str(tmp_path / "peft" / "adapter_model.safetensors"))
    assert "base_model.model.transformer.h.1.attn.c_attn.lora_A.weight" in keys and len(keys) == 2 * 2 * 3

    backbone, _, _ = load_backbone(tiny_dir)
    theirs = peft.PeftModel.from_pretrained(backbone, tmp_path / "peft")
    x = ids()
    with torch.no_grad():
        peft_logits = theirs(input_ids=x, attention_mask=torch.ones_like(x)).logits
    ours = logits(model, "s", x)
    assert not torch.allclose(ours, logits(model, None, x), **TOL)  # the skill changes the outputs
    torch.testing.assert_close(peft_logits, ours, **TOL)
    # and PEFT's own file, saved again, imports back to the same skill
    theirs.save_pretrained(tmp_path / "again")
    import_peft(model, "back", tmp_path / "again")
    torch.testing.assert_close(logits(model, "back", x), ours, **TOL)


@pytest.mark.parametrize("targets", [["c_attn", "c_proj"], ["attn.c_attn", "mlp.c_fc", "mlp.c_proj"], "all-linear"])
def test_a_peft_lora_imports_with_peft_logits(tiny, tiny_dir, tmp_path, targets):
    model, _ = tiny
    theirs = peft_model(tiny_dir, target_modules=targets, r=4, lora_alpha=8)
    theirs.save_pretrained(tmp_path / "peft")
    x = ids()
    with torch.no_grad():
        peft_logits = theirs(input_ids=x, attention_mask=torch.ones_like(x)).logits
    config = import_peft(model, "imported", tmp_path / "peft")
    assert config.kind == "lora" and config.settings.rank == 4 and config.settings.alpha == 8.0
    expected = {"all-linear": 4, str(["c_attn", "c_proj"]): 3}.get(str(targets), len(targets))  # "c_proj" is attn's and mlp's
    assert len(config.settings.targets) == expected
    torch.testing.assert_close(logits(model, "imported", x), peft_logits, **TOL)
    # it mixes per row with the bare backbone like any skill
    mixed = logits(model, ["imported", None, "imported"], x)
    torch.testing.assert_close(mixed[1], logits(model, None, x)[1], **TOL)
    torch.testing.assert_close(mixed[[0, 2]], peft_logits[[0, 2]], **TOL)


def test_rslora_converts_exactly(tiny, tiny_dir, tmp_path):
    model, _ = tiny
    theirs = peft_model(tiny_dir, target_modules=["c_fc"], r=4, lora_alpha=8, use_rslora=True)
    theirs.save_pretrained(tmp_path / "peft")
    x = ids()
    with torch.no_grad():
        peft_logits = theirs(input_ids=x, attention_mask=torch.ones_like(x)).logits
    import_peft(model, "rs", tmp_path / "peft")
    torch.testing.assert_close(logits(model, "rs", x), peft_logits, **TOL)


# ---- refusals: no peft needed --------------------------------------------------------------------------------
def write_peft(folder, config, model, rank=4, targets=("attn.c_attn",)):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text(json.dumps(config))
    n, d = model.signature.num_layers, model.signature.hidden_size
    state = {}
    for i in range(n):
        for t in targets:
            fan_in, fan_out = model.backbone.transformer.h[i].get_submodule(t).weight.shape
            state[f"base_model.model.transformer.h.{i}.{t}.lora_A.weight"] = torch.randn(rank, fan_in)
            state[f"base_model.model.transformer.h.{i}.{t}.lora_B.weight"] = torch.randn(fan_out, rank)
    save_file(state, str(folder / "adapter_model.safetensors"))
    return folder


BASE = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 4, "lora_alpha": 8, "target_modules": ["attn.c_attn"],
        "fan_in_fan_out": True, "bias": "none", "lora_dropout": 0.1}


@pytest.mark.parametrize("change, field", [
    ({"peft_type": "IA3"}, "peft_type"),
    ({"use_dora": True}, "use_dora"),
    ({"bias": "lora_only"}, "bias"),
    ({"rank_pattern": {"c_attn": 8}}, "rank_pattern"),
    ({"modules_to_save": ["lm_head"]}, "modules_to_save"),
    ({"layers_to_transform": [0]}, "layers_to_transform"),
    ({"target_modules": ["wte"]}, "target_modules"),
    ({"target_modules": ["q_proj"]}, "target_modules"),
    ({"target_modules": r".*\.0\.attn\.c_attn"}, "target_modules"),
    ({"task_type": "SEQ_CLS"}, "task_type"),
    ({"some_future_switch": True}, "some_future_switch"),
    ({"r": 0}, "r"),
])
def test_unsupported_peft_settings_are_refused_naming_file_and_field(tiny, tmp_path, change, field):
    model, _ = tiny
    folder = write_peft(tmp_path / "peft", BASE | change, model)
    with pytest.raises(PeftFormatError) as err:
        import_peft(model, "x", folder)
    assert err.value.field == field
    assert str(folder / "adapter_config.json") in str(err.value) and repr(field) in str(err.value)
    assert model.skills == []


def test_dropout_and_initialisation_are_ignored(tiny, tmp_path):
    model, _ = tiny
    folder = write_peft(tmp_path / "peft", BASE | {"lora_dropout": 0.3, "init_lora_weights": "gaussian"}, model)
    import_peft(model, "x", folder)
    assert model.configs["x"].settings.targets == ["attn.c_attn"]


def test_weights_that_do_not_match_the_config_or_backbone_are_refused(tiny, tmp_path):
    model, _ = tiny
    folder = write_peft(tmp_path / "a", BASE | {"r": 8}, model, rank=4)  # config says 8, tensors are rank 4
    with pytest.raises(ValueError, match="adapter_model.safetensors.*shape"):
        import_peft(model, "x", folder)
    folder = write_peft(tmp_path / "b", BASE, model, targets=("attn.c_attn", "mlp.c_fc"))  # an extra target's tensors
    with pytest.raises(ValueError, match="unexpected.*mlp.c_fc"):
        import_peft(model, "x", folder)
    folder = write_peft(tmp_path / "c", BASE, model)
    (folder / "adapter_model.safetensors").rename(folder / "adapter_model.bin")
    with pytest.raises(FileNotFoundError, match="pickle"):
        import_peft(model, "x", folder)
    assert model.skills == []


def test_our_own_adapter_folder_is_not_a_peft_one(tiny, tmp_path):
    model, _ = tiny
    model.add_adapter("s", model.new_config("lora", rank=2))
    model.save_adapter("s", tmp_path / "ours")
    with pytest.raises(PeftFormatError, match="Adapter-Bot adapter config"):
        read_peft(model, tmp_path / "ours")


def test_only_lora_skills_export(tiny, tmp_path):
    model, _ = tiny
    model.add_adapter("b", model.new_config("bottleneck", bottleneck=4))
    with pytest.raises(ValueError, match="'bottleneck' adapter"):
        export_peft(model, "b", tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ---- the CLI: skill export / skill import --------------------------------------------------------------------
def test_cli_export_then_import_with_data_teaches_the_manager(tiny_dir, tiny_skills_dir, tmp_path, capsys):
    import shutil

    from bot import AdapterBot
    from bot.cli import main
    from tests.conftest import write_toy_data

    skills = tmp_path / "skills"
    shutil.copytree(tiny_skills_dir, skills)
    bot = AdapterBot.from_pretrained(tiny_dir, skills)
    perturbed_lora(bot.model, "lorish", rank=2, alpha=4)
    model = bot.model
    common = ["--backbone", str(tiny_dir), "--skills-dir", str(skills), "--device", "cpu"]

    # export refuses a bottleneck skill, naming its kind
    assert main(["skill", "export", "alpha", "--peft", str(tmp_path / "no"), *common]) == 2
    assert "'bottleneck' adapter" in capsys.readouterr().err and not (tmp_path / "no").exists()

    export_peft(model, "lorish", tmp_path / "peft")  # a PEFT LoRA to import
    data = write_toy_data(tmp_path / "alpha.jsonl", "alpha")
    assert main(["skill", "import", "gamma", "--peft", str(tmp_path / "peft"), "--data", str(data), *common]) == 0
    out = capsys.readouterr().out
    assert "installed skill 'gamma'" in out and "dialogue manager updated" in out and "test perplexity" in out

    again = AdapterBot.from_pretrained(tiny_dir, skills)
    assert "gamma" in again.skills and "gamma" in again.manager.skills
    assert again.registry.describe("gamma")["kind"] == "lora"
    x = ids()
    torch.testing.assert_close(logits(again.model, "gamma", x), logits(model, "lorish", x), **TOL)

    # and it exports back to the same PEFT tensors
    assert main(["skill", "export", "gamma", "--peft", str(tmp_path / "back"), *common]) == 0
    assert "exported skill 'gamma'" in capsys.readouterr().out
    first, second = (load_file(str(tmp_path / d / "adapter_model.safetensors")) for d in ("peft", "back"))
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    assert json.loads((tmp_path / "back" / "adapter_config.json").read_text())["base_model_name_or_path"] == str(tiny_dir)


def test_cli_import_without_data_says_the_manager_cannot_route_to_it(tiny, tiny_dir, tmp_path, capsys):
    from bot.cli import main

    model, _ = tiny
    folder = write_peft(tmp_path / "peft", BASE, model)
    skills = tmp_path / "skills"
    common = ["--backbone", str(tiny_dir), "--skills-dir", str(skills), "--device", "cpu"]
    assert main(["skill", "import", "delta", "--peft", str(folder), *common]) == 0
    assert "cannot route to it" in capsys.readouterr().out
    assert (skills / "delta" / "skill.yaml").is_file()
    # a refused PEFT file installs nothing
    bad = write_peft(tmp_path / "bad", BASE | {"use_dora": True}, model)
    assert main(["skill", "import", "eps", "--peft", str(bad), *common]) == 2
    assert "'use_dora'" in capsys.readouterr().err
    assert sorted(p.name for p in skills.iterdir()) == ["delta"]
