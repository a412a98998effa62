"""What a finished run reports in metrics.json: the test scores of the exported model, how it
was chosen, how long each part took, and the settings that produced it."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from bertsent.checkpoint import remove_step_checkpoints, store_once
from bertsent.config import EvalConfig
from bertsent.engine import EvalResult
from bertsent.labels import LabelMap
from bertsent.runfolder import RunPaths, disk_usage, format_size

SCORES = ("accuracy", "f1", "precision", "recall", "loss", "f1_macro", "f1_weighted", "mae")
# the settings a result depends on, recorded beside it (docs/results/<run>.json)
RESULT_SETTINGS = ("model", "data", "max_length", "truncation", "epochs", "batch_size",
                   "grad_accum", "lr", "head_lr_mult", "layer_lr_decay", "warmup_ratio",
                   "weight_decay", "dropout", "val_samples", "seed", "ema", "eval_every",
                   "select_metric", "patience", "class_weights", "max_steps")


def describe_labels(labels: LabelMap, weights: list[float] | None = None) -> str:
    """'3 classes: 0=negative, 1=neutral, 2=positive' (and the class weights when used)."""
    names = labels.names
    shown = ", ".join(f"{i}={n}" for i, n in enumerate(names[:10])) + \
        (", ..." if len(names) > 10 else "")
    extra = "" if weights is None else \
        "; class weights " + ", ".join(f"{w:.3g}" for w in weights[:10])
    return f"{len(names)} classes: {shown}{extra}"


def scores(test: EvalResult) -> dict[str, float]:
    """The headline figures of a test pass (those its metrics have)."""
    return {k: test.metrics[k] for k in SCORES if k in test.metrics}


def run_summary(test: EvalResult | None, *, progress: Any, config: dict[str, Any],
                labels: LabelMap, facts: dict[str, Any]) -> dict[str, Any]:
    """metrics.json: scores, calibration, selection, time and settings. `facts` are the run's
    own (test split, sizes, seconds, device, where the best model is). Without a test pass
    (--no-test) the test figures are absent and `tested` is false."""
    tested = test is not None
    return {
        **(scores(test) if tested else {}),
        **({"per_class": test.metrics["per_class"]} if tested and "per_class" in test.metrics
           else {}),
        "tested": tested,
        "labels": list(labels.names),
        "test_split": facts["test_split"] if tested else None,
        "expected_calibration_error": test.calibration_error if tested else None,
        "test_samples": test.metrics["samples"] if tested else 0,
        "train_samples": facts["train_samples"],
        "val_samples": facts["val_samples"],
        "val_accuracy": (facts["val_metrics"] or {}).get("accuracy"),  # of the reported model
        "select_metric": config["select_metric"],
        "best_val_metric": progress.best_metric if progress.best_step >= 0 else None,
        "best_step": progress.best_step,
        "stopped_early": progress.stopped_early,
        "steps": progress.step,
        "train_samples_per_second": progress.samples_seen / max(progress.train_seconds, 1e-9),
        "train_seconds": progress.train_seconds,
        "test_seconds": facts["test_seconds"] if tested else None,
        "skipped_steps": progress.skipped_steps,
        "precision_mode": facts["precision"],
        "device_name": facts["device_name"],
        "world_size": facts["world_size"],
        "run_name": config["run_name"],
        "best_model_dir": facts["best_model_dir"],
        "settings": {k: config[k] for k in RESULT_SETTINGS},
        "data_identity": facts.get("data_identity"),
    }


def tidy(paths: RunPaths, best: Path, keep_checkpoints: bool) -> str:
    """A finished run's disk: identical exports stored once (best/ and final/ of a run whose
    best point is its last step), step checkpoints removed unless kept (a finished run is never
    resumed). Returns what it takes, for the run's last line."""
    if best != paths.final:
        store_once(best, paths.final)
    removed = 0 if keep_checkpoints else remove_step_checkpoints(paths.folder)
    return (f"{paths.folder} takes {format_size(disk_usage(paths.folder))} on disk"
            + (f" ({removed} step checkpoints removed: --keep-checkpoints keeps them)"
               if removed else ""))


def evaluate_command(cfg: Any, precision: str, best: Path) -> str:
    """The `bertsent.evaluate` command that gives a --no-test run's test figures later: the
    test pass's reviews (`--samples`, `--seed`), precision and batches, where they are not
    evaluate's defaults (which score in fp32)."""
    defaults, parts = EvalConfig(), ["python -m bertsent.evaluate --model", shlex.quote(str(best))]
    if cfg.test_samples is not None:
        parts += ["--samples", str(cfg.test_samples), "--seed", str(cfg.seed)]
    if precision != defaults.precision:
        parts += ["--precision", precision]
    if cfg.eval_batch_size != defaults.batch_size:
        parts += ["--batch-size", str(cfg.eval_batch_size)]
    if cfg.eval_tokens != defaults.batch_tokens:
        parts += ["--batch-tokens", str(cfg.eval_tokens)]
    return " ".join(parts)


def validation_line(metrics: dict[str, Any], progress: Any, name: str, best: bool) -> str:
    """'val step 500: accuracy 0.9120 f1 0.9115 loss 0.2301, new best (exported to best/)'."""
    shown = " ".join(f"{k} {metrics[k]:.4f}" for k in dict.fromkeys(("accuracy", "f1", name,
                                                                     "loss")) if k in metrics)
    verdict = "new best (exported to best/)" if best else \
        f"best {name} {progress.best_metric:.4f} at step {progress.best_step}"
    return f"val step {progress.step}: {shown}, {verdict}"
