"""What a run shows while it runs: TensorBoard logging (rank 0 only, the optimizer step as the
x-axis everywhere) and progress meters (a bar on a terminal, plain lines in a log)."""

from __future__ import annotations

import collections
import json
import sys
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

PR_CURVE_MAX_CLASSES = 20  # one precision-recall curve per class up to here (TB and pictures)


class RunLogger:
    """A SummaryWriter that continues cleanly after a resume.

    `purge_step` drops events at or after the resumed step that the interrupted run wrote, so
    every step appears exactly once in TensorBoard.
    """

    def __init__(self, log_dir: Path | None, purge_step: int | None = None):
        from torch.utils.tensorboard import SummaryWriter  # only where a log is written

        self.writer = SummaryWriter(str(log_dir), purge_step=purge_step) if log_dir else None

    def scalars(self, prefix: str, values: dict[str, float], step: int) -> None:
        if self.writer:
            for name, value in values.items():
                if isinstance(value, (int, float)):
                    self.writer.add_scalar(f"{prefix}/{name}", value, step)

    def text(self, tag: str, text: str, step: int) -> None:
        if self.writer:
            self.writer.add_text(tag, text, step)

    def config(self, config: dict[str, Any], step: int = 0) -> None:
        if self.writer:
            self.writer.add_text("config", "```\n" + json.dumps(config, indent=2) + "\n```", step)

    def hparams(self, config: dict[str, Any], metrics: dict[str, float]) -> None:
        """Hyperparameters beside the final metrics, in the same run folder."""
        if self.writer:
            hp = {k: (v if isinstance(v, (int, float, str, bool)) else str(v))
                  for k, v in config.items()}
            self.writer.add_hparams(hp, {f"hparam/{k}": v for k, v in metrics.items()},
                                    run_name=".")

    def pr_curve(self, tag: str, labels, probs, step: int) -> None:
        if self.writer:
            self.writer.add_pr_curve(tag, labels, probs, step)

    def pr_curves(self, prefix: str, labels, probs, names: list[str], step: int) -> None:
        """The positive class's precision-recall curve (binary), or one curve per class against
        the rest while there are few enough to read (more would swell every evaluation)."""
        if len(names) == 2:
            self.pr_curve(f"{prefix}/pr_curve", labels, probs[:, 1], step)
        elif len(names) <= PR_CURVE_MAX_CLASSES:
            for i, name in enumerate(names):
                self.pr_curve(f"{prefix}/pr_curve/{name}", labels == i, probs[:, i], step)

    def evaluation(self, prefix: str, result: Any, names: list[str], step: int,
                   texts: list[str] | None = None) -> None:
        """An evaluation pass: its scalars, precision-recall curves, each class's F1 (more than
        two classes), and with `texts` a few of the surest mistakes as text."""
        self.scalars(prefix, result.metrics, step)
        if not len(result.labels):
            return
        self.pr_curves(prefix, result.labels, result.probs, names, step)
        if "per_class" in result.metrics:
            self.scalars(f"{prefix}/f1_per_class", {
                name: v["f1"] for name, v in result.metrics["per_class"].items()}, step)
        if texts:
            self.text(f"{prefix}/misclassified", misclassified(result, names, texts), step)

    def figure(self, tag: str, figure, step: int) -> None:
        if self.writer:
            self.writer.add_figure(tag, figure, step)

    def flush(self) -> None:
        if self.writer:
            self.writer.flush()

    def close(self) -> None:
        if self.writer:
            self.writer.close()
            self.writer = None


def misclassified(result: Any, names: list[str], texts: list[str], k: int = 5) -> str:
    """A few reviews the model got wrong, surest first (markdown for TensorBoard)."""
    from bertsent.metrics import confident_mistakes

    lines = [f"**true {names[int(result.labels[i])]}, p={result.probs[i].max():.3f}**: "
             f"{texts[int(result.indices[i])][:400]}"
             for i in confident_mistakes(result.labels, result.probs, k)]
    return "\n\n".join(lines) or "(none)"


