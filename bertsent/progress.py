"""Where training stands, as one dataclass saved in every checkpoint: steps, the epoch and the
batches of it done, time, the best validation point and the patience count."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint."""

    step: int = 0  # optimizer steps taken
    epoch: int = 0
    batch_in_epoch: int = 0  # global micro-batches consumed this epoch: the sampler position
    samples_seen: int = 0
    train_seconds: float = 0.0
    best_metric: float = -math.inf
    best_step: int = -1
    skipped_steps: int = 0
    loss_sum: float = 0.0  # summed step losses since the last logged point
    loss_steps: int = 0  # steps in that sum: the logged loss is their mean
    evals_since_best: int = 0  # validation points in a row without a better --select-metric
    stopped_early: bool = False  # --patience ran out: the run goes straight to finish()

    def advance(self, window: list[int], epoch_batches: int, result: Any,
                seconds: float) -> bool:
        """Count one optimizer step over the `window` micro-batches; True at the epoch's end."""
        self.step += 1
        self.batch_in_epoch += len(window)
        self.samples_seen += sum(window)
        self.train_seconds += seconds
        self.skipped_steps += result.skipped
        if self.batch_in_epoch < epoch_batches:
            return False
        self.epoch, self.batch_in_epoch = self.epoch + 1, 0
        return True

    def validated(self, value: float, lower_is_better: bool, patience: int | None) -> bool:
        """Record a validation point of the selected metric at this step: True when it is the
        best so far (the caller exports it); after `patience` points in a row without a better
        one, stopped_early is set."""
        if self.best_step < 0 or (value < self.best_metric if lower_is_better else
                                  value > self.best_metric):
            self.best_metric, self.best_step, self.evals_since_best = value, self.step, 0
            return True
        self.evals_since_best += 1
        self.stopped_early = bool(patience) and self.evals_since_best >= patience
        return False

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)


def every(interval: int, step: int) -> bool:
    """True on the steps a periodic action (validate, save) is due; 0 means never."""
    return bool(interval) and step % interval == 0
