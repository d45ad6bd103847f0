"""The manager's default features: the bare backbone's pooled hidden states after its first blocks."""
from __future__ import annotations

import pytest
import torch

from bot.dialogue import build_context
from bot.features import BackboneFeatures
from tests.conftest import make_tiny_backbone


@pytest.fixture
def deep(tmp_path):
    from bot.adapter import AdaptedModel
    from bot.backbone import load_backbone

    model, tokenizer, name = load_backbone(make_tiny_backbone(tmp_path, n_layer=4))
    return AdaptedModel(model, name), tokenizer


def test_features_pool_the_hidden_states_after_the_first_sixth_of_the_blocks(deep):
    model, tok = deep
    features = BackboneFeatures(model, tok)
    assert features.layers == 1 and features.name.endswith(":blocks=1:tokens=64")
    history = ["hello how are you today", "i feel sad today"]
    ids = torch.tensor([build_context(tok, history, 64)])
    with torch.no_grad():
        states = model.backbone.transformer(input_ids=ids, output_hidden_states=True).hidden_states[1][0]
    last = len(build_context(tok, history[-1:], 64))
    expected = torch.cat([states[-last:].mean(0), states[:-last].mean(0)])
    torch.testing.assert_close(features([history])[0], expected)


def test_a_first_turn_has_zeros_for_the_turns_before_it(deep):
    model, tok = deep
    features = BackboneFeatures(model, tok)([["i feel sad today"]])[0]
    assert torch.count_nonzero(features[features.shape[0] // 2 :]) == 0
    assert torch.count_nonzero(features[: features.shape[0] // 2]) > 0



def test_later_blocks_never_run_and_adapters_never_apply(deep):
    model, tok = deep
    before = BackboneFeatures(model, tok, layers=2)(["i feel sad today"])
    model.add_adapter("a", model.new_config(bottleneck=4))
    with torch.no_grad():
        for p in model.adapter_parameters("a"):
            p.add_(1.0)
    model.set_trainable("a", False)  # drops the folded weights cached from the old values
    ran = []
    handle = model.backbone.transformer.h[2].register_forward_hook(lambda *a: ran.append(1))
    try:
        after = BackboneFeatures(model, tok, layers=2)(["i feel sad today"])
    finally:
        handle.remove()
    assert ran == []
    torch.testing.assert_close(after, before)


def test_padding_does_not_change_a_history_s_features(deep):
    model, tok = deep
    features = BackboneFeatures(model, tok)
    short, long = ["hello"], ["my computer will not turn on", "check the power cable and try again"]
    torch.testing.assert_close(features([short, long])[0], features([short])[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layers", [0, 5])
def test_a_block_count_outside_the_backbone_is_refused(deep, layers):
    model, tok = deep
    with pytest.raises(ValueError, match="layers must be between 1 and the backbone's 4 blocks"):
        BackboneFeatures(model, tok, layers=layers)


def test_features_are_rebuilt_from_the_name_a_manager_recorded(deep):
    model, tok = deep
    made = BackboneFeatures(model, tok, max_tokens=48, layers=3)
    again = BackboneFeatures.from_name(model, tok, made.name)
    assert again is not None and (again.layers, again.max_tokens, again.name) == (3, 48, made.name)
    assert BackboneFeatures.from_name(model, tok, made.name.replace("blocks=3", "blocks=9")) is None  # deeper than the backbone
    assert BackboneFeatures.from_name(model, tok, "hashing-bag:64") is None
