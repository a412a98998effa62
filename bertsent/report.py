"""Evaluation report folder: metrics JSON, confusion matrix, precision-recall and reliability
curves (PNG and TensorBoard), and the most confident mistakes as a markdown table."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.calibration import calibration_curve  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay, PrecisionRecallDisplay  # noqa: E402

from bertsent.engine import EvalResult  # noqa: E402
from bertsent.metrics import (  # noqa: E402
    confident_mistakes,
    expected_calibration_error,
    softmax,
    strict_json,
)
from bertsent.tracking import RunLogger  # noqa: E402


def confusion_figure(labels: np.ndarray, preds: np.ndarray, names: list[str]):
    """N x N counts with the label names; the figure grows with N so 8+ classes stay legible."""
    size = max(4.0, 1.0 + 0.6 * len(names))
    fig, ax = plt.subplots(figsize=(size, size))
    ConfusionMatrixDisplay.from_predictions(labels, preds, labels=list(range(len(names))),
                                            display_labels=names, ax=ax, colorbar=False,
                                            cmap="Blues", values_format="d",
                                            xticks_rotation=45 if len(names) > 4 else "horizontal")
    ax.set_title("Confusion matrix")
    fig.tight_layout()
    return fig


def pr_figure(labels: np.ndarray, positive: np.ndarray):
    fig, ax = plt.subplots(figsize=(4.5, 4))
    PrecisionRecallDisplay.from_predictions(labels, positive, ax=ax, name="positive class")
    ax.set_title("Precision-recall")
    fig.tight_layout()
    return fig


def pr_figure_per_class(labels: np.ndarray, probs: np.ndarray, names: list[str]):
    """One-vs-rest precision-recall curve of each class that occurs in the labels."""
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for i, name in enumerate(names):
        if (labels == i).any():
            PrecisionRecallDisplay.from_predictions(labels == i, probs[:, i], ax=ax, name=name)
    ax.set_title("Precision-recall, each class against the rest")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def reliability_figure(labels: np.ndarray, positive: np.ndarray, bins: int = 10):
    frac, mean = calibration_curve(labels, positive, n_bins=bins, strategy="uniform")
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot([0, 1], [0, 1], "k:", label="perfectly calibrated")
    ax.plot(mean, frac, "o-", label="model")
    ax.set_xlabel("predicted probability of positive")
    ax.set_ylabel("fraction positive")
    ax.set_title("Reliability")
    ax.legend()
    fig.tight_layout()
    return fig


def mistakes_table(texts: list[str], labels: np.ndarray, probs: np.ndarray,
                   names: list[str], k: int = 20) -> str:
    """The k wrong predictions the model was surest of, as a markdown table."""
    preds = probs.argmax(axis=1)
    wrong = confident_mistakes(labels, probs, k)
    rows = ["| # | true | predicted | confidence | review |", "|---|---|---|---|---|"]
    for rank, i in enumerate(wrong, 1):
        text = " ".join(texts[i].replace("<br />", " ").split())
        text = (text[:300] + " …") if len(text) > 300 else text
        rows.append(f"| {rank} | {names[labels[i]]} | {names[preds[i]]} | "
                    f"{probs[i].max():.4f} | {text.replace('|', '/')} |")
    return "\n".join(rows) + "\n"


def write_report(folder: str, result: EvalResult, texts: list[str], metrics: dict) -> str:
    """Write the report folder and a TensorBoard log inside it; returns the folder."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    names = metrics["labels"]
    probs = softmax(result.logits)
    preds = probs.argmax(axis=1)
    texts = [texts[i] for i in result.indices]
    metrics = {**metrics, "expected_calibration_error": expected_calibration_error(
        result.labels, probs)}
    (out / "metrics.json").write_text(strict_json(metrics, indent=2))
    (out / "mistakes.md").write_text("# The 20 most confident mistakes\n\n"
                                     + mistakes_table(texts, result.labels, probs, names))
    logger = RunLogger(out / "tensorboard")
    figures = {"confusion_matrix": confusion_figure(result.labels, preds, names)}
    if len(names) == 2 and len(np.unique(result.labels)) == 2:
        figures["precision_recall"] = pr_figure(result.labels, probs[:, 1])
        figures["reliability"] = reliability_figure(result.labels, probs[:, 1])
        logger.pr_curve("eval/pr_curve", result.labels, probs[:, 1], 0)
    elif len(names) > 2 and len(result.labels):
        figures["precision_recall"] = pr_figure_per_class(result.labels, probs, names)
        for i, name in enumerate(names):
            logger.pr_curve(f"eval/pr_curve/{name}", result.labels == i, probs[:, i], 0)
    for name, fig in figures.items():
        fig.savefig(out / f"{name}.png", dpi=120)
        logger.figure(f"eval/{name}", fig, 0)  # closes the figure
    logger.scalars("eval", {k: v for k, v in metrics.items() if isinstance(v, float)}, 0)
    logger.close()
    return str(out)
