"""bertsent: a hand-written PyTorch loop that fine-tunes BERT-family models for sentiment."""

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


if _started_as_entry_point():  # never when bertsent is imported as a library
    sys.excepthook = _quiet_interrupt
