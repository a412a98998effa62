"""Where one bertsent training step spends its time, and the attention kernels compared.

One optimizer step of MiniLM-L6 (bf16 autocast, or fp32 with --precision fp32 on CPUs without
native bf16; dropout 0, fused AdamW, gradient clipping, `--attention auto`, freed memory
reused) on a batch of
8 x 256 tokens with 30 padding tokens per row, as bertsent runs it; then a torch.profiler table
of the top operators, then samples/s with SDPA's default (flash) kernel, SDPA's math backend,
eager attention and the attention written out as matmuls (bertsent.attention), with and
without frozen word embeddings.

    OMP_NUM_THREADS=1 python benchmarks/profile_step.py     # about 2 minutes
    OMP_NUM_THREADS=1 python benchmarks/profile_step.py --precision fp32   # AVX2-only CPUs
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.profiler import ProfilerActivity, profile
from transformers import AutoModelForSequenceClassification

from bertsent.attention import use_attention
from bertsent.runtime import reuse_freed_memory

SHARED = Path(__file__).resolve().parents[2] / "shared"


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


def load(model: str, attn: str):
    """attn: eager, sdpa, or bertsent's --attention auto/matmul over SDPA."""
    m = AutoModelForSequenceClassification.from_pretrained(
        model, num_labels=2, attn_implementation="eager" if attn == "eager" else "sdpa",
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    if attn in ("auto", "matmul"):
        use_attention(m, attn)
    return m.train()


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
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12,
                                    max_name_column_width=55))
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
