"""The residual adapter bank: identity at init, isolation in training, one-pass mixed batches, files."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from transformers import NoRepeatNGramLogitsProcessor

from bot.adapter import AdaptedModel, AdapterMismatchError
from bot.backbone import load_backbone
from bot.dialogue import pad
from bot.generation import CopyBoost, ReplyNoRepeatNGram, generate_ids


def randomize(model: AdaptedModel, name: str, seed: int) -> None:
    """Give an adapter non-trivial weights (a fresh one is the identity)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.adapter_parameters(name):
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    model.invalidate()


def logits(model: AdaptedModel, ids: torch.Tensor, route) -> torch.Tensor:
    with torch.no_grad(), model.route(route):
        return model(input_ids=ids).logits


def test_fresh_adapter_reproduces_backbone(tiny):
    model, _ = tiny
    ids = torch.randint(0, 200, (3, 10))
    bare = logits(model, ids, None)
    model.add_adapter("a", model.new_config(bottleneck=8))
    assert torch.equal(logits(model, ids, "a"), bare)
    assert torch.equal(logits(model, ids, ["a", None, "a"]), bare)


def test_training_step_touches_only_its_adapter(tiny):
    model, _ = tiny
    for name, seed in [("a", 1), ("b", 2)]:
        model.add_adapter(name, model.new_config(bottleneck=8))
        randomize(model, name, seed)
    backbone_before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    a_before = {k: v.clone() for k, v in model.adapter_state_dict("a").items()}
    b_before = {k: v.clone() for k, v in model.adapter_state_dict("b").items()}
    model.set_trainable("b", True)
    opt = torch.optim.SGD(model.adapter_parameters("b"), lr=0.5)
    ids = torch.randint(0, 200, (2, 12))
    with model.route("b"):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    opt.step()
    assert all(torch.equal(backbone_before[k], v) for k, v in model.backbone.state_dict().items())
    assert all(p.grad is None for p in model.backbone.parameters())
    assert all(torch.equal(a_before[k], v) for k, v in model.adapter_state_dict("a").items())
    assert any(not torch.equal(b_before[k], v) for k, v in model.adapter_state_dict("b").items())


@pytest.fixture
def three_skills(tiny):
    model, tok = tiny
    for i, name in enumerate(["a", "b", "c"]):
        model.add_adapter(name, model.new_config(bottleneck=4 + 4 * i))  # mixed bottlenecks are zero-padded
        randomize(model, name, i)
    return model, tok


