"""TensorBoard logging (rank 0 only), with the optimizer step as the x-axis everywhere."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter


class RunLogger:
    """A SummaryWriter that continues cleanly after a resume.

    `purge_step` drops events at or after the resumed step that the interrupted run wrote, so
    every step appears exactly once in TensorBoard.
    """

    def __init__(self, log_dir: Path | None, purge_step: int | None = None):
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


def format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else \
        f"{rest // 60}:{rest % 60:02d}"


class PlainProgress:
    """One progress line every `every` seconds, for logs that are not a terminal.

    tqdm draws nothing when stderr is redirected (nohup, a batch scheduler, CI), which would
    leave an hour-long run silent; this prints what the bar would show, as plain lines. The ETA
    is wall-clock time per step since this process started training, evaluations and
    checkpoints included.
    """

    def __init__(self, total: int, every: float, enabled: bool, start_step: int = 0,
                 clock=time.monotonic):
        self.total, self.every, self.clock = total, every, clock
        self.enabled = enabled and every > 0
        self.start_step, self.start = start_step, clock()
        self.last = self.start

    def line(self, step: int, loss: float, samples_per_second: float) -> str:
        per_step = (self.clock() - self.start) / max(step - self.start_step, 1)
        eta = format_duration((self.total - step) * per_step)
        return (f"step {step}/{self.total} ({100 * step / max(self.total, 1):.1f}%) "
                f"loss {loss:.4f} {samples_per_second:.1f} samples/s eta {eta}")

    def update(self, step: int, loss: float, samples_per_second: float) -> None:
        now = self.clock()
        if self.enabled and (now - self.last >= self.every or step >= self.total):
            self.last = now
            print(self.line(step, loss, samples_per_second), file=sys.stderr, flush=True)
