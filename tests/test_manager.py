"""The dialogue manager: routing, threshold fallback, adding/removing classes, files, metrics."""
from __future__ import annotations

import copy
import json
import random
import zlib

import pytest
import torch

from manager import (
    CONFIG_NAME, NONE, WEIGHTS_NAME, Decision, DialogueManager, FeatureFn, FeatureMismatchError, ManagerConfig,
    ManagerFileError, routing_report,
)

VOCAB = {
    NONE: ["weekend", "movie", "dinner", "friends", "music", "beach", "pizza", "football"],
    "empathetic": ["sad", "lonely", "upset", "crying", "stressed", "worried", "anxious", "grief"],
    "tech_support": ["laptop", "wifi", "router", "password", "crash", "install", "driver", "printer"],
    "trivia": ["capital", "planet", "invented", "president", "river", "element", "century", "author"],
}
FILLER = ["i", "my", "the", "today", "really", "so", "is", "what"]


class HashingBag:
    """Bag of words of the newest turn, hashed (crc32, stable across runs) into ``dim`` counts."""

    def __init__(self, dim: int = 64, name: str = "hashing-bag:64") -> None:
        self.dim, self.name, self.seen = dim, name, 0

    def __call__(self, histories: list[list[str]]) -> torch.Tensor:
        self.seen += len(histories)
        out = torch.zeros(len(histories), self.dim)
        for row, history in enumerate(histories):
            for word in history[-1].lower().split():
                out[row, zlib.crc32(word.encode()) % self.dim] += 1.0
        return out


def dialogues(label: str, n: int, seed: int) -> list[list[str]]:
    """``n`` histories whose newest turn has three words of ``label``'s vocabulary and two fillers."""
    rng = random.Random(f"{label}-{seed}")
    out = []
    for _ in range(n):
        words = rng.sample(VOCAB[label], 3) + rng.sample(FILLER, 2)
        rng.shuffle(words)
        out.append(["hi there", " ".join(words)])
    return out


def data(labels: list[str], n: int, seed: int) -> dict[str, list[list[str]]]:
    return {label: dialogues(label, n, seed) for label in labels}


def fitted(labels=(NONE, "empathetic", "tech_support"), **config) -> DialogueManager:
    manager = DialogueManager(ManagerConfig(**{"exemplars_per_class": 30, "epochs": 30, **config}))
    manager.fit(data(list(labels), 40, seed=0), feature_fn=HashingBag())
    return manager


@pytest.fixture(scope="module")
def three() -> DialogueManager:
    return fitted()


@pytest.fixture(scope="module")
def four() -> DialogueManager:
    return fitted(labels=(NONE, "empathetic", "tech_support", "trivia"))


@pytest.fixture
def manager(three) -> DialogueManager:
    """A fresh copy of the manager fitted on none/empathetic/tech_support."""
    return copy.deepcopy(three)


@pytest.mark.parametrize("hidden", [0, 16])
def test_routes_clear_examples_of_every_class(hidden, three):
    manager = three if hidden == 0 else fitted(hidden=hidden)
    assert manager.classes == [NONE, "empathetic", "tech_support"] and manager.skills == ["empathetic", "tech_support"]
    report = manager.evaluate(data(manager.classes, 15, seed=1))
    assert report["accuracy"] == 1.0
    d = manager.route(["hello", "my wifi router will not install the driver"])
    assert isinstance(d, Decision) and d.skill == "tech_support"
    assert d.probability == d.scores["tech_support"] >= 0.5
    assert list(d.scores) == manager.classes and sum(d.scores.values()) == pytest.approx(1.0)
    assert manager.route(["pizza and a movie with friends this weekend"]).skill is None


def test_fit_is_seeded_and_deterministic(three):
    a, b = three, fitted()
    assert all(torch.equal(x, y) for x, y in zip(a.head.state_dict().values(), b.head.state_dict().values()))
    assert a.memory.counts() == {NONE: 30, "empathetic": 30, "tech_support": 30}


def test_low_confidence_falls_back_to_none(manager):
    mixed = ["sad lonely laptop wifi"]  # half empathetic, half tech support
    manager.config.threshold = 0.0
    loose = manager.route(mixed)
    assert loose.skill in ("empathetic", "tech_support") and loose.probability < 0.99
    manager.config.threshold = 0.99
    strict = manager.route(mixed)
    assert strict.skill is None
    assert strict.probability == strict.scores[NONE] < loose.probability
    assert strict.scores == loose.scores


