"""What SIGINT (Ctrl-C) and SIGTERM (`kill`, a scheduler's pre-emption) do in each phase of a
run, installed for the run and restored when it returns.

- start-up (reading data, tokenising, building the model): nothing to save yet; the run unwinds
  like Ctrl-C, so a half-written cache file and the run lock are cleaned up on the way out.
- train: the first signal lets the current optimizer step finish, then the loop writes a
  checkpoint and returns; a second one exits at once (checkpoints are atomic, so that is safe).
- export and test (writing final/, the final test pass): there is no step to finish; the run
  exits at once with a line saying what is intact and how to continue.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

import torch

from bertsent.distributed import DistInfo, all_reduce_sum, say
from bertsent.errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopper:
    """The run's signal handler; `requested` is the signal that asked training to stop."""

    def __init__(self, dist: DistInfo | None = None):
        self.dist, self.phase, self.note = dist, "start-up", ""
        self.requested: int | None = None
        self.previous: dict = {}

    def enter(self, phase: str, note: str = "") -> None:
        """Move to `phase`; `note` is what a signal there prints before exiting."""
        self.phase, self.note = phase, note

    def handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.phase == "start-up":
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            raise Interrupted(signum, f"interrupted ({name}) during start-up: nothing was "
                                      "saved; run the same command again")
        if self.phase == "train" and self.requested is None:
            self.requested = signum
            say(f"\n{name}: finishing this step and saving a checkpoint (again to quit at once)",
                self.dist)
            return
        if self.note:
            say(f"\n{name}: {self.note}", self.dist)
        sys.exit(128 + signum)

    def should_stop(self, hook: bool = False) -> bool:
        """A signal (or a test hook) on any rank stops every rank after the current step."""
        stop = self.requested is not None or hook
        if self.dist is not None and self.dist.enabled:
            stop = bool(all_reduce_sum(torch.tensor(float(stop))).item())
        return stop

    def __enter__(self) -> Stopper:
        self.previous = {sig: signal.signal(sig, self.handle) for sig in SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
