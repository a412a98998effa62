"""TensorBoard logging (rank 0 only), with the optimizer step as the x-axis everywhere."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm


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
