"""Training throughput over a full-data run's own batches: every length, in the run's order.

`levers.py` and `mfu_batch.py` time steps of one or a few shapes. A real epoch of the
`imdb-full` preset meets 64 batch lengths (multiples of 8 up to 512), and what a step costs
there can differ: oneDNN compiles a kernel per matmul shape and keeps only so many, freed
memory is reused across shapes. This runs the preset's first --steps optimizer steps (the
real command, `--no-test`, no validation until the last step) once per configuration, each in
its own process, rounds interleaved so that a slow spell of the machine hits every row, and
reports bertsent's own train_samples_per_second (the best round), the process's minor page
faults and its peak RSS (that round's).

    python benchmarks/epoch_steps.py --threads 2                 # about 20 minutes, 2 cores
    python benchmarks/epoch_steps.py --steps 200 --only cut      # quicker, two rows
    python benchmarks/epoch_steps.py --threads 2 --steps 2875 --rounds 2 \
        --only "whole last layer, 4,096,cut last layer, 4,096"    # a whole epoch, about an hour
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT))

from rows import pick  # noqa: E402  (benchmarks/, the script's folder)

from bertsent.runtime import device_name  # noqa: E402

# oneDNN's own capacity, which bertsent's runs raise (runtime.keep_compiled_kernels) unless the
# environment sets it
_ONEDNN_DEFAULT = {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "1024"}
ROWS: list[tuple[str, list[str], dict[str, str]]] = [
    ("whole last layer, oneDNN's 1,024 kernels", ["--no-cut-last-layer"], _ONEDNN_DEFAULT),
    ("whole last layer, 4,096 kernels kept", ["--no-cut-last-layer"], {}),
    ("cut last layer, oneDNN's 1,024 kernels", [], _ONEDNN_DEFAULT),
    ("cut last layer, 4,096 kernels kept (defaults)", [], {}),
]


def run(args: argparse.Namespace, extra: list[str], env: dict[str, str]) -> dict[str, float]:
    """One training process: its samples/s, minor page faults and peak RSS (MiB)."""
    with tempfile.TemporaryDirectory() as tmp:
        quiet = [] if args.as_run else ["--eval-every", "0", "--save-every", "0",
                                        "--val-samples", "32", "--sanity-eval-batches", "0"]
        cmd = [sys.executable, "-m", "bertsent.train", "--config", args.config, "--model",
               args.model, "--data", args.data, "--no-test", "--max-steps", str(args.steps),
               *quiet, "--run-name", "steps", "--checkpoint-dir", f"{tmp}/c", "--runs-dir",
               f"{tmp}/r", *extra]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        clean = {k: v for k, v in os.environ.items() if "PRIMITIVE_CACHE_CAPACITY" not in k}
        with open(f"{tmp}/out", "w") as out:
            child = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL, cwd=ROOT,
                                     env={**clean, **env})
            _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode:
            sys.exit(f"error: {' '.join(cmd)} exited with {child.returncode}")
        result = json.loads(Path(f"{tmp}/out").read_text().strip().splitlines()[-1])
        return {"samples_per_second": result["train_samples_per_second"],
                "minor_faults": usage.ru_minflt, "peak_rss_mib": usage.ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(SHARED / "models" / "minilm-l6"))
    parser.add_argument("--data", default=str(SHARED / "data" / "imdb"))
    parser.add_argument("--config", default="imdb-full", help="preset or TOML file")
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--as-run", action="store_true", help="keep the preset's validation "
                        "points and checkpoints, as a real run has them (their time is not in "
                        "samples/s; what they do to the steps after them is)")
    parser.add_argument("--only", help="comma-separated parts of row names to run")
    parser.add_argument("--out", help="also write the figures to this JSON file")
    args = parser.parse_args()
    chosen = pick([name for name, _, _ in ROWS], args.only, parser)
    rows = [r for r in ROWS if r[0] in chosen]
    runs: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in rows}
    for i in range(args.rounds):  # ABBA: each row as often early as late in the rounds
        for name, extra, env in (rows if i % 2 == 0 else rows[::-1]):
            runs[name].append(run(args, extra, env))
    best = {name: max(got, key=lambda r: r["samples_per_second"]) for name, got in runs.items()}
    base = next(iter(best.values()))["samples_per_second"]
    cpu = device_name(torch.device("cpu"))
    print(f"{cpu}; {args.config}, first {args.steps} steps"
          f"{' with its validation and checkpoints' if args.as_run else ''}, "
          f"{args.threads or 'default'} threads, best of {args.rounds}")
    print(f"{'configuration':<48} {'samples/s':>10} {'x first':>8} {'minor faults':>13} "
          f"{'peak RSS MiB':>13}")
    for name, r in best.items():
        print(f"{name:<48} {r['samples_per_second']:>10.2f} "
              f"{r['samples_per_second'] / base:>8.3f} {r['minor_faults']:>13,} "
              f"{r['peak_rss_mib']:>13,.0f}")
    if args.out:
        Path(args.out).write_text(json.dumps({
            "cpu": cpu, "config": args.config, "steps": args.steps, "as_run": args.as_run,
            "threads": args.threads, "rounds": args.rounds, "rows": runs}, indent=2) + "\n")


if __name__ == "__main__":
    main()
