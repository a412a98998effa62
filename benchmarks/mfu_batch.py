"""Model FLOP utilisation of a bertsent training step against the batch size: how far the step
of 8 reviews that bertsent's recipe trains with is from the matmul peak, and what a larger
batch would buy.

One optimizer step of MiniLM-L6 as bertsent trains it (bf16 autocast where native, else fp32;
dropout 0, the attention written out, fused AdamW, clipping, freed memory reused) on rows of
--length tokens of which the last 30 are padding, for each --batches size; the best of
--reps steps counts. FLOPs are compare_trainer.py's: 6 x non-embedding parameters x real
tokens + 3 x layers x 4 x L^2 x hidden per row of L real tokens. The peak is the best of a
2048^3 and a 4096^3 matmul in the same process and precision.

    python benchmarks/mfu_batch.py                      # two threads, about 3 minutes
    python benchmarks/mfu_batch.py --threads 1 --batches 8,32
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from compare_trainer import matmul_peak  # noqa: E402
from profile_step import load, make_step  # noqa: E402

import bertsent.model  # noqa: E402,F401 - quiets transformers' load reports
from bertsent.runtime import cpu_has_bf16, device_name, reuse_freed_memory  # noqa: E402

PADDING = 30  # make_step masks the last 30 tokens of every row


def step_seconds(step, reps: int) -> float:
    step()  # warm-up: oneDNN picks its kernels for these shapes
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT.parent / "shared" / "models" / "minilm-l6"))
    parser.add_argument("--batches", default="8,16,32,64")
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--reps", type=int, default=4)
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    reuse_freed_memory()
    precision = "bf16" if cpu_has_bf16() else "fp32"
    peak, n = matmul_peak("bfloat16" if precision == "bf16" else "float32")
    model = load(args.model, "auto")
    cfg = model.config
    params = sum(p.numel() for name, p in model.named_parameters() if ".embeddings." not in name)
    real = args.length - PADDING
    per_row = 6.0 * params * real + 3.0 * cfg.num_hidden_layers * 4.0 * real**2 * cfg.hidden_size
    print(f"{device_name(torch.device('cpu'))}, {torch.get_num_threads()} threads, {precision}; "
          f"{precision} matmul peak {peak:.0f} GFLOP/s (n={n}); rows of {args.length} tokens, "
          f"{real} real", flush=True)
    print(f"{'batch':>6} {'ms/step':>9} {'samples/s':>10} {'GFLOP/s':>9} {'MFU':>7}")
    for batch in (int(b) for b in args.batches.split(",")):
        seconds = step_seconds(make_step(model, batch, args.length, precision=precision),
                               args.reps)
        gflops = per_row * batch / seconds / 1e9
        print(f"{batch:>6} {seconds * 1000:>9.0f} {batch / seconds:>10.2f} {gflops:>9.0f} "
              f"{gflops / peak:>7.1%}", flush=True)


if __name__ == "__main__":
    main()
