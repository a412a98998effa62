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


def draw(series: dict[str, list[tuple[int, float]]], title: str, out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, left = plt.subplots(figsize=(6.4, 3.4))
    steps, loss = zip(*series[LOSS], strict=True)
    left.plot(steps, loss, color="tab:blue", linewidth=1, label="training loss (window mean)")
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
    left.legend(handles=handles, loc="center right", fontsize=8)
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
    args = parser.parse_args(argv)

    def entry() -> int:
        series = read_scalars(args.log_dir, (LOSS, ACCURACY))
        draw(series, args.title or Path(args.log_dir.rstrip("/")).name, args.out)
        print(args.out)
        return 0

    return run_cli(entry)


if __name__ == "__main__":
    sys.exit(main())