def test_mixed_batch_logits_match_rows_alone(three_skills):
    model, _ = three_skills
    route = ["a", None, "c", "b", "a"]
    ids = torch.randint(0, 200, (len(route), 9))
    mixed = logits(model, ids, route)
    for i, skill in enumerate(route):
        alone = logits(model, ids[i : i + 1], skill)
        torch.testing.assert_close(mixed[i : i + 1], alone, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(mixed[0], mixed[1])  # the adapters really act


def test_mixed_batch_greedy_generation_matches_rows_alone(three_skills):
    model, tok = three_skills
    contexts = [tok.encode("hello how are") + [tok.eos_token_id], tok.encode("my computer") + [tok.eos_token_id],
                tok.encode("who wrote") + [tok.eos_token_id], tok.encode("i feel sad today and") + [tok.eos_token_id]]
    route = ["a", "b", None, "c"]
    settings = dict(max_new_tokens=8, do_sample=False, min_new_tokens=8)
    mixed = generate_ids(model, tok, contexts, route, **settings)
    alone = [generate_ids(model, tok, [c], [s], **settings)[0] for c, s in zip(contexts, route)]
    assert mixed == alone
    assert len({tuple(x) for x in mixed}) > 1


def block_forward_batches(model: AdaptedModel, run) -> list[int]:
    """The batch size of every transformer block forward that ``run()`` makes."""
    sizes: list[int] = []

    def hook(module, args, output) -> None:
        sizes.append((output[0] if isinstance(output, tuple) else output).shape[0])

    handles = [block.register_forward_hook(hook) for block in model.backbone.transformer.h]
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    return sizes


def test_a_mixed_skill_batch_costs_one_pass_like_a_single_skill_batch(three_skills):
    model, tok = three_skills
    contexts = [tok.encode(t) + [tok.eos_token_id] for t in ("hello how are", "my computer", "who wrote", "i feel sad today and")]
    settings = dict(max_new_tokens=6, min_new_tokens=6, do_sample=False)
    mixed = block_forward_batches(model, lambda: generate_ids(model, tok, contexts, ["a", "b", None, "c"], **settings))
    single = block_forward_batches(model, lambda: generate_ids(model, tok, contexts, ["a"] * 4, **settings))
    assert len(mixed) == len(single) == model.backbone.config.n_layer * 6  # each block runs once per new token
    assert set(mixed) == set(single) == {4}  # on the whole batch, never on one skill's rows


def test_reply_ngram_ban_covers_the_reply_but_lets_the_context_be_copied():
    prompt, reply = [5, 6, 7, 3], [8, 9, 8]
    scores = torch.zeros(1, 20)
    banned = ReplyNoRepeatNGram(2, len(prompt))(torch.tensor([prompt + reply]), scores.clone())
    assert torch.isinf(banned[0]).nonzero().flatten().tolist() == [9]  # "8 9" is in the reply already
    copying = ReplyNoRepeatNGram(2, len(prompt))(torch.tensor([prompt + [5]]), scores.clone())
    assert not torch.isinf(copying).any()  # "5 6" of the context may be copied
    assert torch.isinf(NoRepeatNGramLogitsProcessor(2)(torch.tensor([prompt + [5]]), scores.clone())[0, 6])


def test_reply_ngram_ban_lets_a_copy_repeat_an_ngram_as_often_as_its_source_has_it():
    # "Five: Dopey, Grumpy, Sneezy, Sleepy, Happy": the bigram ", S" twice; it had come out "Sneezy, Jruce"
    comma, s, nee, leep = 4, 5, 6, 7
    source = [comma, s, nee, comma, s, leep]
    prompt, scores = [1, 2, 3], torch.zeros(1, 10)
    once = [comma, s, nee, comma]  # ", S" said once, the source has it twice
    allowed = ReplyNoRepeatNGram(2, len(prompt), [source])(torch.tensor([prompt + once]), scores.clone())
    assert not torch.isinf(allowed).any()
    twice = [comma, s, nee, comma, s, leep, comma]  # said as often as the source has it: banned again
    banned = ReplyNoRepeatNGram(2, len(prompt), [source])(torch.tensor([prompt + twice]), scores.clone())
    assert torch.isinf(banned[0]).nonzero().flatten().tolist() == [s]
    assert torch.isinf(ReplyNoRepeatNGram(2, len(prompt))(torch.tensor([prompt + once]), scores.clone())[0, s])  # no source


def test_copy_boost_starts_a_copy_at_the_answer_and_carries_it_to_the_end_and_copies_nothing_else():
    eos, answer, message = 0, [5, 6, 7, 8], [9, 10]
    prompt = [3, 4, 11, 5, 6, 7, 8, eos] + message + [eos]  # a passage (question, answer), then the message
    boost = CopyBoost(3.0, [answer + [eos]], len(prompt))
    scores = torch.zeros(1, 12)

    def boosted(reply: list[int]) -> list[int]:
        return (boost(torch.tensor([prompt + reply]), scores.clone())[0] != 0).nonzero().flatten().tolist()

    assert boosted([]) == [5]  # the copy starts at the answer's start
    assert boosted([6]) == [7] and boosted([5, 6, 7]) == [8] and boosted([7, 8]) == [eos]  # and runs to its end
    assert boosted([9]) == [] and boosted([10]) == [] and boosted([3, 4]) == []  # the message and question are no source
    nothing = CopyBoost(3.0, [[]], len(prompt))  # no passage: no bonus, whatever the context holds
    assert (nothing(torch.tensor([prompt + [5]]), scores.clone()) == 0).all()
    assert (nothing(torch.tensor([prompt]), scores.clone()) == 0).all()
    rows = boost(torch.tensor([prompt + [6], prompt + [7]]), torch.zeros(2, 12))  # one source serves every row
    assert (rows != 0).nonzero().tolist() == [[0, 7], [1, 8]]


def test_copy_source_is_the_passage_answer_and_eos(tiny):
    from bot.dialogue import copy_source

    _, tok = tiny
    assert copy_source(tok, None) == [] and copy_source(tok, "  ") == []
    assert copy_source(tok, "Who wrote Hamlet?\nWilliam Shakespeare") == tok.encode("William Shakespeare") + [tok.eos_token_id]
    assert copy_source(tok, "a plain passage") == tok.encode("a plain passage") + [tok.eos_token_id]


def test_generation_with_the_reply_ngram_ban_never_repeats_a_bigram(three_skills):
    model, tok = three_skills
    contexts = [tok.encode("hello how are") + [tok.eos_token_id], tok.encode("i feel sad today and") + [tok.eos_token_id]]
    settings = dict(max_new_tokens=24, min_new_tokens=24, do_sample=False)

    def repeats(row: list[int]) -> int:
        bigrams = list(zip(row, row[1:]))
        return len(bigrams) - len(set(bigrams))

    plain = generate_ids(model, tok, contexts, ["a", "b"], **settings)
    banned = generate_ids(model, tok, contexts, ["a", "b"], reply_no_repeat_ngram_size=2, **settings)
    assert sum(map(repeats, plain)) > 0  # the random model loops without the ban
    assert [repeats(row) for row in banned] == [0, 0] and all(len(row) == 24 for row in banned)


def test_save_load_roundtrip(three_skills, tmp_path, tiny_dir):
    model, _ = three_skills
    model.save_adapter("b", tmp_path / "b")
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    fresh_backbone, _, name = load_backbone(tiny_dir)
    other = AdaptedModel(fresh_backbone, name)
    other.load_adapter("b", tmp_path / "b")
    saved = load_file(str(tmp_path / "b" / "adapter_model.safetensors"))
    assert saved.keys() == model.adapter_state_dict("b").keys()
    assert all(torch.equal(saved[k], v) for k, v in model.adapter_state_dict("b").items())  # the file: bit-exact
    assert all(torch.equal(saved[k], v) for k, v in other.adapter_state_dict("b").items())
    ids = torch.randint(0, 200, (2, 7))
    # Logits only up to rounding: ``model`` stacks its adapters zero-padded to bottleneck 12, ``other`` holds
    # just "b" at 8, and the matmul's inner width changes the CPU kernel's summation order (1.2e-7 seen).
    torch.testing.assert_close(logits(model, ids, "b"), logits(other, ids, "b"), atol=1e-5, rtol=1e-5)


def test_adapter_for_another_backbone_is_refused(three_skills, tmp_path):
    from tests.conftest import make_tiny_backbone

    model, _ = three_skills
    model.save_adapter("a", tmp_path / "a")
    wider_dir = make_tiny_backbone(tmp_path / "wider", n_embd=48, n_layer=3)
    wider, _, name = load_backbone(wider_dir)
    with pytest.raises(AdapterMismatchError) as e:
        AdaptedModel(wider, name).load_adapter("a", tmp_path / "a")
    msg = str(e.value)
    assert "hidden size 32, 2 layers" in msg and "hidden size 48, 3 layers" in msg


def test_pad_aligns_rows_left_for_generation_and_right_for_training():
    ids, mask = pad([[5, 6], [7]], 0, left=True)
    assert ids.tolist() == [[5, 6], [0, 7]] and mask.tolist() == [[1, 1], [0, 1]]
    ids, mask = pad([[5, 6], [7]], -100, width=3)
    assert ids.tolist() == [[5, 6, -100], [7, -100, -100]] and mask.tolist() == [[1, 1, 0], [1, 0, 0]]


def test_loaded_backbone_runs_gpt2_gelu_fused_with_the_same_logits(tiny_dir):
    from transformers import AutoModelForCausalLM
    from transformers.activations import GELUTanh, NewGELUActivation

    reference = AutoModelForCausalLM.from_pretrained(tiny_dir).eval()
    model, tok, _ = load_backbone(tiny_dir)
    assert not any(isinstance(m, NewGELUActivation) for m in model.modules())
    assert sum(isinstance(m, GELUTanh) for m in model.modules()) == model.config.n_layer
    ids = torch.tensor([tok.encode("hello how are you today")])
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, reference(ids).logits, atol=1e-5, rtol=1e-5)


