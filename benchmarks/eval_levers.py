"""Evaluation throughput of each inference lever, side by side in one process, on the same
reviews and the same model (issue: evaluation twice Trainer's).

Each configuration scores --samples IMDb test reviews with MiniLM (its pre-trained encoder and
a seeded random head: speed does not depend on the head) and reports reviews/s over a second
pass (the first warms the kernels, and pays any compile, timed separately), and the largest
difference of its probabilities from the baseline's, so that a lever that changes the answers
shows. The baseline is what bertsent.evaluate did before the token budget: longest-first
batches of 64 padded to a multiple of 8, fp32 weights under bf16 autocast (fp32 on CPUs without
native bf16). Each lever is timed --rounds times, interleaved with the others, and the best
pass counts: a neighbour's burst of work slows some passes, never speeds one up.

    OMP_NUM_THREADS=1 python benchmarks/eval_levers.py --samples 400 --max-length 256 --threads 1
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from bertsent.model import load_model, load_tokenizer
from bertsent.runtime import cpu_has_bf16, use_threads
from bertsent.tokens import Collator, encode_texts

SHARED = Path(__file__).resolve().parents[2] / "shared"


def batches_by_rows(lengths: np.ndarray, rows: int) -> list[list[int]]:
    order = np.argsort(-lengths, kind="stable")
    return [order[i: i + rows].tolist() for i in range(0, len(order), rows)]


def batches_by_tokens(lengths: np.ndarray, budget: int) -> list[list[int]]:
    """Longest first, as many rows as fit `budget` padded tokens (the first row's length)."""
    order = np.argsort(-lengths, kind="stable").tolist()
    out, i = [], 0
    while i < len(order):
        rows = max(1, budget // int(lengths[order[i]]))
        out.append(order[i: i + rows])
        i += rows
    return out


def score(model, ids, batches, collate, autocast) -> tuple[np.ndarray, float]:
    probs = np.zeros((len(ids), 2), np.float32)
    start = time.perf_counter()
    with torch.inference_mode():
        for chunk in batches:
            batch = collate([(i, ids[i], 0) for i in chunk])
            with autocast():
                logits = model(input_ids=batch["input_ids"],
                               attention_mask=batch["attention_mask"]).logits
            probs[chunk] = torch.softmax(logits.float(), -1).numpy()
    return probs, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(SHARED / "models" / "minilm-l6"))
    parser.add_argument("--data", default=str(SHARED / "data" / "imdb"))
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--only", help="comma-separated parts of lever names to run "
                        "(default: all; the first one run is the reference)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="timed passes of each lever, interleaved; the best one counts")
    args = parser.parse_args()
    use_threads(args.threads)
    texts = pq.read_table(Path(args.data) / "test.parquet", columns=["text"]).column(
        "text").to_pylist()
    texts = [texts[i] for i in np.random.default_rng(43).permutation(len(texts))[: args.samples]]
    tokenizer = load_tokenizer(args.model)
    ids = [np.asarray(x) for x in encode_texts(texts, tokenizer, args.max_length, "head+tail")]
    lengths = np.array([len(x) for x in ids])
    bf16 = cpu_has_bf16()
    torch.manual_seed(0)
    base = load_model(args.model, 2, 0.0, ["negative", "positive"]).eval()
    auto = (lambda: torch.autocast("cpu", torch.bfloat16)) if bf16 else contextlib.nullcontext
    plain = contextlib.nullcontext
    pad = tokenizer.pad_token_id or 0

    def bf16_weights():
        import copy
        return copy.deepcopy(base).to(torch.bfloat16) if bf16 else base

    def compiled(model):
        # Freezing folds the weights into the graph as constants, which lets inductor prepack
        # them for oneDNN (what IPEX used to provide); plain compile was no faster than eager
        # here. Every compiled lever is frozen: the switch is global, and graphs are reused.
        import torch._inductor.config as inductor
        inductor.freezing = True
        return torch.compile(model, dynamic=False)

    rows64 = batches_by_rows(lengths, 64)
    levers = {
        "baseline: 64 rows, autocast": (lambda: base, rows64, 8, auto),
        "bf16 weights": (bf16_weights, rows64, 8, plain),
        "16 rows, autocast": (lambda: base, batches_by_rows(lengths, 16), 8, auto),
        "token budget 4096, autocast": (lambda: base, batches_by_tokens(lengths, 4096), 8, auto),
        **{f"bf16 weights + token budget {b}": (bf16_weights, batches_by_tokens(lengths, b), 8,
                                                plain) for b in (2048, 4096, 8192)},
        "compile frozen + bf16 weights, buckets of 64": (
            lambda: compiled(bf16_weights()), rows64, 64, plain),
        "compile frozen + bf16 weights + budget 4096, buckets of 64": (
            lambda: compiled(bf16_weights()), batches_by_tokens(lengths, 4096), 64, plain),
    }
    only = set(args.only.split(",")) if args.only else None
    chosen = {k: v for k, v in levers.items() if not only or any(o in k for o in only)}
    print(f"{args.samples} reviews, max length {args.max_length}, mean {lengths.mean():.0f} "
          f"tokens, threads {torch.get_num_threads()}, bf16 native: {bf16}, best of "
          f"{args.rounds} interleaved rounds", flush=True)
    ready = {}
    for name, (make, batches, multiple, autocast) in chosen.items():
        model = make()  # compiled levers compile here, in their first (untimed) pass
        collate = Collator(pad, multiple, args.max_length)
        _, first = score(model, ids, batches, collate, autocast)
        ready[name] = (model, batches, collate, autocast, first)
    rates: dict[str, list[float]] = {name: [] for name in ready}
    probs_of = {}
    for _ in range(args.rounds):  # interleaved: a slow spell of the machine hits every lever
        for name, (model, batches, collate, autocast, _) in ready.items():
            probs_of[name], seconds = score(model, ids, batches, collate, autocast)
            rates[name].append(len(ids) / seconds)
    reference = next(iter(probs_of.values()))
    base_rate = max(next(iter(rates.values())))
    for name, got in rates.items():
        best, probs = max(got), probs_of[name]
        print(f"{name:<58} {best:7.1f} reviews/s (median {np.median(got):6.1f})  "
              f"x{best / base_rate:.2f}  first pass {ready[name][4]:6.1f} s  "
              f"max |dp| {np.abs(probs - reference).max():.1e}", flush=True)


if __name__ == "__main__":
    main()
