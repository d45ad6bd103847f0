"""Every adapter kind: identity where it can be, isolated training, files, refusals, one-pass mixing
over kinds (logits and generation, with the KV cache and beams), LoRA merging, blending, threads."""
from __future__ import annotations

import json
import threading

import pytest
import torch

from bot.adapter import KINDS, AdaptedModel, AdapterMismatchError
from bot.adapter.config import AdapterConfigError, kind_settings
from bot.backbone import load_backbone
from bot.generation import generate_ids

SMALL = {"bottleneck": {"bottleneck": 6}, "houlsby": {"bottleneck": 4}, "lora": {"rank": 4},
         "prefix": {"length": 3, "reparam_hidden": 8}, "prompt": {"length": 4}}
TOL = dict(atol=1e-5, rtol=1e-5)  # matmuls of different widths sum in different orders


def perturb(model: AdaptedModel, name: str, seed: int, scale: float = 0.3) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.adapter_parameters(name):
            p.add_(torch.randn(p.shape, generator=g) * scale)
    model.invalidate()


def logits(model: AdaptedModel, ids: torch.Tensor, route, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The logits; with a mask, left-padded rows get positions from their first token, as generate() gives them."""
    positions = None if mask is None else (mask.cumsum(1) - 1).clamp(min=0)
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, position_ids=positions, route=route).logits


@pytest.fixture
def every_kind(tiny):
    """One perturbed skill of each kind, named after it."""
    model, tok = tiny
    for i, (kind, settings) in enumerate(SMALL.items()):
        model.add_adapter(kind, model.new_config(kind, **settings))
        perturb(model, kind, i)
    return model, tok


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_fresh_adapter_is_the_identity_where_the_kind_allows(tiny, kind):
    model, _ = tiny
    ids = torch.randint(0, 200, (3, 10))
    bare = logits(model, ids, None)
    model.add_adapter("a", model.new_config(kind, **SMALL[kind]))
    same = torch.equal(logits(model, ids, "a"), bare)
    assert same is KINDS[kind].identity_at_init
    # a bare row beside the skill's rows: the same up to rounding (prefix kinds add masked-out keys to its attention)
    torch.testing.assert_close(logits(model, ids, ["a", None, "a"])[1], bare[1], **TOL)


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_training_step_changes_only_that_skill(tiny, kind):
    model, _ = tiny
    for name, seed in (("a", 1), ("b", 2)):
        model.add_adapter(name, model.new_config(kind, **SMALL[kind]))
        perturb(model, name, seed, 0.05)
    backbone = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    a_before = {k: v.clone() for k, v in model.adapter_state_dict("a").items()}
    b_before = {k: v.clone() for k, v in model.adapter_state_dict("b").items()}
    model.set_trainable("b", True)
    opt = torch.optim.SGD(model.adapter_parameters("b"), lr=0.5)
    ids = torch.randint(0, 200, (2, 12))
    model(input_ids=ids, labels=ids, route="b").loss.backward()
    opt.step()
    model.set_trainable("b", False)
    assert all(torch.equal(backbone[k], v) for k, v in model.backbone.state_dict().items())
    assert all(p.grad is None for p in model.backbone.parameters())
    assert all(torch.equal(a_before[k], v) for k, v in model.adapter_state_dict("a").items())
    assert any(not torch.equal(b_before[k], v) for k, v in model.adapter_state_dict("b").items())


@pytest.mark.parametrize("kind", list(KINDS))
def test_save_then_load_gives_the_same_outputs(every_kind, kind, tmp_path, tiny_dir):
    model, _ = every_kind
    model.save_adapter(kind, tmp_path / kind)
    config = json.loads((tmp_path / kind / "adapter_config.json").read_text(encoding="utf-8"))
    assert config["kind"] == kind and all(config[k] == v for k, v in SMALL[kind].items() if k != "reparam_hidden")
    fresh, _, name = load_backbone(tiny_dir)
    other = AdaptedModel(fresh, name)
    other.load_adapter("x", tmp_path / kind)
    assert all(torch.equal(v, other.adapter_state_dict("x")[k]) for k, v in model.adapter_state_dict(kind).items())
    ids = torch.randint(0, 200, (2, 7))
    torch.testing.assert_close(logits(other, ids, "x"), logits(model, ids, kind), **TOL)


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_file_of_another_kind_or_backbone_is_refused_naming_both(every_kind, kind, tmp_path):
    from tests.conftest import make_tiny_backbone

    model, _ = every_kind
    model.save_adapter(kind, tmp_path / kind)
    other_kind = next(k for k in KINDS if k != kind)
    with pytest.raises(AdapterMismatchError) as e:
        model.load_adapter("again", tmp_path / kind, kind=other_kind)
    assert repr(kind) in str(e.value) and repr(other_kind) in str(e.value)
    wider, _, name = load_backbone(make_tiny_backbone(tmp_path / "wider", n_embd=48, n_layer=3))
    with pytest.raises(AdapterMismatchError) as e:
        AdaptedModel(wider, name).load_adapter("x", tmp_path / kind)
    assert "hidden size 32, 2 layers" in str(e.value) and "hidden size 48, 3 layers" in str(e.value)
    assert "again" not in model.skills


def test_a_mixed_batch_over_every_kind_equals_each_row_alone(every_kind):
    model, tok = every_kind
    route = ["bottleneck", None, "houlsby", "lora", "prefix", "prompt", "lora", None]
    contexts = [tok.encode(t) + [tok.eos_token_id] for t in
                ("hello how are", "my computer", "who wrote the", "i feel sad today and", "a b c", "the end of", "x", "why")]
    from bot.dialogue import pad

    ids, mask = pad(contexts, tok.pad_token_id, left=True)
    mixed = logits(model, ids, route, mask)
    for i, skill in enumerate(route):
        alone = logits(model, torch.tensor([contexts[i]]), skill)
        torch.testing.assert_close(mixed[i, -len(contexts[i]):], alone[0], **TOL)
    assert len({round(float(mixed[i, -1].sum()), 3) for i in (0, 2, 3, 4, 5)}) == 5  # every kind acts


@pytest.mark.parametrize("beams", [1, 3])
def test_mixed_generation_with_the_cache_equals_each_row_alone(every_kind, beams):
    model, tok = every_kind
    route = ["prefix", "lora", None, "houlsby", "prompt", "bottleneck"]
    contexts = [tok.encode(t) + [tok.eos_token_id] for t in
                ("hello how are", "my computer", "who wrote", "i feel sad today and", "the end", "what")]
    settings = dict(max_new_tokens=6, min_new_tokens=6, do_sample=False, num_beams=beams)
    mixed = generate_ids(model, tok, contexts, route, **settings)
    alone = [generate_ids(model, tok, [c], [s], **settings)[0] for c, s in zip(contexts, route)]
    assert mixed == alone
    assert len({tuple(x) for x in mixed}) > 3


def test_a_lora_merge_equals_unmerged_and_unmerging_restores_the_backbone_exactly(every_kind):
    model, _ = every_kind
    ids = torch.randint(0, 200, (2, 9))
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    unmerged = logits(model, ids, "lora")
    model.merge("lora")
    torch.testing.assert_close(logits(model, ids, "lora"), unmerged, **TOL)
    with pytest.raises(ValueError, match="merged"):
        logits(model, ids, None)
    with pytest.raises(ValueError, match="kind 'bottleneck'"):
        model.unmerge() or model.merge("bottleneck")
    model.unmerge()
    assert all(torch.equal(before[k], v) for k, v in model.backbone.state_dict().items())


def test_a_blend_at_weight_one_is_the_skill_and_a_blend_mixes(tiny):
    model, _ = tiny
    for i, name in enumerate(("a", "b", "c")):
        model.add_adapter(name, model.new_config("lora" if name == "c" else "bottleneck", **({"rank": 4} if name == "c" else {})))
        perturb(model, name, i)
    ids = torch.randint(0, 200, (2, 8))
    torch.testing.assert_close(logits(model, ids, {"a": 1.0}), logits(model, ids, "a"), **TOL)
    torch.testing.assert_close(logits(model, ids, {"a": 1.0, "b": 0.0}), logits(model, ids, "a"), **TOL)
    half = logits(model, ids, {"a": 0.5, "b": 0.5})
    assert not torch.allclose(half, logits(model, ids, "a")) and not torch.allclose(half, logits(model, ids, "b"))
    in_batch = logits(model, ids, [{"a": 0.5, "b": 0.5}, "c"])
    torch.testing.assert_close(in_batch[0], half[0], **TOL)
    with pytest.raises(ValueError, match="one kind"):
        logits(model, ids, {"a": 0.5, "c": 0.5})


def test_a_blend_of_bottleneck_adapters_mixes_their_outputs_in_each_block(tiny):
    model, _ = tiny
    for i, name in enumerate(("a", "b")):
        model.add_adapter(name, model.new_config(bottleneck=4 + 2 * i))
        perturb(model, name, i)
    h = torch.randn(1, 5, 32)
    block = model.backbone.transformer.h[0]
    outputs = {}
    for route in ("a", "b", {"a": 0.3, "b": 0.7}):
        with torch.no_grad(), model.route(route):
            outputs[str(route)] = block(h)[0] if isinstance(block(h), tuple) else block(h)
    bare = block(h)[0] if isinstance(block(h), tuple) else block(h)
    expected = bare + 0.3 * (outputs["a"] - bare) + 0.7 * (outputs["b"] - bare)
    torch.testing.assert_close(outputs[str({"a": 0.3, "b": 0.7})], expected, **TOL)


def test_two_threads_on_different_skills_do_not_see_each_others_route(every_kind):
    model, tok = every_kind
    context = tok.encode("hello how are you") + [tok.eos_token_id]
    settings = dict(max_new_tokens=8, min_new_tokens=8, do_sample=False)
    skills = ["lora", "prefix", "bottleneck", None]
    expected = {s: generate_ids(model, tok, [context], [s], **settings)[0] for s in skills}
    got: dict = {s: [] for s in skills}
    barrier = threading.Barrier(len(skills))

    def run(skill) -> None:
        barrier.wait()
        for _ in range(3):
            got[skill].append(generate_ids(model, tok, [context], [skill], **settings)[0])

    threads = [threading.Thread(target=run, args=(s,)) for s in skills]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(rows == [expected[s]] * 3 for s, rows in got.items())
    assert len({tuple(v) for v in expected.values()}) >= 3


@pytest.mark.parametrize("kind, settings, field", [
    ("lora", {"rank": 0}, "rank"), ("lora", {"targets": ["attn.q"]}, "targets"), ("lora", {"alpha": -1}, "alpha"),
    ("prefix", {"length": 0}, "length"), ("bottleneck", {"bottleneck": "64"}, "bottleneck"),
    ("bottleneck", {"bottleneck": 2.5}, "bottleneck"), ("houlsby", {"rank": 4}, "rank"), ("adapter", {}, "kind"),
])
def test_bad_kind_settings_name_the_field(kind, settings, field):
    with pytest.raises(AdapterConfigError) as e:
        kind_settings(kind, settings)
    assert e.value.field == field


def test_every_kind_stays_within_3_percent_of_a_dialogpt_shaped_backbone_at_its_defaults():
    from transformers import GPT2Config, GPT2LMHeadModel

    backbone = GPT2LMHeadModel(GPT2Config(n_embd=384, n_layer=6, n_head=6, vocab_size=8192, n_positions=256))
    model = AdaptedModel(backbone, "shape-of-the-bundled-backbone")
    total = sum(p.numel() for p in backbone.parameters())
    for kind in KINDS:
        model.add_adapter(kind, model.new_config(kind))
        fraction = sum(p.numel() for p in model.adapter_parameters(kind)) / total
        assert 0 < fraction <= 0.03, (kind, fraction)


def test_the_bot_answers_with_a_blend_and_a_blend_at_weight_one_is_the_skill(tiny_bot):
    bot = tiny_bot
    a, b = bot.skills[:2]
    history = ["hello, can you help me with something?"]
    alone = bot.respond(history, skill=a)
    assert bot.respond(history, skill={a: 1.0}).text == alone.text
    mixed = bot.respond(history, skill={a: 0.5, b: 0.5})
    assert mixed.blend == {a: 0.5, b: 0.5} and mixed.skill in (a, b)
    with pytest.raises(ValueError, match="unknown"):
        bot.respond(history, skill={a: 0.5, "nope": 0.5})
    with pytest.raises(ValueError, match="weight above 0"):
        bot.respond(history, skill={a: 0.0})


def test_auto_mode_blends_its_two_best_skills_within_the_margin(tiny_bot):
    bot = tiny_bot
    history = ["my printer will not print"]
    bot.blend_margin = 1.0
    blended = bot.respond(history)
    if blended.skill is None:
        pytest.skip("the toy manager sent this turn to the bare backbone")
    assert blended.blend is not None and blended.skill in blended.blend
    assert abs(sum(blended.blend.values()) - 1) < 1e-6
    assert blended.text == bot.respond(history, skill=blended.blend).text
    bot.blend_margin = None
    single = bot.respond(history)
    assert single.blend is None and single.text == bot.respond(history, skill=single.skill).text
    bot.blend_margin = 0.0  # a margin of zero blends only a tie
    assert bot.respond(history).blend is None


def test_the_blending_measurement_scores_both_sets_at_every_margin(tiny_bot):
    from bot.evaluation.blending import MARGINS, measure

    report = measure(tiny_bot, seed=0)
    assert set(report["by_margin"]) == {"mixed", "single"}
    assert all(set(m) == {str(x) for x in MARGINS} for m in report["by_margin"].values())
    widest = report["by_margin"]["mixed"][str(MARGINS[-1])]
    assert widest["turns_blended"] >= report["by_margin"]["mixed"][str(MARGINS[0])]["turns_blended"]
    assert report["recommendation"] == "off" or report["helps"]


def test_a_prompt_longer_than_the_backbones_window_is_refused_naming_the_setting(tiny):
    model, _ = tiny
    window = model.backbone.config.n_positions
    model.add_adapter("fits", model.new_config("prompt", length=window))
    with pytest.raises(AdapterConfigError) as e:
        model.add_adapter("long", model.new_config("prompt", length=window + 1))
    assert e.value.field == "length" and str(window) in str(e.value) and "long" not in model.skills
