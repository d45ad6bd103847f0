"""Recipe: train the bundled offline backbone, a small GPT-2, on ``chitchat-dataset``.

Run ``python -m bot.recipes.backbone --help``. The recipe is an explicit loop in the
manner of nanoGPT: a byte-level BPE tokenizer (so any Unicode text encodes), a GPT-2
config, AdamW with warm-up and cosine decay, ``torch.compile`` and bf16 autocast on CPU where
the processor supports it, and the held-out figures written to a model card beside the weights.

Conversations are formatted as DialoGPT formats them (turns joined by EOS, ending with
EOS) and concatenated into one token stream per split; training samples random windows
of it. The split is fixed per conversation (``skills.corpora.split_of``).
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import time
from pathlib import Path

import torch
from tqdm import tqdm

from skills.corpora import chitchat_conversations

EOS = "<|endoftext|>"


def train_tokenizer(texts: list[str], vocab_size: int, out_dir: Path):
    """Train a byte-level BPE tokenizer and save it as a HF fast tokenizer folder."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=2, special_tokens=[EOS], show_progress=False)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token=EOS, eos_token=EOS, unk_token=EOS)
    tok.save_pretrained(out_dir)
    return tok


def encode_split(tok, split: str) -> tuple[torch.Tensor, int]:
    """One token stream for a split, and the number of characters it encodes (EOS counts as one)."""
    ids: list[int] = []
    chars = 0
    for conv in chitchat_conversations(split):
        for turn in conv.turns:
            ids.extend(tok.encode(turn))
            ids.append(tok.eos_token_id)
            chars += len(turn) + 1
    return torch.tensor(ids, dtype=torch.long), chars


def sample_batch(stream: torch.Tensor, block: int, batch: int, copy_rows: int = 0) -> torch.Tensor:
    """Random windows of the stream; in the last ``copy_rows`` rows the second half repeats the first."""
    ix = torch.randint(len(stream) - block - 1, (batch,))
    x = torch.stack([stream[i : i + block] for i in ix])
    if copy_rows:
        half = block // 2
        x[batch - copy_rows :, half : 2 * half] = x[batch - copy_rows :, :half]
    return x


@torch.no_grad()
def copy_nll(model, stream: torch.Tensor, block: int, rows: int = 16) -> float:
    """Mean NLL (nats) of the repeated half of windows whose second half repeats the first.

    Near zero once the model has induction heads (it can copy what it has read), the ability
    knowledge-grounded skills build on; about the plain-text NLL when it cannot.
    """
    model.eval()
    half = block // 2
    x = torch.stack([stream[i * half : (i + 1) * half] for i in range(rows)])
    x = torch.cat([x, x], 1)
    logits = model(input_ids=x).logits[:, half:-1].float()
    model.train()
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), x[:, half + 1 :].flatten()).item()


@torch.no_grad()
def evaluate(model, stream: torch.Tensor, block: int, batch: int, amp: bool, max_blocks: int | None = None) -> float:
    """Mean next-token NLL (nats) over non-overlapping windows of the stream."""
    model.eval()
    n = (len(stream) - 1) // block
    if max_blocks:
        n = min(n, max_blocks)
    total, count = 0.0, 0
    for start in range(0, n, batch):
        idx = torch.arange(start, min(start + batch, n)) * block
        x = torch.stack([stream[i : i + block] for i in idx])
        y = torch.stack([stream[i + 1 : i + 1 + block] for i in idx])
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            logits = model(input_ids=x).logits
        nll = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="sum")
        total += nll.item()
        count += y.numel()
    model.train()
    return total / count


