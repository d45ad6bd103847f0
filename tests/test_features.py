"""The manager's default features: the bare backbone's pooled hidden states after its first blocks."""
from __future__ import annotations

import pytest
import torch
from sklearn.utils import murmurhash3_32

from bot.dialogue import build_context
from bot.features import NGRAMS, BackboneFeatures, HashedNgrams
from tests.conftest import make_tiny_backbone


@pytest.fixture
def deep(tmp_path):
    from bot.adapter import AdaptedModel
    from bot.backbone import load_backbone

    model, tokenizer, name = load_backbone(make_tiny_backbone(tmp_path, n_layer=4))
    return AdaptedModel(model, name), tokenizer


def test_features_pool_the_hidden_states_after_the_first_sixth_of_the_blocks(deep):
    model, tok = deep
    features = BackboneFeatures(model, tok, ngrams=0)
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
    hidden = model.signature.hidden_size
    features = BackboneFeatures(model, tok)([["i feel sad today"]])[0]
    assert torch.count_nonzero(features[hidden : 2 * hidden]) == 0
    assert torch.count_nonzero(features[:hidden]) > 0


def test_the_newest_message_s_hashed_ngrams_follow_the_pooled_states(deep):
    model, tok = deep
    features = BackboneFeatures(model, tok)
    assert features.name.endswith(f":blocks=1:tokens=64:ngrams={NGRAMS}")
    history = ["how are you", "My wifi keeps dropping every few minutes"]
    row = features([history])[0]
    assert row.shape[0] == features.dim == 2 * model.signature.hidden_size + NGRAMS
    torch.testing.assert_close(row[-NGRAMS:], HashedNgrams(NGRAMS)([history[-1]])[0])
    torch.testing.assert_close(row[: -NGRAMS], BackboneFeatures(model, tok, ngrams=0)([history])[0])


def test_the_user_s_previous_message_has_its_own_hashed_ngrams(deep):
    model, tok = deep
    features = BackboneFeatures(model, tok, ngrams=NGRAMS, previous=256)
    assert features.name.endswith(f":ngrams={NGRAMS}:previous=256") and features.dim == 2 * model.signature.hidden_size + NGRAMS + 256
    history = ["my printer says it's offline", "Turn it off and on again.", "i tried that already"]
    row = features([history])[0]
    torch.testing.assert_close(row[-256:], HashedNgrams(256)([history[0]])[0])
    torch.testing.assert_close(row[:-256], BackboneFeatures(model, tok, ngrams=NGRAMS)([history])[0])
    assert torch.count_nonzero(features([history[-1:]])[0][-256:]) == 0  # a first message has no previous one
    again = BackboneFeatures.from_name(model, tok, features.name)
    assert again is not None and again.name == features.name and again.previous.dim == 256


def test_hashed_ngrams_are_deterministic_and_need_no_fitting():
    texts = ["My WiFi keeps dropping every few minutes", "hello there", ""]
    a, b = HashedNgrams(64)(texts), HashedNgrams(64)(texts[:1])
    assert a.shape == (3, 64)
    torch.testing.assert_close(a[:1], b)  # the same text, another instance, another batch: the same vector
    torch.testing.assert_close(a[0], HashedNgrams(64)(["my wifi keeps dropping every few minutes"])[0])  # lower-cased
    torch.testing.assert_close(a[0, :32].norm(), torch.tensor(1.0))  # word half and char half, each L2-normalised
    torch.testing.assert_close(a[0, 32:].norm(), torch.tensor(1.0))
    assert torch.count_nonzero(a[2]) == 0 and not torch.equal(a[0], a[1])
    # the word's bucket is its seedless MurmurHash3: the same on every machine and in every session
    assert torch.nonzero(HashedNgrams(16)(["wifi"])[0, :8]).flatten().tolist() == [abs(murmurhash3_32("wifi", seed=0)) % 8]


@pytest.mark.parametrize("dim", [0, 3, -2])
def test_a_hashed_width_that_cannot_split_in_two_halves_is_refused(dim):
    with pytest.raises(ValueError, match="even number of at least 2"):
        HashedNgrams(dim)



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
    made = BackboneFeatures(model, tok, max_tokens=48, layers=3, ngrams=0)
    default = BackboneFeatures.from_name(model, tok, BackboneFeatures(model, tok).name)
    assert default is not None and default.ngrams is not None and default.ngrams.dim == NGRAMS
    again = BackboneFeatures.from_name(model, tok, made.name)
    assert again is not None and (again.layers, again.max_tokens, again.name) == (3, 48, made.name)
    assert BackboneFeatures.from_name(model, tok, made.name.replace("blocks=3", "blocks=9")) is None  # deeper than the backbone
    assert BackboneFeatures.from_name(model, tok, "hashing-bag:64") is None
    hashed = BackboneFeatures.from_name(model, tok, made.name + ":ngrams=256")
    assert hashed is not None and hashed.dim == made.dim + 256 and hashed.name == made.name + ":ngrams=256"
    assert BackboneFeatures.from_name(model, tok, made.name + ":ngrams=3") is None
    old = BackboneFeatures.from_name(model, tok, "backbone-lastprev:" + model.signature.backbone + ":blocks=1:tokens=64")
    assert old is not None and old.ngrams is None and old.dim == 2 * model.signature.hidden_size  # managers saved before n-grams


def test_a_bot_rebuilds_the_hashed_ngram_features_its_manager_was_trained_on(tiny_bot):
    recorded = tiny_bot.manager.config.feature_name
    assert recorded == tiny_bot.features.name and recorded.endswith(f":ngrams={NGRAMS}")
    history = ["hello", "my printer will not print"]
    fresh = BackboneFeatures(tiny_bot.model, tiny_bot.tokenizer, layers=tiny_bot.features.layers)
    torch.testing.assert_close(tiny_bot.manager.features([history]), fresh([history]))
