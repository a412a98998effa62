"""The data and label rules of reliability round 3, one class of fault per section: what a split
is made of, unlabelled values, --num-labels, CSV values as written, macro averages over the
classes present, and one-line messages where there were tracebacks. Tiny in-process data only."""

import numpy as np
import pytest

from bertsent.metrics import compute_metrics


# ---------------------------------------------------------------- 4. macro averages
def test_macro_averages_count_only_classes_that_occur():
    names = [str(r) for r in (1, 2, 3, 4, 7, 8, 9, 10)]
    labels = np.array([0, 1, 6, 7, 0, 7])  # 4 of the 8 rating classes
    perfect = compute_metrics(np.eye(8)[labels] * 5, labels, 8, names)
    assert perfect["f1"] == perfect["f1_macro"] == perfect["f1_weighted"] == 1.0
    assert perfect["precision"] == perfect["recall"] == 1.0
    assert list(perfect["per_class"]) == names  # every class by name ...
    assert perfect["per_class"]["3"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0,
                                         "support": 0}  # ... with support 0 where none
    preds = np.array([0, 1, 6, 7, 0, 2])  # a wrong "3": it occurs in the predictions
    wrong = compute_metrics(np.eye(8)[preds] * 5, labels, 8, names)
    f1s = [v["f1"] for k, v in wrong["per_class"].items() if k in ("1", "2", "3", "9", "10")]
    assert wrong["f1_macro"] == pytest.approx(np.mean(f1s))


def test_binary_metrics_and_numeric_binary_names_have_no_mae():
    from sklearn.metrics import f1_score

    logits = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 3.0]])
    labels = np.array([0, 1, 1, 1])
    metrics = compute_metrics(logits, labels, 2, ["1", "10"])
    assert set(metrics) == {"loss", "accuracy", "f1", "precision", "recall", "samples"}
    assert metrics["f1"] == pytest.approx(f1_score(labels, logits.argmax(1)))
    assert "mae" in compute_metrics(np.eye(3), np.arange(3), 3, ["1", "5", "10"])