def format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else \
        f"{rest // 60}:{rest % 60:02d}"


class Meter:
    """A loop's progress behind one call per step: a tqdm bar on a terminal, and plain lines
    every `every` seconds where stderr is not one.

    tqdm draws nothing when stderr is redirected (nohup, a batch scheduler, CI), which would
    leave an hour-long run, or a 25,000-review test pass, silent; the plain line prints what the
    bar would show. The ETA is wall-clock time per unit since this meter started, evaluations
    and checkpoints included.
    """

    def __init__(self, total: int, desc: str, *, unit: str = "step", every: float = 60.0,
                 enabled: bool = True, initial: int = 0, leave: bool = True,
                 terminal: bool | None = None, clock=time.monotonic):
        terminal = sys.stderr.isatty() if terminal is None else terminal
        self.total, self.desc, self.every, self.clock = total, desc, every, clock
        self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, leave=leave,
                        dynamic_ncols=True, disable=not (enabled and terminal))
        self.plain = enabled and not terminal and every > 0
        self.initial = self.done = initial
        self.start = self.last = clock()

    def line(self, *shown: str) -> str:
        per_unit = (self.clock() - self.start) / max(self.done - self.initial, 1)
        eta = format_duration((self.total - self.done) * per_unit)
        return " ".join([f"{self.desc} {self.done}/{self.total} "
                         f"({100 * self.done / max(self.total, 1):.1f}%)", *shown, f"eta {eta}"])

    def update(self, done: int, *shown: str) -> None:
        """Move to `done` units; `shown` are short 'name value' strings (loss, speed)."""
        self.bar.update(done - self.done)
        if shown:
            self.bar.set_postfix_str(", ".join(shown), refresh=False)
        self.done = done
        now = self.clock()
        if self.plain and (now - self.last >= self.every or done >= self.total):
            self.last = now
            print(self.line(*shown), file=sys.stderr, flush=True)

    def close(self) -> None:
        self.bar.close()


class StepMeter:
    """One call per optimizer step for everything a step shows: the window-mean training loss
    (the mean since the last logged point: one batch's loss jumps between 0.0 and 2.4 on IMDb
    and hides the trend), the TensorBoard scalars every `log_every` steps, and the progress bar
    or plain lines. The window's sum lives in `progress` so that a resumed run logs the same.
    The bar and the lines show a rolling mean of the last `log_every` steps instead, which a
    logged point does not restart: the first line after a validation pass would otherwise
    show one step's loss."""

    def __init__(self, logger: RunLogger, total: int, initial: int, log_every: int,
                 progress_every: float, enabled: bool):
        self.logger, self.log_every = logger, log_every
        self.meter = Meter(total, "step", every=progress_every, enabled=enabled,
                           initial=initial)
        self.recent: collections.deque[float] = collections.deque(maxlen=max(log_every, 1))

    def step(self, progress: Any, result: Any, lr: float, last: bool) -> None:
        if not result.skipped:
            progress.loss_sum, progress.loss_steps = progress.loss_sum + result.loss, \
                progress.loss_steps + 1
            self.recent.append(result.loss)
        window_loss = progress.loss_sum / max(progress.loss_steps, 1)
        per_second = progress.samples_seen / max(progress.train_seconds, 1e-9)
        due = last or (self.log_every and progress.step % self.log_every == 0)
        if due and progress.loss_steps:
            progress.loss_sum, progress.loss_steps = 0.0, 0
            self.logger.scalars("train", {"loss": window_loss, "lr": lr,
                                          "grad_norm": result.grad_norm,
                                          "samples_per_second": per_second,
                                          "skipped_steps": progress.skipped_steps},
                                progress.step)
        shown = sum(self.recent) / len(self.recent) if self.recent else window_loss
        self.meter.update(progress.step, f"loss {shown:.4f}", f"{per_second:.1f} samples/s")

    def close(self) -> None:
        self.meter.close()

    def __enter__(self) -> StepMeter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
