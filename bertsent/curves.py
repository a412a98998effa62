"""python -m bertsent.curves runs/<run> --out curves.png: training curves from a TensorBoard log.

Reads the event files of one run folder (all of them, so a resumed run draws as one) and draws
the training loss (the mean over each logging window) and the validation accuracy against the
optimizer step. Any run can be redrawn the same way, which is how README's picture is made.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bertsent.errors import fail, run_cli

LOSS, ACCURACY = "train/loss", "val/accuracy"


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

    fig, left = plt.subplots(figsize=(6.4, 4.0))
    steps, loss = zip(*series[LOSS], strict=True)
    left.plot(steps, loss, color="tab:blue", linewidth=0.6, alpha=0.35,
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
    left.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2,
                fontsize=8, frameon=False)
    left.set_title(title, fontsize=10)
    fig.tight_layout()
    try:
        fig.savefig(out, dpi=100)
    except OSError as exc:
        fail(f"cannot write {out} ({exc.strerror or exc}): pass a writable --out path")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bertsent.curves", description=__doc__.splitlines()[0])
    parser.add_argument("log_dir", help="a run's TensorBoard folder, e.g. runs/<run>")
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument("--title", help="default: the run folder's name")
    parser.add_argument("--smooth", type=int, default=20,
                        help="points in the running mean drawn over the loss (1: none)")
    args = parser.parse_args(argv)

    def entry() -> int:
        series = read_scalars(args.log_dir, (LOSS, ACCURACY))
        draw(series, args.title or Path(args.log_dir.rstrip("/")).name, args.out, args.smooth)
        print(args.out)
        return 0

    return run_cli(entry)


if __name__ == "__main__":
    sys.exit(main())
