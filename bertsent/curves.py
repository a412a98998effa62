"""python -m bertsent.curves runs/<run> --out curves.png: training curves from a TensorBoard log.

Reads the event files of one run folder (all of them, so a resumed run draws as one) and draws
the training loss (the mean over each logging window) and the validation accuracy against the
optimizer step; for a pre-training run, which has no accuracy, the held-out loss beside the
training loss. Any run can be redrawn the same way, which is how README's picture is made.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

from bertsent.errors import fail, run_cli

LOSS, ACCURACY, VAL_LOSS = "train/loss", "val/accuracy", "val/loss"
# What matplotlib says about fonts and layout while drawing: a class name in a script the font
# lacks is drawn as boxes, a long one squeezes the margins. The picture is still written, so
# these lines are noise on a successful run's stderr. Exceptions are untouched.
_DRAWING_NOISE = (r"Glyph \d+ .*missing from (current )?font", r"Matplotlib currently does not "
                  r"support", r"Tight layout not applied", r"constrained_layout not applied",
                  r".*tight_layout", r"Font family .* not found")


@contextlib.contextmanager
def quiet_figures() -> Iterator[None]:
    """Silence matplotlib's font and layout warnings (and its logger's font lookups) while
    figures are drawn; errors still raise, and warnings of any other kind still show."""
    log = logging.getLogger("matplotlib")
    level = log.level
    log.setLevel(logging.ERROR)  # findfont: ... not found, and the like
    try:
        with warnings.catch_warnings():
            for pattern in _DRAWING_NOISE:
                warnings.filterwarnings("ignore", message=pattern, category=UserWarning)
            yield
    finally:
        log.setLevel(level)


def read_scalars(log_dir: str, tags: tuple[str, ...]) -> dict[str, list[tuple[int, float]]]:
    """(step, value) pairs for each tag, in step order, as TensorBoard would show them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    if not Path(log_dir).is_dir():
        fail(f"{log_dir} is not a folder: pass a run's TensorBoard folder, e.g. runs/<run>")
    acc = EventAccumulator(log_dir, size_guidance={"scalars": 0})  # 0: keep every point
    acc.Reload()
    present = set(acc.Tags().get("scalars", []))
    if LOSS not in present:
        fail(f"{log_dir} has no '{LOSS}' scalars: pass the folder of a bertsent training run "
             "(runs/<run>)")
    return {tag: sorted((e.step, e.value) for e in acc.Scalars(tag)) if tag in present else []
            for tag in tags}


def running_mean(values: list[float], window: int) -> list[float]:
    """Mean of the last `window` values at each point (fewer at the start): the trend under a
    noisy loss, as TensorBoard's smoothing shows it."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v - (values[i - window] if i >= window else 0.0)
        out.append(total / min(i + 1, window))
    return out


def draw(series: dict[str, list[tuple[int, float]]], title: str, out: str,
         smooth: int = 20) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with quiet_figures():
        fig, left = plt.subplots(figsize=(6.4, 4.0))
        steps, loss = zip(*series[LOSS], strict=True)
        left.plot(steps, loss, color="tab:blue", linewidth=0.9, alpha=0.55,
                  marker="o" if len(loss) <= 30 else None, markersize=3,  # one point shows
                  label="training loss (mean of each logging window)")
        if smooth > 1 and len(loss) > smooth:
            left.plot(steps, running_mean(list(loss), smooth), color="tab:blue", linewidth=1.8,
                      label=f"the same, running mean of {smooth} points")
        left.set_xlabel("optimizer step")
        left.set_ylabel("training loss", color="tab:blue")
        left.set_ylim(bottom=0)
        handles = left.get_lines()
        if series[ACCURACY]:
            right = left.twinx()
            vsteps, acc = zip(*series[ACCURACY], strict=True)
            right.plot(vsteps, acc, "o-", color="tab:orange", label="validation accuracy")
            right.set_ylabel("validation accuracy", color="tab:orange")
            handles += right.get_lines()
        elif series.get(VAL_LOSS):
            vsteps, held = zip(*series[VAL_LOSS], strict=True)
            handles += left.plot(vsteps, held, "o-", color="tab:orange",
                                 label="held-out loss (validation)")
            left.set_ylabel("loss", color="black")
        left.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2,
                    fontsize=8, frameon=False)
        left.set_title(title, fontsize=10)
        fig.tight_layout()
        try:
            fig.savefig(out, dpi=100)
        except OSError as exc:
            fail(f"cannot write {out} ({exc.strerror or exc}): pass a writable --out path")
        finally:
            plt.close(fig)


def out_path(out: str) -> str:
    """The file --out names, as it will be written: a name without a suffix gets .png (what
    matplotlib would add silently, so the path printed is the file written); a folder, a
    suffix matplotlib cannot write, or a file that exists (another run's picture, a report's
    confusion matrix: never replaced) is refused before any reading."""
    from matplotlib.figure import Figure

    path = Path(out).expanduser()
    if path.is_dir() or out.endswith(("/", "\\")):
        fail(f"--out {out} is a folder: pass a .png file path, e.g. {path / 'curves.png'}")
    if not path.suffix:
        path = Path(f"{path}.png")
    else:
        kinds = Figure().canvas.get_supported_filetypes()
        if path.suffix[1:].lower() not in kinds:
            fail(f"--out {out}: matplotlib cannot write {path.suffix} files: pass a .png file "
                 f"path (or one of .{', .'.join(sorted(kinds))})")
    if os.path.lexists(path):  # a link too: savefig would write through it
        fail(f"--out {path} already exists: pass a new file name (curves never replace a file)")
    return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bertsent.curves", description=__doc__.splitlines()[0])
    parser.add_argument("log_dir", help="a run's TensorBoard folder, e.g. runs/<run>")
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument("--title", help="default: the run folder's name")
    parser.add_argument("--smooth", type=int, default=20,
                        help="points in the running mean drawn over the loss (1: none)")
    args = parser.parse_args(argv)

    def entry() -> int:
        out = out_path(args.out)
        series = read_scalars(args.log_dir, (LOSS, ACCURACY, VAL_LOSS))
        draw(series, args.title or Path(args.log_dir.rstrip("/")).name, out, args.smooth)
        print(out)
        return 0

    return run_cli(entry)


if __name__ == "__main__":
    sys.exit(main())
