"""bertsent: a hand-written PyTorch loop that fine-tunes BERT-family models for sentiment."""

import os
import signal
import sys

__version__ = "0.1.0"


def _quiet_interrupt(kind, value, tb):
    """Ctrl-C while an entry point is still importing its libraries (seconds of torch and
    transformers) ends it with one line, like a Ctrl-C anywhere else, not a traceback."""
    if issubclass(kind, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
    else:
        sys.__excepthook__(kind, value, tb)


def _started_as_entry_point() -> bool:
    argv = getattr(sys, "orig_argv", [])
    if "-m" in argv[:-1] and argv[argv.index("-m") + 1].startswith("bertsent."):
        return True
    return bool(sys.argv) and sys.argv[0].rsplit("/", 1)[-1].startswith("bertsent-")


def _exit_while_importing(signum, frame):
    """Ctrl-C or SIGTERM while the libraries are still being imported (seconds of torch,
    transformers, scikit-learn): nothing has been written yet, so exit at once, in one line.
    Raising KeyboardInterrupt there can leave a half-imported numpy that later fails with a
    RecursionError instead. errors.run_cli hands the signals back once the imports are done."""
    print("interrupted", file=sys.stderr, flush=True)
    os._exit(128 + signum)


if _started_as_entry_point():  # never when bertsent is imported as a library
    sys.excepthook = _quiet_interrupt
    for _sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(_sig, _exit_while_importing)