def test_add_class_routes_new_class_without_old_data_and_keeps_old_accuracy(manager, four):
    fn = manager.feature_fn
    held_out = data([NONE, "empathetic", "tech_support"], 15, seed=1)
    before = manager.evaluate(held_out)
    fn.seen = 0
    stats = manager.add_class("trivia", dialogues("trivia", 40, seed=0))
    assert fn.seen == 40  # only the new class's histories were encoded
    assert stats["classes"] == [NONE, "empathetic", "tech_support", "trivia"] and stats["exemplars"]["trivia"] == 30
    after = manager.evaluate({**held_out, "trivia": dialogues("trivia", 15, seed=1)})
    assert after["per_skill"]["trivia"]["recall"] == 1.0
    for name in held_out:
        assert after["per_skill"][name]["recall"] >= before["per_skill"][name]["recall"]
    # refitting from memory gives exactly the head of fitting everything at once
    assert all(torch.equal(x, y) for x, y in zip(manager.head.state_dict().values(), four.head.state_dict().values()))


def test_add_existing_class_needs_replace(manager):
    with pytest.raises(ValueError, match="already exists"):
        manager.add_class("empathetic", dialogues("trivia", 10, seed=0))
    manager.add_class("empathetic", dialogues("trivia", 40, seed=0), replace=True)
    assert manager.classes == [NONE, "empathetic", "tech_support"]
    assert manager.route(["which planet has a river"]).skill == "empathetic"


def test_remove_class_leaves_the_others(four):
    manager = copy.deepcopy(four)
    manager.remove_class("tech_support")
    assert manager.classes == [NONE, "empathetic", "trivia"] and manager.config.classes == manager.classes
    report = manager.evaluate(data([NONE, "empathetic", "trivia"], 15, seed=1))
    assert report["accuracy"] == 1.0
    assert all("tech_support" not in d.scores for d in manager.route_batch(dialogues("tech_support", 3, seed=1)))
    with pytest.raises(ValueError, match="cannot be removed"):
        manager.remove_class(NONE)
    with pytest.raises(KeyError, match="tech_support"):
        manager.remove_class("tech_support")


def test_save_load_routes_identically(tmp_path):
    manager = fitted(hidden=8, threshold=0.7)
    histories = [h for hs in data(list(VOCAB), 5, seed=2).values() for h in hs]
    manager.save(tmp_path / "mgr")
    manager.save(tmp_path / "mgr")  # replacing a saved manager is fine; no temporary folders are left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mgr"]
    assert sorted(p.name for p in (tmp_path / "mgr").iterdir()) == [CONFIG_NAME, WEIGHTS_NAME]
    for path in (tmp_path / "mgr", tmp_path / "mgr" / CONFIG_NAME, tmp_path / "mgr" / WEIGHTS_NAME):
        assert path.stat().st_mode & 0o044 == 0o044, path  # readable by others, as a skill's files are
    loaded = DialogueManager.load(tmp_path / "mgr", feature_fn=HashingBag())
    assert loaded.config == manager.config and loaded.classes == manager.classes
    assert loaded.scores(histories) == manager.scores(histories)
    assert loaded.route_batch(histories) == manager.route_batch(histories)
    loaded.add_class("trivia", dialogues("trivia", 40, seed=0))  # the memory came back too
    assert loaded.route(["the author of the century"]).skill == "trivia"
    (tmp_path / "notes.txt").write_text("not a manager")
    with pytest.raises(ValueError, match="refusing to replace"):
        manager.save(tmp_path)


def test_exemplars_are_stored_in_half_precision_their_sparse_columns_sparse_and_older_files_still_load(tmp_path, three):
    from safetensors.torch import load_file, save_file

    three.save(tmp_path / "mgr")
    weights = tmp_path / "mgr" / WEIGHTS_NAME
    stored = load_file(str(weights))
    assert stored["memory.dense"].dtype == stored["memory.sparse_values"].dtype == torch.float16
    assert stored["head.net.0.weight"].dtype == torch.float32
    original = three.memory.tensors()[0]
    sparse = stored["memory.sparse_columns"]
    assert 0 < sparse.numel() < original.shape[1]  # the hashing bag's columns are mostly zeros, not all of them
    assert ((original[:, sparse] != 0).float().mean(0) < 0.25).all()
    loaded = DialogueManager.load(tmp_path / "mgr", feature_fn=HashingBag())
    features, _ = loaded.memory.tensors()
    assert features.dtype == torch.float32 and torch.equal(features, original.half().float())  # exact, as stored
    dense = {k: v for k, v in stored.items() if ".dense" not in k and ".sparse" not in k}
    dense["memory.features"] = original  # a float32 file, as written before
    save_file(dense, str(weights))
    old = DialogueManager.load(tmp_path / "mgr", feature_fn=HashingBag())
    assert torch.equal(old.memory.tensors()[0], original)


