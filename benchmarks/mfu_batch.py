"""Model FLOP utilisation of a bertsent training step against the batch size: how far the step
of 8 reviews that bertsent's recipe trains with is from the matmul peak, and what a larger
batch would buy, and how far the step's own matmuls are from it.

One optimizer step of MiniLM-L6 as bertsent trains it (bf16 autocast where native, else fp32;
dropout 0, the attention written out, the last layer cut to the first token, fused AdamW,
clipping, freed memory reused) on rows of --length tokens of which the last 30 are padding,
for each --batches size; the best of --reps steps counts. FLOPs are compare_trainer.py's, the
model's whole forward and backward: 6 x non-embedding parameters x real tokens + 3 x layers x
4 x L^2 x hidden per row of L real tokens. "FLOPs run" is what the step's matmuls actually
do against that count: the padding is computed too (113% for the whole step at 226 real of
256), and the cut step skips most of the last layer. The peak is the best of a
2048^3 and a 4096^3 matmul in the same process and precision. --whole-last-layer adds the
step as it ran before the cut, side by side.

The "matmuls alone" columns are the ceiling: every mm, addmm and bmm of one step (forward,
backward), recorded with their shapes, strides and dtypes and replayed back to back on fresh
tensors (best of --reps), with nothing else in between. "MFU if only matmuls" is the step's
model FLOPs over that time: the utilisation a step would reach if everything outside the
matmuls (casts, softmax, GELU, LayerNorm, adds, AdamW) took no time at all.

    python benchmarks/mfu_batch.py                      # two threads, about 3 minutes
    python benchmarks/mfu_batch.py --threads 1 --batches 8,32
    python benchmarks/mfu_batch.py --batches 8 --compile   # + the same step torch.compile'd

--compile adds a row per batch for the model under torch.compile (dynamic=False, as
`bertsent.train --compile` runs it), loaded afresh: its first step's seconds are the compile.
--by-kind replays the matmuls in three groups, each alone: the forward and input-gradient
products, the weight gradients (grad^T @ x: the first operand a transposed view) and the
attention's batched products, with each group's rate against the peak.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from compare_trainer import (  # noqa: E402
    add_precision_option,
    isa_line,
    matmul_peak,
    runs_bf16,
)
from profile_step import load, make_step  # noqa: E402

import bertsent.model  # noqa: E402,F401 - quiets transformers' load reports
from bertsent.runtime import device_name, reuse_freed_memory  # noqa: E402

PADDING = 30  # make_step masks the last 30 tokens of every row


MATMULS = {torch.ops.aten.mm.default: 0, torch.ops.aten.addmm.default: 1,
           torch.ops.aten.bmm.default: 0, torch.ops.aten.baddbmm.default: 1}  # op: first operand


class MatmulRecorder(TorchDispatchMode):
    """Records every matmul a step dispatches (after autocast, so in the dtype it ran in)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in MATMULS:
            spec = [(a.shape, a.stride(), a.dtype) if isinstance(a, torch.Tensor) else a
                    for a in args]
            self.calls.append((func, spec, kwargs or {}))
        return func(*args, **(kwargs or {}))


def recorded_matmuls(step) -> list[tuple]:
    with MatmulRecorder() as recorder:
        step()
    return recorder.calls


def matmul_flops(calls: list[tuple]) -> float:
    """2 x M x N x K (x batch) for each recorded call."""
    total = 0.0
    for func, spec, _ in calls:
        a, b = spec[MATMULS[func]][0], spec[MATMULS[func] + 1][0]
        total += 2.0 * a.numel() * b[-1]
    return total


def kind(call: tuple) -> str:
    """Which of a step's products a recorded matmul is: a weight gradient reduces over the
    tokens, with its first operand a transposed view of the output's gradient (grad^T @ x)."""
    func, spec, _ = call
    if func in (torch.ops.aten.bmm.default, torch.ops.aten.baddbmm.default):
        return "attention (bmm)"
    shape, stride, _ = spec[MATMULS[func]]
    return "weight gradients" if stride[0] == 1 and shape[1] > 1 and stride[1] > 1 \
        else "forward and input gradients"


def by_kind(calls: list[tuple], reps: int) -> dict[str, tuple[float, float]]:
    """{kind: (seconds, GFLOP/s)} of the step's matmuls replayed alone, one kind at a time."""
    kinds: dict[str, list[tuple]] = {}
    for call in calls:
        kinds.setdefault(kind(call), []).append(call)
    out = {}
    for name, group in kinds.items():
        seconds = replay_seconds(group, reps)
        out[name] = (seconds, matmul_flops(group) / seconds / 1e9)
    return out


