"""Shared fixtures: a tiny random GPT-2 backbone (PEFT-style) saved as a local HF folder."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(min(2, torch.get_num_threads()))
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
