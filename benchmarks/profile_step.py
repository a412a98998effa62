"""Where one bertsent training step spends its time, and the attention kernels compared.

One optimizer step of MiniLM-L6 (bf16 autocast, or fp32 with --precision fp32 on CPUs without
native bf16; dropout 0, fused AdamW, gradient clipping, `--attention auto`, the last layer
cut to the first token, freed memory reused) on a batch of
8 x 256 tokens with 30 padding tokens per row, as bertsent runs it; then the top operators by
wall time inside the step, then samples/s with SDPA's default (flash) kernel, SDPA's math
backend, eager attention and the attention written out as matmuls (bertsent.attention), with
and without frozen word embeddings.

The operators are timed by a dispatch mode (`OpTimer`: a clock around each aten call, which on
a CPU returns when the work is done), not by torch.profiler: on two threads the profiler made
this step three times slower (737 against 250 ms) and moved the shares (the attention's
batched matmuls 27% under it, 11% without), on one thread 20% slower. The table prints the
step's plain time beside the sum of the operators, so the timer's own cost shows.

    python benchmarks/profile_step.py                          # torch's threads, ~2 minutes
    OMP_NUM_THREADS=1 python benchmarks/profile_step.py --precision fp32   # AVX2-only CPUs
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import AutoModelForSequenceClassification

from bertsent.attention import use_attention
from bertsent.firsttoken import cut_to_first_token
from bertsent.runtime import reuse_freed_memory

SHARED = Path(__file__).resolve().parents[2] / "shared"


class OpTimer(TorchDispatchMode):
    """Wall seconds and calls of each aten operator dispatched inside the mode (after
    autograd and autocast: the kernels a step runs, forward and backward)."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: dict[str, float] = collections.defaultdict(float)
        self.calls: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        start = time.perf_counter()
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        self.seconds[name] += time.perf_counter() - start
        self.calls[name] += 1
        return out


def op_table(step, reps: int = 3, rows: int = 16) -> str:
    """The step's plain time (best of reps), then its operators, from the fastest timed step."""
    plain, timed = float("inf"), (float("inf"), None)
    for _ in range(reps):
        start = time.perf_counter()
        step()
        plain = min(plain, time.perf_counter() - start)
        with OpTimer() as timer:
            start = time.perf_counter()
            step()
            timed = min(timed, (time.perf_counter() - start, timer), key=lambda t: t[0])
    seconds, timer = timed
    lines = [f"step: {plain * 1000:.0f} ms plain, {seconds * 1000:.0f} ms timed, of which "
             f"{sum(timer.seconds.values()) * 1000:.0f} ms in operators",
             f"{'operator':<32} {'ms':>8} {'share':>7} {'calls':>6}"]
    for name, sec in sorted(timer.seconds.items(), key=lambda kv: -kv[1])[:rows]:
        lines.append(f"{name:<32} {sec * 1000:>8.1f} {sec / seconds:>7.1%} "
                     f"{timer.calls[name]:>6}")
    return "\n".join(lines)


def make_step(model, batch: int, length: int, backend=None, precision: str = "bf16"):
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5, fused=True)
    x = torch.randint(1000, 20000, (batch, length))
    mask = torch.ones_like(x)
    mask[:, length - 30:] = 0
    y = torch.randint(0, 2, (batch,))
    ctx = (lambda: sdpa_kernel(backend)) if backend else contextlib.nullcontext

    def step() -> None:
        with ctx(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits = model(input_ids=x, attention_mask=mask).logits
        with ctx():
            F.cross_entropy(logits.float(), y).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def samples_per_second(step, batch: int, reps: int = 4) -> float:
    step()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return batch / min(times)


def load(model: str, attn: str, cut: bool = True):
    """attn: eager, sdpa, or bertsent's --attention auto/matmul over SDPA; cut: the last layer
    computes only the first token, as bertsent trains (--cut-last-layer)."""
    m = AutoModelForSequenceClassification.from_pretrained(
        model, num_labels=2, attn_implementation="eager" if attn == "eager" else "sdpa",
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    if attn in ("auto", "matmul"):
        use_attention(m, attn)
    m.train()
    return cut_to_first_token(m) if cut else m


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(SHARED / "models" / "minilm-l6"))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    parser.add_argument("--no-reuse-memory", action="store_true",
                        help="glibc's defaults: every large block mapped and zeroed afresh")
    args = parser.parse_args()
    reuse_freed_memory(not args.no_reuse_memory)  # as bertsent's CPU runs do
    model = load(args.model, "auto")  # as bertsent trains
    step = make_step(model, args.batch, args.length, precision=args.precision)
    step()
    print(f"{torch.get_num_threads()} threads, {args.precision}, batch {args.batch} x "
          f"{args.length} tokens")
    print(op_table(step), flush=True)
    for attn, backend in (("sdpa", None), ("sdpa", SDPBackend.MATH), ("eager", None),
                          ("matmul", None)):
        model = load(args.model, attn)
        for freeze in (False, True):
            model.get_input_embeddings().weight.requires_grad_(not freeze)
            sps = samples_per_second(make_step(model, args.batch, args.length, backend,
                                               args.precision), args.batch)
            name = f"{attn}{'/' + backend.name.lower() if backend else ''}"
            print(f"{name:<12} frozen embeddings={freeze!s:<5} {sps:6.1f} samples/s",
                  flush=True)


if __name__ == "__main__":
    main()
