"""What SIGINT (Ctrl-C) and SIGTERM (`kill`, a scheduler's pre-emption) do in each phase of a
run, installed for the run and restored when it returns.

- start-up (reading data, tokenising, building the model): nothing to save yet; the run unwinds
  like Ctrl-C, so a half-written cache file and the run lock are cleaned up on the way out.
- train: the first signal lets the current optimizer step finish, then the loop writes a
  checkpoint and returns; a second one exits at once (checkpoints are atomic, so that is safe).
- export and test (writing final/, the final test pass): there is no step to finish; the run
  exits at once with a line saying what is intact and how to continue.

A handler raises between two Python bytecodes, which may be inside a callback from native code
(safetensors, tokenizers) that turns the exception into one of its own (a ValueError). The
Stopper remembers what it raised and raises it again when its block ends with another error,
so a signal always ends the run with its own exit status and line, never a traceback. An
exception raised inside a `__del__` (tqdm's, when a progress bar is collected) is printed and
lost: there the handler only records it, and `check` raises it at the next phase boundary and
before a run writes the files that mark it finished.
"""

from __future__ import annotations

import signal
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
        self.raised: BaseException | None = None
        self.previous: dict = {}

    def enter(self, phase: str, note: str = "") -> None:
        """Move to `phase`; `note` is what a signal there prints before exiting."""
        self.check()
        self.phase, self.note = phase, note

    def check(self) -> None:
        """Raise the exit of a signal whose exception never reached the run (see above)."""
        if self.raised is not None:
            raise self.raised.with_traceback(None) from None

    def handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.phase == "train" and self.requested is None:
            self.requested = signum
            say(f"\n{name}: finishing this step and saving a checkpoint (again to quit at once)",
                self.dist)
            return
        if self.phase == "start-up":
            self.raised = KeyboardInterrupt() if signum == signal.SIGINT else Interrupted(
                signum, f"interrupted ({name}) during start-up: nothing was saved; run the "
                        "same command again")
        else:
            if self.note:
                say(f"\n{name}: {self.note}", self.dist)
            self.raised = SystemExit(128 + signum)
        if frame is not None and frame.f_code.co_name == "__del__":
            return  # raised here it would be printed as a traceback and lost: check() raises it
        raise self.raised

    def should_stop(self, hook: bool = False) -> bool:
        """A signal (or a test hook) on any rank stops every rank after the current step."""
        stop = self.requested is not None or hook
        if self.dist is not None and self.dist.enabled:
            stop = bool(all_reduce_sum(torch.tensor(float(stop))).item())
        return stop

    def __enter__(self) -> Stopper:
        self.previous = {sig: signal.signal(sig, self.handle) for sig in SIGNALS}
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        if self.raised is not None and exc is not None and exc is not self.raised:
            raise self.raised.with_traceback(None) from None  # native code re-wrapped it