def replay_seconds(calls: list[tuple], reps: int) -> float:
    """The recorded matmuls back to back on fresh tensors of the same layout: best of reps."""
    made = [(func, [torch.empty_strided(*a[:2], dtype=a[2]).normal_() if isinstance(a, tuple)
                    else a for a in spec], kwargs) for func, spec, kwargs in calls]

    def replay() -> None:
        for func, args, kwargs in made:
            func(*args, **kwargs)

    return step_seconds(replay, reps)


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
    parser.add_argument("--compile", action="store_true", help="also time the compiled step")
    parser.add_argument("--whole-last-layer", action="store_true",
                        help="also time the step whose last layer computes every position "
                        "(--no-cut-last-layer), side by side")
    parser.add_argument("--by-kind", action="store_true",
                        help="also replay the step's forward and input-gradient products, its "
                        "weight gradients and its attention products apart")
    add_precision_option(parser, "the step of a CPU without native bf16, against the fp32 peak")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    reuse_freed_memory()
    precision = "bf16" if runs_bf16(args.precision) else "fp32"
    peak, n = matmul_peak("bfloat16" if precision == "bf16" else "float32")
    models = {"cut": load(args.model, "auto")}
    if args.whole_last_layer:
        models["whole"] = load(args.model, "auto", cut=False)
    cfg = models["cut"].config
    params = sum(p.numel() for name, p in models["cut"].named_parameters()
                 if ".embeddings." not in name)
    real = args.length - PADDING
    per_row = 6.0 * params * real + 3.0 * cfg.num_hidden_layers * 4.0 * real**2 * cfg.hidden_size
    print(f"{device_name(torch.device('cpu'))}{isa_line()}, {torch.get_num_threads()} threads, "
          f"{precision}; "
          f"{precision} matmul peak {peak:.0f} GFLOP/s (n={n}); rows of {args.length} tokens, "
          f"{real} real", flush=True)
    print(f"{'batch':>6} {'last layer':>10} {'ms/step':>9} {'samples/s':>10} {'GFLOP/s':>9} "
          f"{'MFU':>7} {'FLOPs run':>9} | {'matmuls alone: ms':>17} {'share of step':>13} "
          f"{'GFLOP/s':>9} {'of peak':>8} {'MFU if only matmuls':>19}")
    for batch in (int(b) for b in args.batches.split(",")):
        for name, model in models.items():
            step = make_step(model, batch, args.length, precision=precision)
            seconds = step_seconds(step, args.reps)
            calls = recorded_matmuls(step)
            alone = replay_seconds(calls, args.reps)
            gflops = per_row * batch / seconds / 1e9
            run = matmul_flops(calls)
            mm_gflops = run / alone / 1e9
            print(f"{batch:>6} {name:>10} {seconds * 1000:>9.0f} {batch / seconds:>10.2f} "
                  f"{gflops:>9.0f} {gflops / peak:>7.1%} "
                  f"{run / (per_row * batch):>9.1%} | {alone * 1000:>17.0f} "
                  f"{alone / seconds:>13.0%} {mm_gflops:>9.0f} {mm_gflops / peak:>8.1%} "
                  f"{per_row * batch / alone / 1e9 / peak:>19.1%}", flush=True)
            if args.by_kind:
                print("       matmuls alone, by kind: " + "; ".join(
                    f"{kind_name} {sec * 1000:.0f} ms at {rate:.0f} GFLOP/s ({rate / peak:.0%})"
                    for kind_name, (sec, rate) in by_kind(calls, args.reps).items()), flush=True)
        if args.compile:
            compiled = make_step(torch.compile(load(args.model, "auto"), dynamic=False), batch,
                                 args.length, precision=precision)
            start = time.perf_counter()
            compiled()
            first = time.perf_counter() - start
            seconds = step_seconds(compiled, args.reps)
            gflops = per_row * batch / seconds / 1e9
            print(f"{batch:>6} {'compiled':>10} {seconds * 1000:>9.0f} {batch / seconds:>10.2f} "
                  f"{gflops:>9.0f} {gflops / peak:>7.1%} | its first step took {first:.1f} s",
                  flush=True)


if __name__ == "__main__":
    main()
