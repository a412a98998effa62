"""Long reviews at inference: score a review longer than the max length as several windows
spread over the whole of it and average their probabilities (evaluate --windows N).

Training sees one truncated view of each review (head+tail by default); 13% of IMDb's reviews
exceed 512 tokens, and what the truncation cuts out is never read. The first window is that
same trained view, so --windows 1 is exactly today's evaluation; the others are contiguous
spans spread evenly from the start to the end of the review.
"""

from __future__ import annotations

import numpy as np

from bertsent.engine import EvalResult
from bertsent.metrics import compute_metrics
from bertsent.tokens import EncodedDataset, special_tokens, truncate_ids


def spans(ids: list[int], budget: int, truncation: str, n: int) -> list[list[int]]:
    """Up to n views of one review's tokens (no special tokens), each at most `budget` long:
    the trained truncation first, then n-1 contiguous spans whose starts are spread evenly
    from 0 to len(ids) - budget. A review that fits is one view."""
    if len(ids) <= budget or n <= 1:
        return [truncate_ids(ids, budget, truncation)]
    last = len(ids) - budget
    starts = [round(k * last / (n - 2)) for k in range(n - 1)] if n > 2 else [last // 2]
    return [truncate_ids(ids, budget, truncation)] + [ids[s: s + budget] for s in starts]


def encode_windows(texts: list[str], tokenizer, max_length: int, truncation: str, n: int
                   ) -> tuple[list[np.ndarray], np.ndarray]:
    """(token ids of every window with the special tokens, the review each belongs to)."""
    prefix, suffix = special_tokens(tokenizer)
    budget = max_length - len(prefix) - len(suffix)
    full = tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
    ids, owner = [], []
    for review, tokens in enumerate(full):
        for view in spans(tokens, budget, truncation, n):
            ids.append(np.asarray(prefix + view + suffix, dtype=np.int64))
            owner.append(review)
    return ids, np.asarray(owner, dtype=np.int64)


def average(probs: np.ndarray, owner: np.ndarray, reviews: int) -> np.ndarray:
    """Each review's probabilities: the mean over its windows."""
    sums = np.zeros((reviews, probs.shape[1]), dtype=np.float64)
    np.add.at(sums, owner, probs)
    counts = np.bincount(owner, minlength=reviews)[:, None]
    return (sums / counts).astype(np.float32)


def windows_dataset(texts: list[str], labels: np.ndarray, tokenizer, max_length: int,
                    truncation: str, n: int) -> tuple[EncodedDataset, np.ndarray]:
    """Every window as an item of its own (with its review's label), and their owners."""
    ids, owner = encode_windows(texts, tokenizer, max_length, truncation, n)
    return EncodedDataset(ids, np.asarray(labels)[owner]), owner


def per_review(result: EvalResult, owner: np.ndarray, labels: np.ndarray, num_labels: int,
               names: list[str]) -> EvalResult:
    """A pass over windows turned into one result per review: the mean of its windows'
    probabilities, scored as the log of that mean (loss and calibration included)."""
    probs = average(result.probs, owner[result.indices], len(labels))
    logits = np.log(np.clip(probs, 1e-12, None))
    labels = np.asarray(labels)
    return EvalResult(compute_metrics(logits, labels, num_labels, names), logits, labels,
                      np.arange(len(labels)), probs)
