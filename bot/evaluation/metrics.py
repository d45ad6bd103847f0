"""Text metrics for offline evaluation of dialogue responses.

Only what no library provides is hand-written here (ParlAI-style answer
normalisation, unigram F1, distinct-n, perplexity from a summed NLL).
BLEU comes from ``sacrebleu`` and ROUGE-L from ``rouge_score``.

Scales:
  * ``corpus_bleu`` is on sacrebleu's 0-100 scale.
  * ``unigram_f1``, ``rouge_l``, ``distinct_n`` are on a 0-1 scale.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from typing import Sequence

__all__ = [
    "normalize_answer",
    "unigram_f1",
    "distinct_n",
    "corpus_bleu",
    "rouge_l",
    "perplexity",
    "text_metrics",
]

_ARTICLES_RE = re.compile(r"\b(a|an|the)\b")
_PUNCT_TABLE = str.maketrans("", "", string.punctuation)


def normalize_answer(s: str) -> str:
    """ParlAI/SQuAD-style normalisation.

    Lowercase, remove ASCII punctuation, remove the articles ``a``, ``an``,
    ``the`` and collapse runs of whitespace to single spaces (stripped).
    """
    s = s.lower()
    s = s.translate(_PUNCT_TABLE)
    s = _ARTICLES_RE.sub(" ", s)
    return " ".join(s.split())


def unigram_f1(prediction: str, reference: str) -> float:
    """ParlAI-style unigram F1 between one prediction and one reference.

    Both strings are normalised with :func:`normalize_answer` and split on
    whitespace; overlap counts tokens as a multiset. Returns 0.0 when either
    side is empty after normalisation or there is no overlap.
    """
    pred_tokens = normalize_answer(prediction).split()
    ref_tokens = normalize_answer(reference).split()
    if not pred_tokens or not ref_tokens:
        return 0.0
    common = Counter(pred_tokens) & Counter(ref_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(pred_tokens)
    recall = num_same / len(ref_tokens)
    return 2 * precision * recall / (precision + recall)


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Corpus-level distinct-n: unique n-grams / total n-grams.

    Tokens are whitespace tokens after lowercasing. N-grams never cross text
    boundaries. Returns 0.0 when the corpus has no n-grams.
    """
    if n < 1:
        raise ValueError(f"distinct_n: n must be >= 1, got {n}")
    total = 0
    seen: set[tuple[str, ...]] = set()
    for text in texts:
        tokens = text.lower().split()
        for i in range(len(tokens) - n + 1):
            seen.add(tuple(tokens[i : i + n]))
            total += 1
    if total == 0:
        return 0.0
    return len(seen) / total


def _check_pairs(predictions: Sequence[str], references: Sequence[str], what: str) -> None:
    if len(predictions) != len(references):
        raise ValueError(
            f"{what}: {len(predictions)} predictions but {len(references)} references"
        )


def corpus_bleu(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU with one reference per prediction, via ``sacrebleu.corpus_bleu``.

    Returned on sacrebleu's **0-100** scale (default settings: 13a tokenizer,
    exponential smoothing). Returns 0.0 for an empty corpus.
    """
    import sacrebleu

    _check_pairs(predictions, references, "corpus_bleu")
    if not predictions:
        return 0.0
    return float(sacrebleu.corpus_bleu(list(predictions), [list(references)]).score)


_ROUGE_SCORER = None


def rouge_l(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Mean sentence-level ROUGE-L F-measure (0-1), ``rouge_score`` with stemming.

    Returns 0.0 for an empty corpus.
    """
    global _ROUGE_SCORER
    _check_pairs(predictions, references, "rouge_l")
    if not predictions:
        return 0.0
    if _ROUGE_SCORER is None:
        from rouge_score import rouge_scorer

        _ROUGE_SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    total = 0.0
    for pred, ref in zip(predictions, references):
        # rouge_score's signature is score(target, prediction).
        total += _ROUGE_SCORER.score(ref, pred)["rougeL"].fmeasure
    return float(total / len(predictions))


def perplexity(total_nll: float, n_tokens: int) -> float:
    """Perplexity ``exp(total_nll / n_tokens)`` from a summed natural-log NLL.

    Raises ValueError when ``n_tokens`` is not positive. Overflow gives ``inf``.
    """
    if n_tokens <= 0:
        raise ValueError(
            f"perplexity: n_tokens must be positive, got {n_tokens} "
            "(no target tokens were scored)"
        )
    try:
        return float(math.exp(total_nll / n_tokens))
    except OverflowError:
        return float("inf")


def text_metrics(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """All text metrics for a corpus of (prediction, reference) pairs.

    Returns ``{"bleu", "f1", "rougeL", "distinct1", "distinct2", "length"}``,
    all floats: ``bleu`` on 0-100 (sacrebleu), ``f1`` mean unigram F1 (0-1),
    ``rougeL`` mean ROUGE-L F (0-1), ``distinct1``/``distinct2`` over the
    predictions (0-1), ``length`` the mean number of whitespace tokens per
    prediction. An empty corpus gives all zeros.
    """
    _check_pairs(predictions, references, "text_metrics")
    n = len(predictions)
    return {
        "bleu": corpus_bleu(predictions, references),
        "f1": float(sum(unigram_f1(p, r) for p, r in zip(predictions, references)) / n)
        if n
        else 0.0,
        "rougeL": rouge_l(predictions, references),
        "distinct1": distinct_n(predictions, 1),
        "distinct2": distinct_n(predictions, 2),
        "length": float(sum(len(p.split()) for p in predictions) / n) if n else 0.0,
    }
