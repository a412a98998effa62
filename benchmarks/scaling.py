"""Data-parallel scaling on this machine: 1 process vs 2 torchrun processes (gloo, CPU).

MiniLM-L3, the same reviews and global batch (16) in every row; bertsent's own
train_samples_per_second (all ranks' samples / training time). Efficiency = 2-process
throughput / (2 x one single-threaded process).

    python benchmarks/scaling.py          # about 5 minutes on a 2-core CPU
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def run(nproc: int, threads: int, args: argparse.Namespace) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone",
                     f"--nproc_per_node={nproc}"] if nproc > 1 else [sys.executable])
        cmd = [*launcher, "-m", "bertsent.train", "--model", args.model, "--data", args.data,
               "--train-samples", str(args.train_samples), "--val-samples", "16",
               "--eval-samples", "16", "--batch-size", str(16 // nproc), "--max-length", "256",
               "--sanity-eval-batches", "0", "--save-every", "0", "--run-name", "scale",
               "--checkpoint-dir", f"{tmp}/c", "--runs-dir", f"{tmp}/r"]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT, env=env)
        line = [x for x in out.stdout.splitlines() if x.startswith("{")][-1]
        return json.loads(line)["train_samples_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(SHARED / "models" / "minilm-l3"))
    parser.add_argument("--data", default=str(SHARED / "data" / "imdb"))
    parser.add_argument("--train-samples", type=int, default=640)
    args = parser.parse_args()
    one_1 = run(1, 1, args)
    one_2 = run(1, 2, args)
    two_1 = run(2, 1, args)
    print(f"{'setup':<36} {'samples/s':>10}")
    print(f"{'1 process x 1 thread':<36} {one_1:>10.1f}")
    print(f"{'1 process x 2 threads':<36} {one_2:>10.1f}")
    print(f"{'2 processes (torchrun) x 1 thread':<36} {two_1:>10.1f}")
    print(f"scaling efficiency 2 vs 1 process: {two_1 / (2 * one_1):.0%}; "
          f"2 processes vs 1 process using both cores: x{two_1 / one_2:.2f}")


if __name__ == "__main__":
    main()
