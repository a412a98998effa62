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

from bertsent.curves import quiet_figures  # noqa: E402
from bertsent.engine import EvalResult  # noqa: E402
from bertsent.jsonio import strict_json  # noqa: E402
from bertsent.metrics import confident_mistakes, confusion  # noqa: E402
from bertsent.tracking import PR_CURVE_MAX_CLASSES, RunLogger  # noqa: E402

# A picture per class pair grows with the square of the class count: 150 classes once took
# over 4 GB. Draw what stays readable, within a bounded figure, and say what was left out.
CONFUSION_NUMBERS_MAX_CLASSES = 30  # a count in every cell up to here
CONFUSION_MAX_CLASSES = 100  # a heat map without counts up to here; above, metrics.json only
MAX_INCHES = 12.0  # the largest figure side: 1440 pixels at the report's 120 dpi
NAME_CHARS = 24  # class names on the axes are shortened to this


def short(name: str, chars: int = NAME_CHARS) -> str:
    """A class name that fits on an axis (long names would squeeze the plot to nothing)."""
    return name if len(name) <= chars else name[:chars - 1] + "…"


def confusion_figure(labels: np.ndarray, preds: np.ndarray, names: list[str]):
    """N x N counts with the label names (a plain heat map above 30 classes, where the numbers
    no longer fit); the figure grows with N up to MAX_INCHES. None above 100 classes."""
    n = len(names)
    if n > CONFUSION_MAX_CLASSES:
        return None
    size = min(max(4.0, 1.5 + 0.35 * n), MAX_INCHES)
    font = min(10.0, max(4.5, 200 / n))
    numbers = n <= CONFUSION_NUMBERS_MAX_CLASSES
    fig, ax = plt.subplots(figsize=(size, size))
    ConfusionMatrixDisplay.from_predictions(labels, preds, labels=list(range(n)),
                                            display_labels=[short(x) for x in names], ax=ax,
                                            colorbar=not numbers, include_values=numbers,
                                            cmap="Blues", values_format="d",
                                            text_kw={"fontsize": font},
                                            xticks_rotation="horizontal" if n <= 4 else
                                            45 if n <= 10 else "vertical")
    ax.tick_params(labelsize=font)
    ax.set_title("Confusion matrix" if numbers else f"Confusion matrix ({n} classes)")
    fig.tight_layout()
    return fig


def pr_figure(labels: np.ndarray, positive: np.ndarray, name: str = "positive"):
    fig, ax = plt.subplots(figsize=(4.5, 4))
    PrecisionRecallDisplay.from_predictions(labels, positive, ax=ax, name=f"class {short(name)}")
    ax.set_xlabel(f"Recall of {short(name)}")  # not scikit-learn's "(Positive label: 1)"
    ax.set_ylabel(f"Precision of {short(name)}")
    ax.set_title("Precision-recall")
    fig.tight_layout()
    return fig


def pr_figure_per_class(labels: np.ndarray, probs: np.ndarray, names: list[str]):
    """One-vs-rest precision-recall curve of each class that occurs in the labels (callers
    stop at PR_CURVE_MAX_CLASSES: more curves are a tangle, and the legend outgrows the plot)."""
    fig, ax = plt.subplots(figsize=(5.5, 4.5) if len(names) <= 8 else (8.0, 5.0))
    for i, name in enumerate(names):
        if (labels == i).any():
            PrecisionRecallDisplay.from_predictions(labels == i, probs[:, i], ax=ax,
                                                    name=short(name))
    ax.set_xlabel("Recall")  # each curve is one class against the rest, not "positive label 1"
    ax.set_ylabel("Precision")
    ax.set_title("Precision-recall, each class against the rest")
    if len(names) <= 8:
        ax.legend(fontsize="small")
    else:
        ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.02, 1.0))
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
    """Write the report folder and a TensorBoard log inside it; returns the folder.

    What grows with the class count is capped (see the limits above); metrics.json's
    report_notes says what was left out and why, and always holds the confusion counts."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    names = metrics["labels"]
    n = len(names)
    probs = result.probs
    preds = probs.argmax(axis=1)
    texts = [texts[i] for i in result.indices]
    notes = []
    if n > CONFUSION_MAX_CLASSES:
        notes.append(f"confusion matrix not drawn: {n} classes (pictures stop at "
                     f"{CONFUSION_MAX_CLASSES}); the counts are in confusion_matrix")
    elif n > CONFUSION_NUMBERS_MAX_CLASSES:
        notes.append(f"confusion matrix drawn without counts: {n} classes (counts are drawn "
                     f"up to {CONFUSION_NUMBERS_MAX_CLASSES}); they are in confusion_matrix")
    if n > PR_CURVE_MAX_CLASSES:
        notes.append(f"per-class precision-recall curves not drawn: {n} classes (they are "
                     f"drawn up to {PR_CURVE_MAX_CLASSES})")
    metrics = {**metrics, "expected_calibration_error": result.calibration_error,
               "report_notes": notes}
    metrics.setdefault("confusion_matrix", confusion(result.logits, result.labels, n))
    (out / "metrics.json").write_text(strict_json(metrics, indent=2))
    (out / "mistakes.md").write_text("# The 20 most confident mistakes\n\n"
                                     + mistakes_table(texts, result.labels, probs, names))
    logger = RunLogger(out / "tensorboard")
    with quiet_figures():
        figures = {"confusion_matrix": confusion_figure(result.labels, preds, names)}
        if n == 2 and len(np.unique(result.labels)) == 2:
            figures["precision_recall"] = pr_figure(result.labels, probs[:, 1], names[1])
            figures["reliability"] = reliability_figure(result.labels, probs[:, 1])
        elif 2 < n <= PR_CURVE_MAX_CLASSES and len(result.labels):
            figures["precision_recall"] = pr_figure_per_class(result.labels, probs, names)
        if len(result.labels):
            logger.pr_curves("eval", result.labels, probs, names, 0)
        for name, fig in figures.items():
            if fig is not None:
                fig.savefig(out / f"{name}.png", dpi=120)
                logger.figure(f"eval/{name}", fig, 0)  # closes the figure
    if notes:
        logger.text("eval/report_notes", "\n\n".join(notes), 0)
    logger.scalars("eval", {k: v for k, v in metrics.items() if isinstance(v, float)}, 0)
    logger.close()
    return str(out)