@pytest.mark.parametrize("damage, message", [
    ("index", "'memory.sparse_index' must index"), ("offsets", "'memory.sparse_offsets' must rise"),
    ("columns", "'memory.sparse_columns' must be increasing"), ("dense", "'memory.dense' is"),
    ("missing", "'memory.sparse_values' is missing")])
def test_damaged_sparse_exemplars_are_refused_naming_the_tensor(tmp_path, three, damage, message):
    from safetensors.torch import load_file, save_file

    three.save(tmp_path)
    weights = tmp_path / WEIGHTS_NAME
    state = load_file(str(weights))
    if damage == "index":
        state["memory.sparse_index"][0] = state["memory.sparse_columns"].numel()
    elif damage == "offsets":
        state["memory.sparse_offsets"][-1] += 1
    elif damage == "columns":
        state["memory.sparse_columns"][0] = 10 ** 6
    elif damage == "dense":
        state["memory.dense"] = state["memory.dense"][:, 1:].contiguous()
    else:
        del state["memory.sparse_values"]
    save_file(state, str(weights))
    with pytest.raises(ManagerFileError, match=f"{WEIGHTS_NAME}.*{message}"):
        DialogueManager.load(tmp_path)


def test_load_refuses_other_feature_function(tmp_path, three):
    three.save(tmp_path)
    with pytest.raises(FeatureMismatchError, match=r"'hashing-bag:64'.*'other-encoder'"):
        DialogueManager.load(tmp_path, feature_fn=HashingBag(name="other-encoder"))
    manager = DialogueManager.load(tmp_path)
    with pytest.raises(FeatureMismatchError, match="other-encoder"):
        manager.feature_fn = HashingBag(name="other-encoder")
    with pytest.raises(FeatureMismatchError, match="width 32"):
        manager.route_features(torch.zeros(2, 32))


