"""Classification metrics over a whole evaluation set (never averaged per batch)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    confusion_matrix,
    precision_recall_fscore_support,
)

from bertsent.labels import numeric_values


def compute_metrics(logits: np.ndarray, labels: np.ndarray, num_labels: int = 2,
                    names: list[str] | None = None) -> dict:
    """Loss, accuracy, F1, precision and recall (positive class for binary, macro otherwise),
    plus class_metrics for many classes and ordinal labels."""
    logits = np.asarray(logits, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64)
    preds = logits.argmax(axis=-1)
    # binary: the positive class (id 1). Otherwise a macro average over the classes that occur
    # in the labels or the predictions (scikit-learn's default): a class absent from both has
    # no score to average, and counting it as 0 would cap a perfect model scored on 4 of 8
    # rating classes at 0.5
    average = "binary" if num_labels == 2 else "macro"
    precision, recall, f1, _ = precision_recall_fscore_support(labels, preds, average=average,
                                                               zero_division=0)
    loss = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels)).item()
    return {
        "loss": float(loss),
        "accuracy": float(accuracy_score(labels, preds)),
        "f1": float(f1),
        "precision": float(precision),
        "recall": float(recall),
        "samples": int(len(labels)),
        **class_metrics(labels, preds, num_labels, names),
    }


def class_metrics(labels: np.ndarray, preds: np.ndarray, num_labels: int,
                  names: list[str] | None = None) -> dict:
    """More than two classes: macro and weighted F1 (over the classes that occur in the labels
    or the predictions) and each class's precision, recall, F1 and support, every class by name
    (support 0 where it has none). Names that are all numbers (ratings): the mean absolute error
    between predicted and true values, since predicting 9 for a 10 is a smaller mistake than
    predicting 1; binary runs keep their metrics as they were, so none for them."""
    out: dict = {}
    if not len(labels) or num_labels <= 2:
        return out
    shown = list(names) if names is not None else [str(i) for i in range(num_labels)]
    for average in ("macro", "weighted"):
        f1 = precision_recall_fscore_support(labels, preds, average=average,
                                             zero_division=0)[2]
        out[f"f1_{average}"] = float(f1)
    report = classification_report(labels, preds, labels=list(range(num_labels)),
                                   target_names=shown, output_dict=True, zero_division=0)
    out["per_class"] = {name: {"precision": float(report[name]["precision"]),
                               "recall": float(report[name]["recall"]),
                               "f1": float(report[name]["f1-score"]),
                               "support": int(report[name]["support"])} for name in shown}
    values = numeric_values(names) if names is not None else None
    if values is not None:
        out["mae"] = float(np.abs(values[preds] - values[labels]).mean())
    return out


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
