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

--precision fp32 scores as a CPU without native bf16 does (fp32 weights, no autocast, Trainer
without bf16), on any CPU; the levers named "bf16 weights" then keep the fp32 weights.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from compare_trainer import (  # benchmarks/, the script's folder
    add_precision_option,
    isa_line,
    runs_bf16,
)
from rows import pick

from bertsent.model import load_model, load_tokenizer
from bertsent.runtime import use_threads
from bertsent.sampling import longest_first
from bertsent.scoring import cut_to_first_token
from bertsent.tokens import Collator, encode_texts

Run = Callable[[], tuple[np.ndarray, float]]  # one timed pass: (probabilities, seconds)
SHARED = Path(__file__).resolve().parents[2] / "shared"


def batches_by_rows(lengths: np.ndarray, rows: int) -> list[list[int]]:
    """Longest first, `rows` a batch: evaluation before the token budget."""
    return longest_first(lengths, rows)


def batches_by_tokens(lengths: np.ndarray, budget: int) -> list[list[int]]:
    """Longest first, as many rows as fit `budget` tokens of the first row's length (no row
    limit, no rounding)."""
    return longest_first(lengths, len(lengths), budget, multiple=1)


def test_sample(data: str, samples: int, tokenizer, max_length: int
                ) -> tuple[list[np.ndarray], np.ndarray]:
    """`samples` test reviews drawn with seed 43 (the same ones in every benchmark that uses
    this), as head+tail token ids, and their labels."""
    table = pq.read_table(Path(data) / "test.parquet", columns=["text", "label"])
    rows = np.random.default_rng(43).permutation(table.num_rows)[:samples]
    texts = [table.column("text")[int(i)].as_py() for i in rows]
    ids = [np.asarray(x) for x in encode_texts(texts, tokenizer, max_length, "head+tail")]
    return ids, table.column("label").to_numpy()[rows]


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
    add_precision_option(parser, "the path of a CPU without native bf16")
    parser.add_argument("--only", help="comma-separated parts of lever names to run "
                        "(default: all; the first one run is the reference)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="timed passes of each lever, interleaved; the best one counts")
    parser.add_argument("--warmup", action=argparse.BooleanOptionalAction, default=True,
                        help="an untimed first pass of each lever (compiled levers compile in "
                        "it); --no-warmup with --rounds 1 times one pass each, for the full "
                        "test split")
    args = parser.parse_args()
    use_threads(args.threads)
    tokenizer = load_tokenizer(args.model)
    ids, labels = test_sample(args.data, args.samples, tokenizer, args.max_length)
    lengths = np.array([len(x) for x in ids])
    bf16 = runs_bf16(args.precision)
    torch.manual_seed(0)
    base = load_model(args.model, 2, 0.0, ["negative", "positive"]).eval()
    auto = (lambda: torch.autocast("cpu", torch.bfloat16)) if bf16 else contextlib.nullcontext
    plain = contextlib.nullcontext
    pad = tokenizer.pad_token_id or 0

    def bf16_weights():
        return copy.deepcopy(base).to(torch.bfloat16) if bf16 else base

    def compiled(model):
        # Freezing folds the weights into the graph as constants, which lets inductor prepack
        # them for oneDNN (what IPEX used to provide); plain compile was no faster than eager
        # here. Every compiled lever is frozen: the switch is global, and graphs are reused.
        import torch._inductor.config as inductor
        inductor.freezing = True
        return torch.compile(model, dynamic=False)

    def lever(make, batches, multiple, autocast) -> Callable[[], Run]:
        def prepare() -> Run:
            model = make()
            return functools.partial(score, model, ids, batches,
                                     Collator(pad, multiple, args.max_length), autocast)
        return prepare

    rows64 = batches_by_rows(lengths, 64)
    levers: dict[str, Callable[[], Run]] = {
        "baseline: 64 rows, autocast": lever(lambda: base, rows64, 8, auto),
        "bertsent's evaluation as configured": lambda: bertsent_pass(base, ids, args.max_length,
                                                                     pad, bf16),
        "bertsent's evaluation, one batch at a time": lambda: bertsent_pass(
            base, ids, args.max_length, pad, bf16, workers=1),
        "Trainer at its best: predict, 64 rows, autocast": lambda: trainer_pass(
            copy.deepcopy(base), tokenizer, ids, bf16),  # its own: accelerate wraps forward
        "bf16 weights": lever(bf16_weights, rows64, 8, plain),
        "16 rows, autocast": lever(lambda: base, batches_by_rows(lengths, 16), 8, auto),
        "token budget 4096, autocast": lever(lambda: base, batches_by_tokens(lengths, 4096), 8,
                                             auto),
        **{f"bf16 weights + token budget {b}": lever(bf16_weights, batches_by_tokens(lengths, b),
                                                     8, plain)
           for b in (2048, 4096, 8192, 16384, 32768)},
        "first-token last layer + bf16 weights + budget 4096": lever(
            lambda: cut_to_first_token(bf16_weights()), batches_by_tokens(lengths, 4096), 8,
            plain),
        "compile frozen + bf16 weights, buckets of 64": lever(
            lambda: compiled(bf16_weights()), rows64, 64, plain),
        "compile frozen + bf16 weights + budget 4096, buckets of 64": lever(
            lambda: compiled(bf16_weights()), batches_by_tokens(lengths, 4096), 64, plain),
    }
    names = pick(levers, args.only, parser)
    chosen = {k: v for k, v in levers.items() if k in names}
    print(f"{args.samples} reviews, max length {args.max_length}, mean {lengths.mean():.0f} "
          f"tokens, threads {torch.get_num_threads()}, bf16 native: {bf16}, best of "
          f"{args.rounds} interleaved rounds{isa_line()}", flush=True)
    ready, first = {}, {}
    for name, prepare in chosen.items():
        ready[name] = prepare()
        first[name] = ready[name]()[1] if args.warmup else float("nan")  # compiles here
    rates: dict[str, list[float]] = {name: [] for name in ready}
    probs_of = {}
    for _ in range(args.rounds):  # interleaved: a slow spell of the machine hits every lever
        for name, run in ready.items():
            probs_of[name], seconds = run()
            rates[name].append(len(ids) / seconds)
    reference = next(iter(probs_of.values()))
    base_rate = max(next(iter(rates.values())))
    for name, got in rates.items():
        best, probs = max(got), probs_of[name]
        print(f"{name:<58} {best:7.1f} reviews/s (median {np.median(got):6.1f})  "
              f"x{best / base_rate:.2f}  first pass {first[name]:6.1f} s  "
              f"max |dp| {np.abs(probs - reference).max():.1e}  "
              f"accuracy {(probs.argmax(-1) == labels).mean():.4f}", flush=True)


def bertsent_pass(model, ids, max_length: int, pad: int, bf16: bool,
                  workers: int | None = None) -> Run:
    """What train's validation and test passes and bertsent.evaluate run, with the defaults
    (`workers`: batches scored at once instead of bertsent's choice, one per thread)."""
    from unittest import mock

    from bertsent import engine
    from bertsent.config import TrainConfig
    from bertsent.engine import predict_logits
    from bertsent.scoring import for_scoring
    from bertsent.tokens import EncodedDataset, eval_loader

    cfg = TrainConfig()
    loader = eval_loader(EncodedDataset(ids), cfg.eval_batch_size, pad, max_length,
                         tokens=cfg.eval_tokens)
    device = torch.device("cpu")

    def run() -> tuple[np.ndarray, float]:
        start = time.perf_counter()
        scoring, autocast = for_scoring(model, "bf16" if bf16 else "fp32", device)
        chosen = mock.patch.object(engine, "workers_for", lambda *_: workers) if workers \
            else contextlib.nullcontext()
        with chosen:
            logits, _, order = predict_logits(scoring, loader, device, autocast, show=False)
        seconds = time.perf_counter() - start
        probs = np.zeros((len(ids), 2), np.float32)
        probs[order] = torch.softmax(torch.from_numpy(logits), -1).numpy()
        return probs, seconds
    return run


def trainer_pass(model, tokenizer, ids, bf16: bool) -> Run:
    """Trainer.predict as compare_trainer.py's "Trainer at its best" evaluates: eval batch 64,
    bf16 autocast where native, length-grouped sampling, dynamic padding to a multiple of 8,
    on the same token ids."""
    import inspect
    import tempfile

    from datasets import Dataset
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    params = inspect.signature(TrainingArguments).parameters
    grouping = ({"train_sampling_strategy": "group_by_length"}
                if "train_sampling_strategy" in params else {"group_by_length": True})
    args = TrainingArguments(output_dir=tempfile.mkdtemp(prefix="eval-levers-"),
                             per_device_eval_batch_size=64, bf16=bf16, use_cpu=True,
                             report_to="none", disable_tqdm=True, **grouping)
    trainer = Trainer(model=model, args=args, processing_class=tokenizer,
                      data_collator=DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8))
    ds = Dataset.from_dict({"input_ids": [x.tolist() for x in ids],
                            "attention_mask": [[1] * len(x) for x in ids],
                            "labels": [0] * len(ids)})

    def run() -> tuple[np.ndarray, float]:
        start = time.perf_counter()
        out = trainer.predict(ds)
        seconds = time.perf_counter() - start
        logits = out.predictions[0] if isinstance(out.predictions, tuple) else out.predictions
        # with length grouping, predict returns the rows in the sampler's order, not the
        # dataset's: the sampler is seeded the same on every call, so its order puts them back
        order = list(trainer._get_eval_sampler(ds) or range(len(ds)))
        probs = np.zeros((len(ids), 2), np.float32)
        probs[order] = torch.softmax(torch.from_numpy(np.asarray(logits, np.float32)), -1).numpy()
        return probs, seconds
    return run


if __name__ == "__main__":
    main()
