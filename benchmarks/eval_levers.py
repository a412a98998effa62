"""Evaluation throughput of each inference lever, side by side in one process, on the same
reviews and the same model (issue: evaluation twice Trainer's).

Each configuration scores --samples IMDb test reviews with MiniLM (its pre-trained encoder and
a seeded random head: speed does not depend on the head) and reports reviews/s over a second
pass (the first warms the kernels, and pays any compile, timed separately), and the largest
difference of its probabilities from the baseline's, so that a lever that changes the answers
shows. The baseline is what bertsent.evaluate does today: longest-first batches of 64 padded
to a multiple of 8, fp32 weights under bf16 autocast (fp32 on CPUs without native bf16).

    OMP_NUM_THREADS=1 python benchmarks/eval_levers.py --samples 500 --max-length 256
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
    parser.add_argument("--only", help="comma-separated lever names to run (default: all)")
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
        return torch.compile(model, dynamic=False)

    levers = {
        "baseline: 64 rows, autocast": (lambda: base, batches_by_rows(lengths, 64), 8, auto),
        "bf16 weights": (bf16_weights, batches_by_rows(lengths, 64), 8, plain),
        "token budget 8192, autocast": (lambda: base, batches_by_tokens(lengths, 8192), 8,
                                        auto),
        "bf16 weights + token budget 8192": (bf16_weights, batches_by_tokens(lengths, 8192), 8,
                                             plain),
        "compile, buckets of 64, autocast": (lambda: compiled(base), batches_by_rows(lengths, 64),
                                             64, auto),
        "compile + bf16 weights, buckets of 64": (lambda: compiled(bf16_weights()),
                                                  batches_by_rows(lengths, 64), 64, plain),
    }
    only = set(args.only.split(",")) if args.only else None
    print(f"{args.samples} reviews, max length {args.max_length}, mean {lengths.mean():.0f} "
          f"tokens, threads {torch.get_num_threads()}, bf16 native: {bf16}")
    reference = None
    for name, (make, batches, multiple, autocast) in levers.items():
        if only and not any(o in name for o in only):
            continue
        model = make()
        collate = Collator(pad, multiple, args.max_length)
        _, first = score(model, ids, batches, collate, autocast)
        probs, seconds = score(model, ids, batches, collate, autocast)
        if reference is None:
            reference, base_rate = probs, len(ids) / seconds
        rate = len(ids) / seconds
        print(f"{name:<42} {rate:7.1f} reviews/s  x{rate / base_rate:.2f}  first pass "
              f"{first:6.1f} s  max |dp| {np.abs(probs - reference).max():.1e}  agree "
              f"{(probs.argmax(1) == reference.argmax(1)).mean():.4f}", flush=True)


if __name__ == "__main__":
    main()