def module_attribute_names() -> list[str]:
    """Every attribute name of an ``nn.Module`` (class and instance) that is a valid skill name."""
    from skills.spec import validate_skill_name

    names = []
    for name in sorted(set(dir(torch.nn.Module)) | set(dir(torch.nn.Module()))):
        try:
            names.append(validate_skill_name(name))
        except ValueError:
            pass
    return names


def test_any_module_attribute_name_is_a_working_adapter_name(tiny, tmp_path, tiny_dir):
    names = module_attribute_names()
    assert {"half", "eval", "forward", "training", "to", "state_dict"} <= set(names)
    model, _ = tiny
    ids = torch.randint(0, 200, (2, 7))
    bare = logits(model, ids, None)
    for i, name in enumerate(names):
        model.add_adapter(name, model.new_config(bottleneck=4))
        randomize(model, name, i)
    assert model.skills == names
    fresh_backbone, _, backbone_name = load_backbone(tiny_dir)
    other = AdaptedModel(fresh_backbone, backbone_name)
    for name in names:
        model.save_adapter(name, tmp_path / name)
        saved = load_file(str(tmp_path / name / "adapter_model.safetensors"))
        assert sorted(saved) == sorted(f"layers.{i}.{k}" for i in range(2) for k in
                                       ("ln.weight", "ln.bias", "down.weight", "down.bias", "up.weight", "up.bias"))
        other.load_adapter(name, tmp_path / name)
    assert other.skills == names
    for name in ("half", "eval", "forward", names[-1]):
        torch.testing.assert_close(logits(other, ids, name), logits(model, ids, name), atol=1e-5, rtol=1e-5)
        assert not torch.allclose(logits(model, ids, name), bare)
    mixed = logits(other, ids, ["half", "forward"])
    torch.testing.assert_close(mixed[1:], logits(other, ids[1:], "forward"), atol=1e-5, rtol=1e-5)
    for name in names:
        other.remove_adapter(name)
        assert name not in other.skills
    assert other.skills == [] and all(len(bank.adapters) == 0 for bank in other.banks.values())
    torch.testing.assert_close(logits(other, ids, None), bare)
    assert other.eval() is other and callable(other.half)  # the module's own methods are untouched
