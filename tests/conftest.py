"""Shared fixtures: a tiny random GPT-2 backbone (PEFT-style) saved as a local HF folder."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# One thread: tiny models are dominated by overhead, and OpenMP threads thrash on a busy 2-core machine.
torch.set_num_threads(1)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CORPUS = [
    "hello how are you today", "i am fine thanks and you", "my computer will not turn on",
    "check the power cable and try again", "i feel sad today", "i am sorry to hear that",
    "who wrote hamlet", "william shakespeare wrote hamlet", "what is the capital of france",
    "paris is the capital of france", "do you like music", "yes i love jazz and rock",
] * 4


def make_tiny_backbone(folder: Path, n_layer: int = 2, n_embd: int = 32, seed: int = 0) -> Path:
    """A random GPT-2 with a byte-level BPE tokenizer trained on a few sentences."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from bot.recipes.backbone import train_tokenizer

    tok = train_tokenizer(CORPUS, vocab_size=300, out_dir=folder)
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=n_embd, n_layer=n_layer, n_head=2,
                        bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id)
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    return make_tiny_backbone(tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture
def tiny(tiny_dir):
    """A fresh ``AdaptedModel`` over the tiny backbone, and its tokenizer."""
    from bot.adapter import AdaptedModel
    from bot.backbone import load_backbone

    model, tokenizer, name = load_backbone(tiny_dir)
    return AdaptedModel(model, name), tokenizer


TOY_SKILLS = {
    "alpha": [(f"my {d} will not {v}", f"restart the {d} and check the cable") for d in
              ["computer", "printer", "router", "laptop", "screen", "mouse"] for v in ["start", "work", "connect", "turn on", "print"]],
    "beta": [(f"i feel {f} {w}", f"i am sorry you feel {f} , tell me more") for f in
             ["sad", "lonely", "angry", "tired", "upset", "scared"] for w in ["today", "again", "lately", "now", "tonight"]],
}


def write_toy_data(path: Path, name: str) -> Path:
    import json

    path.write_text("".join(json.dumps({"context": [c], "response": r}) + "\n" for c, r in TOY_SKILLS[name]), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_skills_dir(tiny_dir, tmp_path_factory) -> Path:
    """A skills folder with two toy skills ('alpha', 'beta') trained briefly on the tiny backbone, and a manager."""
    from bot import AdapterBot
    from bot.manager_training import train_manager
    from bot.skill_builder import add_skill
    from skills.spec import AdapterTraining

    root = tmp_path_factory.mktemp("skills")
    bot = AdapterBot.from_pretrained(tiny_dir, root)
    for name in TOY_SKILLS:
        data = write_toy_data(tmp_path_factory.mktemp("data") / f"{name}.jsonl", name)
        add_skill(bot, name, data, description=f"toy skill {name}", show_bar=False,
                  training=AdapterTraining(settings={"bottleneck": 8}, epochs=3, batch_size=8, learning_rate=5e-3, max_length=48))
    train_manager(bot)
    return root


@pytest.fixture
def tiny_bot(tiny_dir, tiny_skills_dir, tmp_path):
    """An ``AdapterBot`` over the tiny backbone with a private copy of the toy skills folder."""
    import shutil

    from bot import AdapterBot

    root = tmp_path / "skills"
    shutil.copytree(tiny_skills_dir, root)
    return AdapterBot.from_pretrained(tiny_dir, root)