def test_damaged_files_are_refused_naming_the_file(tmp_path, three):
    three.save(tmp_path)
    weights, config = tmp_path / WEIGHTS_NAME, tmp_path / CONFIG_NAME
    good = weights.read_bytes()
    weights.write_bytes(b"\x07not safetensors" + good[:50])
    with pytest.raises(ValueError, match=WEIGHTS_NAME):
        DialogueManager.load(tmp_path)
    weights.write_bytes(good[: len(good) // 2])
    with pytest.raises(ManagerFileError, match=WEIGHTS_NAME):
        DialogueManager.load(tmp_path)
    weights.write_bytes(good)
    text = config.read_text()
    config.write_text(json.dumps({**json.loads(text), "classes": [NONE, "empathetic"]}))
    with pytest.raises(ManagerFileError, match=rf"{WEIGHTS_NAME}.*2 classes"):
        DialogueManager.load(tmp_path)
    config.write_text(text)
    weights.unlink()
    with pytest.raises(ManagerFileError, match="missing manager weights"):
        DialogueManager.load(tmp_path)
    config.unlink()
    with pytest.raises(ManagerFileError, match=CONFIG_NAME):
        DialogueManager.load(tmp_path)


def test_routing_report_by_hand():
    labels = [NONE, "a", "b", "c"]
    gold = [NONE, NONE, "a", "a", "a", "b"]
    pred = [NONE, "a", "a", "a", "b", "b"]
    report = routing_report(gold, pred, labels)
    assert set(report) == {"accuracy", "labels", "confusion", "per_skill"}
    assert report["labels"] == labels
    assert report["confusion"] == [[1, 1, 0, 0], [0, 2, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    assert report["accuracy"] == pytest.approx(4 / 6)
    expected = {
        NONE: (1.0, 0.5, 2 / 3),     # predicted none once (right); 1 of 2 gold none found
        "a": (2 / 3, 2 / 3, 2 / 3),  # 2 of 3 "a" predictions right; 2 of 3 gold "a" found
        "b": (0.5, 1.0, 2 / 3),      # 1 of 2 "b" predictions right; the one gold "b" found
        "c": (0.0, 0.0, 0.0),        # never gold, never predicted: zero division -> 0.0
    }
    for name, (p, r, f) in expected.items():
        assert report["per_skill"][name] == pytest.approx({"precision": p, "recall": r, "f1": f})
    with pytest.raises(ValueError, match="length"):
        routing_report(gold, pred[:-1], labels)
    with pytest.raises(ValueError, match="'d'"):
        routing_report(["d"], ["a"], labels)
    assert routing_report([], [], labels)["accuracy"] == 0.0


def test_config_and_inputs_are_checked():
    with pytest.raises(ValueError, match="threshold"):
        ManagerConfig(threshold=1.5)
    with pytest.raises(ValueError, match="'epochs'"):
        ManagerConfig(epochs=0)
    with pytest.raises(ValueError, match="includes 'none'"):
        DialogueManager().fit(data(["empathetic"], 5, seed=0), feature_fn=HashingBag())
    with pytest.raises(TypeError, match="'name'"):
        DialogueManager().fit(data([NONE, "empathetic"], 5, seed=0), feature_fn=lambda h: torch.zeros(len(h), 4))
    with pytest.raises(RuntimeError, match="not trained"):
        DialogueManager(feature_fn=HashingBag()).route(["hi"])


class TinyGPT2MeanPool:
    """A random 2-layer GPT-2 over characters (code point mod 100); mean of the last hidden states."""

    name = "tiny-gpt2-meanpool:test"

    def __init__(self) -> None:
        from transformers import GPT2Config, GPT2Model

        torch.manual_seed(0)
        self.model = GPT2Model(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=100, n_positions=64,
                                           bos_token_id=0, eos_token_id=0)).eval()

    def __call__(self, histories: list[list[str]]) -> torch.Tensor:
        texts = [" | ".join(h)[-64:] for h in histories]
        ids = torch.zeros(len(texts), max(map(len, texts)), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, text in enumerate(texts):
            ids[row, : len(text)] = torch.tensor([ord(c) % 100 for c in text])
            mask[row, : len(text)] = 1
        hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
        return (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)


def test_a_model_plugs_in_as_feature_function(tmp_path):
    fn = TinyGPT2MeanPool()
    assert isinstance(fn, FeatureFn) and isinstance(HashingBag(), FeatureFn)
    manager = DialogueManager(ManagerConfig(epochs=40, feature_batch_size=8))
    train = data([NONE, "empathetic", "tech_support"], 12, seed=0)
    stats = manager.fit(train, feature_fn=fn)
    assert manager.config.feature_dim == 32 and manager.config.feature_name == fn.name
    assert stats["train_accuracy"] >= 0.9
    assert manager.evaluate(train)["accuracy"] >= 0.9
    manager.save(tmp_path)
    loaded = DialogueManager.load(tmp_path, feature_fn=fn)
    assert loaded.scores(train[NONE][:4]) == manager.scores(train[NONE][:4])


def test_the_temperature_is_fitted_on_held_out_histories_and_kept_through_add_and_remove(tmp_path):
    labels = [NONE, "empathetic", "tech_support"]
    manager = DialogueManager(ManagerConfig(exemplars_per_class=30, epochs=30))
    manager.fit(data(labels, 40, seed=0), feature_fn=HashingBag(), calibration=data(labels, 20, seed=1))
    fitted_t = manager.config.temperature
    assert fitted_t != 1.0 and manager.calibration.counts() == {c: 20 for c in labels}
    logits = manager.head(manager.features(dialogues("empathetic", 3, seed=5)))
    torch.testing.assert_close(manager.probabilities(manager.features(dialogues("empathetic", 3, seed=5))),
                               torch.softmax(logits / fitted_t, dim=-1))
    manager.add_class("trivia", dialogues("trivia", 40, seed=0), calibration=dialogues("trivia", 20, seed=1))
    assert manager.calibration.counts()["trivia"] == 20 and manager.config.temperature > 0
    manager.save(tmp_path / "m")
    loaded = DialogueManager.load(tmp_path / "m", feature_fn=HashingBag())
    assert loaded.config.temperature == manager.config.temperature
    assert loaded.calibration.counts() == manager.calibration.counts()
    loaded.remove_class("trivia")
    assert "trivia" not in loaded.calibration.classes
    # after removing the class it was added with, the temperature is the one of the three classes again
    assert loaded.config.temperature == pytest.approx(fitted_t)


def test_calibration_report_counts_the_gap_between_confidence_and_accuracy():
    from manager import calibration_report

    report = calibration_report([0.95, 0.95, 0.55, 0.55], [True, True, True, False])
    assert report["ece"] == pytest.approx((2 * 0.05 + 2 * 0.05) / 4)
    assert [b["count"] for b in report["bins"]] == [0, 0, 0, 0, 0, 2, 0, 0, 0, 2]
    assert calibration_report([0.9, 0.9], [False, False])["ece"] == pytest.approx(0.9)
