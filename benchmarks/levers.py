"""Training throughput of each performance lever, one at a time, on the same reviews.

Each configuration trains MiniLM-L6 for --steps optimizer steps (batch 8, max length 256, real
IMDb reviews) in its own subprocess and reports bertsent's own train_samples_per_second (time
spent in optimizer steps, data loading included; evaluation and checkpoints excluded). The
first configuration is the plain loop (fp32, random batches padded to their longest review);
each next row adds one lever.

    python benchmarks/levers.py                       # about 10 minutes on a 2-core CPU
    python benchmarks/levers.py --steps 10 --model ../shared/models/minilm-l3   # quicker
    python benchmarks/levers.py --only "no dropout,reused" --rounds 3   # one lever, side by side
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from rows import pick  # benchmarks/, the script's folder

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"

_WHOLE = ["--no-cut-last-layer"]  # the rows before the last layer was cut to the first token
_OLD = ["--attention", "sdpa", "--no-reuse-memory", *_WHOLE]  # the rows before these levers
LEVERS: list[tuple[str, list[str]]] = [
    ("plain loop: fp32, random batches, dropout 0.1",
     ["--precision", "fp32", "--no-group-by-length", "--dropout", "0.1", *_OLD]),
    ("+ length-grouped batches", ["--precision", "fp32", "--dropout", "0.1", *_OLD]),
    ("+ bf16 autocast (AMX)", ["--precision", "bf16", "--dropout", "0.1", *_OLD]),
    ("+ no dropout (fused SDPA attention kernel)",
     ["--precision", "bf16", "--dropout", "0", *_OLD]),
    ("+ freed memory reused (no page faults)",
     ["--precision", "bf16", "--dropout", "0", "--attention", "sdpa", *_WHOLE]),
    ("+ attention written out as matmuls", ["--precision", "bf16", "--dropout", "0", *_WHOLE]),
    ("+ last layer for the first token only", ["--precision", "bf16", "--dropout", "0"]),
    ("+ sparse word-embedding updates (lazy AdamW)",
     ["--precision", "bf16", "--dropout", "0", "--sparse-embeddings"]),
    ("+ frozen word embeddings (half the AdamW update)",
     ["--precision", "bf16", "--dropout", "0", "--freeze-embeddings"]),
]


def run(model: str, data: str, steps: int, extra: list[str], threads: int | None) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "bertsent.train", "--model", model, "--data", data,
               "--train-samples", str(steps * 8), "--val-samples", "8", "--test-samples", "8",
               "--max-steps", str(steps), "--sanity-eval-batches", "0", "--save-every", "0",
               "--run-name", "lever", "--checkpoint-dir", f"{tmp}/c", "--runs-dir", f"{tmp}/r",
               *extra]
        env = None
        if threads:
            import os

            env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT, env=env)
        return json.loads(out.stdout.strip().splitlines()[-1])["train_samples_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(SHARED / "models" / "minilm-l6"))
    parser.add_argument("--data", default=str(SHARED / "data" / "imdb"))
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--compile", action="store_true", help="also time --compile")
    parser.add_argument("--only", help="comma-separated parts of row names to run (default: "
                        "all; the first one run is the reference)")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each row, interleaved "
                        "(a slow spell of the machine hits every row); the best one counts")
    args = parser.parse_args()
    defaults = next(extra for name, extra in LEVERS if "first token" in name)  # train's defaults
    levers = LEVERS + ([("+ torch.compile (on the defaults)", [*defaults, "--compile"])]
                       if args.compile else [])
    chosen = pick([name for name, _ in levers], args.only, parser)
    levers = [(n, e) for n, e in levers if n in chosen]
    rates: dict[str, list[float]] = {name: [] for name, _ in levers}
    for _ in range(args.rounds):
        for name, extra in levers:
            rates[name].append(run(args.model, args.data, args.steps, extra, args.threads))
    base = max(next(iter(rates.values())))
    print(f"{'configuration':<52} {'samples/s':>10} {'x first':>8}  (best of {args.rounds})")
    for name, got in rates.items():
        print(f"{name:<52} {max(got):>10.1f} {max(got) / base:>8.2f}", flush=True)


if __name__ == "__main__":
    main()