def main(argv: list[str] | None = None) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "bundled" / "backbone")
    p.add_argument("--vocab-size", type=int, default=8192)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--width", type=int, default=384)
    p.add_argument("--heads", type=int, default=6)
    p.add_argument("--block", type=int, default=256, help="context window (n_positions) and training window")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1.5e-3)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--max-steps", type=int, default=1600)
    p.add_argument("--time-budget-min", type=float, default=0, help="if > 0, compress the schedule to end within this many minutes")
    p.add_argument("--copy-rows", type=int, default=4,
                   help="rows per batch whose second half repeats the first, so the model learns to copy (induction), "
                        "which knowledge-grounded skills need; chit-chat alone rarely teaches it at this scale")
    p.add_argument("--eval-every", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--no-compile", dest="compile", action="store_false", help="train eagerly instead of through torch.compile (about 1.5x slower on CPU)")
    args = p.parse_args(argv)

    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    amp = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    work = args.out.with_name(args.out.name + ".tmp")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)

    t0 = time.time()
    train_texts = [t for c in chitchat_conversations("train") for t in c.turns]
    tok = train_tokenizer(train_texts, args.vocab_size, work)
    train, _ = encode_split(tok, "train")
    valid, _ = encode_split(tok, "valid")
    test, test_chars = encode_split(tok, "test")
    print(f"tokenizer {len(tok)} tokens; train {len(train):,} valid {len(valid):,} test {len(test):,} tokens ({time.time() - t0:.0f}s)")

    config = GPT2Config(
        vocab_size=len(tok), n_positions=args.block, n_embd=args.width, n_layer=args.layers, n_head=args.heads,
        resid_pdrop=args.dropout, embd_pdrop=args.dropout, attn_pdrop=0.0,
        bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id,
    )
    model = GPT2LMHeadModel(config)
    train_forward = torch.compile(model) if args.compile else model
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.98))

    def lr_at(progress: float, step: int) -> float:
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))

    best, log, step = float("inf"), [], 0
    start = time.time()
    bar = tqdm(total=args.max_steps, desc="backbone", unit="step")
    model.train()
    while True:
        elapsed = time.time() - start
        progress = step / args.max_steps
        if args.time_budget_min > 0:
            progress = max(progress, elapsed / (60 * args.time_budget_min))
        if progress >= 1.0:
            break
        for g in opt.param_groups:
            g["lr"] = lr_at(progress, step)
        x = sample_batch(train, args.block, args.batch, args.copy_rows)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            loss = train_forward(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if step % args.eval_every == 0:
            v = evaluate(model, valid, args.block, args.batch, amp, max_blocks=128)
            log.append({"step": step, "minutes": round((time.time() - start) / 60, 1), "valid_ppl": round(math.exp(v), 2),
                        "copy_nll": round(copy_nll(model, valid, args.block), 3)})
            tqdm.write(json.dumps(log[-1]))
            if v < best:
                best = v
                model.save_pretrained(work, safe_serialization=True)
    bar.close()
    if not log or log[-1]["step"] != step:
        v = evaluate(model, valid, args.block, args.batch, amp, max_blocks=128)
        if v < best:
            model.save_pretrained(work, safe_serialization=True)
    minutes = (time.time() - start) / 60

    model = GPT2LMHeadModel.from_pretrained(work).to(torch.float16)
    model.save_pretrained(work, safe_serialization=True)  # fp16 on disk keeps the file small
    model = model.float()
    nll = evaluate(model, test, args.block, args.batch, amp=False)
    bpc = nll / math.log(2) * len(test) / test_chars
    card = {
        "recipe": vars(args) | {"out": str(args.out)},
        "vocab_size": len(tok), "parameters": n_params, "steps": step, "train_minutes": round(minutes, 1),
        "tokens_seen": step * args.batch * args.block, "train_tokens": len(train), "test_tokens": len(test),
        "test_ppl": round(math.exp(nll), 2), "test_bits_per_char": round(bpc, 3),
        "test_copy_nll": round(copy_nll(model, test, args.block), 3), "bf16_autocast": amp,
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads", "log": log,
    }
    (work / "training_log.json").write_text(json.dumps(card, indent=2))
    write_card(work, card)
    shutil.rmtree(args.out, ignore_errors=True)
    work.rename(args.out)
    print(json.dumps({k: card[k] for k in ("test_ppl", "test_bits_per_char", "train_minutes", "steps")}))


def write_card(folder: Path, card: dict) -> None:
    r = card["recipe"]
    flags = (f"--layers {r['layers']} --width {r['width']} --heads {r['heads']} --block {r['block']} --batch {r['batch']} "
             f"--lr {r['lr']} --copy-rows {r.get('copy_rows', 0)} --max-steps {r['max_steps']} --time-budget-min {r['time_budget_min']:g}"
             + ("" if r.get("compile", True) else " --no-compile"))
    (folder / "README.md").write_text(f"""# Adapter-Bot bundled backbone

A small GPT-2 ({card['parameters'] / 1e6:.1f}M parameters: {r['layers']} layers, width {r['width']}, {r['heads']} heads,
{r['block']}-token window) trained from scratch on the Chit-Chat dataset (PyPI `chitchat-dataset`, MIT)
so that Adapter-Bot runs offline. Inputs are DialoGPT-formatted: turns joined by `<|endoftext|>`.

| figure | value |
|---|---|
| vocabulary | {card['vocab_size']} (byte-level BPE, trained on the train split) |
| held-out test perplexity (per token) | **{card['test_ppl']}** |
| held-out bits per character | {card['test_bits_per_char']} |
| copying: NLL per token of a held-out half-window read a second time | {card['test_copy_nll']} nats (first reading: {math.log(card['test_ppl']):.2f}; 0 would be perfect copying) |
| training | {card['steps']} steps x {r['batch']} x {r['block']} tokens = {card['tokens_seen'] / 1e6:.1f}M tokens ({card['train_tokens'] / 1e6:.2f}M-token train stream) |
| training time | {card['train_minutes']} minutes on {card['machine']}, bf16 autocast: {card['bf16_autocast']}, torch.compile: {r.get('compile', False)} |

In {r.get('copy_rows', 0)} of the {r['batch']} rows of every batch the second half of the window repeats the first,
so that the model learns to copy what it has read (induction), which knowledge-grounded skills build on:
Chit-Chat alone rarely asks for it at this scale.

Split: whole conversations by SHA-1 of the conversation id (`skills.corpora.split_of`): 94% train,
3% valid, 3% test. Test perplexity is measured on non-overlapping {r['block']}-token windows of the test
stream in float32 after the fp16 weights are loaded; bits per character divide the total NLL by the
characters of the test turns (each EOS counting as one character).

Reproduce (seeded; this is the command that trained these weights; with a time budget the
learning-rate schedule follows wall time, so a faster machine takes more steps and does a little better):

```
python -m bot.recipes.backbone {flags}
```
""")


if __name__ == "__main__":
    main()
