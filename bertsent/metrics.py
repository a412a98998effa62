"""Classification metrics over a whole evaluation set (never averaged per batch)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support


def compute_metrics(logits: np.ndarray, labels: np.ndarray, num_labels: int = 2) -> dict:
    """Loss, accuracy, F1, precision and recall (positive class for binary, macro otherwise)."""
    logits = np.asarray(logits, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64)
    preds = logits.argmax(axis=-1)
    average = "binary" if num_labels == 2 else "macro"
    precision, recall, f1, _ = precision_recall_fscore_support(
        labels, preds, average=average, labels=list(range(num_labels)) if average != "binary"
        else None, zero_division=0)
    loss = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels)).item()
    return {
        "loss": float(loss),
        "accuracy": float(accuracy_score(labels, preds)),
        "f1": float(f1),
        "precision": float(precision),
        "recall": float(recall),
        "samples": int(len(labels)),
    }


def confusion(logits: np.ndarray, labels: np.ndarray, num_labels: int = 2) -> list[list[int]]:
    """Rows are true labels, columns predicted labels."""
    preds = np.asarray(logits).argmax(axis=-1)
    return confusion_matrix(labels, preds, labels=list(range(num_labels))).tolist()


def softmax(logits: np.ndarray) -> np.ndarray:
    return torch.softmax(torch.from_numpy(np.asarray(logits, np.float32)), dim=-1).numpy()


def confident_mistakes(labels: np.ndarray, probs: np.ndarray, k: int) -> np.ndarray:
    """Row indices of the k wrong predictions the model was surest of, surest first."""
    wrong = np.flatnonzero(probs.argmax(axis=1) != labels)
    return wrong[np.argsort(-probs[wrong].max(axis=1), kind="stable")][:k]


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, bins: int = 10) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by bin size."""
    conf, preds = probs.max(axis=1), probs.argmax(axis=1)
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            accuracy = (preds[inside] == labels[inside]).mean()
            ece += inside.mean() * abs(accuracy - conf[inside].mean())
    return float(ece)
