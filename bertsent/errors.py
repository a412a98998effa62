"""User-facing errors: one clear line, exit status 2, no traceback."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from typing import NoReturn


class UserError(Exception):
    """A problem with what the user asked for; the message names the problem and the fix."""


class Interrupted(KeyboardInterrupt):
    """A signal other than Ctrl-C (SIGTERM) that stops a run before it has anything to save;
    raised like Ctrl-C, so cleanup code (temporary files, locks) runs on the way out."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum


class _Signals:
    """SIGINT and SIGTERM raise KeyboardInterrupt and Interrupted, and remember what they raised:
    native code (tokenizers, safetensors) may turn an exception raised inside its callback into
    one of its own, and the run must still end as the signal asked."""

    def __init__(self) -> None:
        self.raised: KeyboardInterrupt | None = None

    def handle(self, signum: int, frame: object) -> NoReturn:
        self.raised = (KeyboardInterrupt() if signum == signal.SIGINT
                       else Interrupted(signum, "interrupted (SIGTERM)"))
        raise self.raised


def fail(message: str) -> NoReturn:
    raise UserError(message)


def _stopped(exc: KeyboardInterrupt) -> int:
    print(str(exc) or "interrupted", file=sys.stderr)
    return 128 + getattr(exc, "signum", 2)


def run_cli(entry: Callable[[], int | None]) -> int:
    """Run a CLI entry point, turning a UserError into one line on stderr and exit status 2.

    KeyboardInterrupt without a handler of our own exits 130 quietly (no traceback). The
    imports are done by now: Ctrl-C raises KeyboardInterrupt again and SIGTERM unwinds the same
    way (Interrupted), so that temporary files and locks are cleaned up on the way out.
    """
    signals = _Signals()
    previous = {sig: signal.signal(sig, signals.handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return int(entry() or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        return _stopped(exc)
    except Exception:
        if signals.raised is None:
            raise
        return _stopped(signals.raised)  # native code re-wrapped the signal's exception
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
