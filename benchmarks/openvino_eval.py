"""bertsent's evaluation (bf16 weights, 4,096-token batches) against OpenVINO on the same batches.

The issue's last evaluation lever: an inference runtime, worth a dependency only if it beats
bertsent's own scoring on the same CPU. Both score the same token ids in the same
longest-first batches of a trained model, timed in interleaved rounds (best counts), with
their accuracy and the largest difference in probabilities. OpenVINO gets the PyTorch model
through `openvino.convert_model` with dynamic batch and length, and its bf16 precision hint
(where the CPU has native bf16; pass --ov-precision f32 elsewhere).

    pip install openvino     # not a bertsent dependency
    python benchmarks/openvino_eval.py --model checkpoints/<run>/best --threads 1
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np
import torch
from eval_levers import test_sample  # this folder: the same reviews as eval_levers.py

from bertsent.export import load_trained
from bertsent.model import load_tokenizer
from bertsent.runtime import use_threads
from bertsent.sampling import longest_first
from bertsent.tokens import Collator

SHARED = Path(__file__).resolve().parents[2] / "shared"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a model folder written by bertsent")
    parser.add_argument("--data", default=str(SHARED / "data" / "imdb"))
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ov-precision", default="bf16", choices=("bf16", "f32"))
    args = parser.parse_args()
    import openvino as ov

    use_threads(args.threads)
    tokenizer = load_tokenizer(args.model)
    ids, labels = test_sample(args.data, args.samples, tokenizer, args.max_length)
    batches = longest_first(np.array([len(x) for x in ids]), 64, 4096, 8)
    collate = Collator(tokenizer.pad_token_id or 0, 8, args.max_length)
    inputs = [collate([(i, ids[i], 0) for i in b]) for b in batches]
    model = load_trained(args.model)
    bf16 = copy.deepcopy(model).to(torch.bfloat16)

    def torch_pass(probs: np.ndarray) -> None:
        with torch.inference_mode():
            for b, x in zip(batches, inputs, strict=True):
                logits = bf16(input_ids=x["input_ids"], attention_mask=x["attention_mask"]).logits
                probs[b] = torch.softmax(logits.float(), -1).numpy()

    start = time.perf_counter()
    dynamic = ov.PartialShape([-1, -1])
    converted = ov.convert_model(model, example_input={k: inputs[0][k] for k in (
        "input_ids", "attention_mask")}, input=[("input_ids", dynamic, ov.Type.i64),
                                               ("attention_mask", dynamic, ov.Type.i64)])
    request = ov.Core().compile_model(converted, "CPU", {
        "INFERENCE_NUM_THREADS": args.threads, "INFERENCE_PRECISION_HINT": args.ov_precision,
        "PERFORMANCE_HINT": "LATENCY"}).create_infer_request()
    prepare = time.perf_counter() - start

    def ov_pass(probs: np.ndarray) -> None:
        for b, x in zip(batches, inputs, strict=True):
            out = request.infer({"input_ids": x["input_ids"].numpy(),
                                 "attention_mask": x["attention_mask"].numpy()})
            probs[b] = torch.softmax(torch.from_numpy(out[0].copy()).float(), -1).numpy()

    passes = {"bertsent (torch, bf16 weights)": torch_pass,
              f"OpenVINO {ov.__version__.split('-')[0]} ({args.ov_precision})": ov_pass}
    probs = {name: np.zeros((len(ids), 2), np.float32) for name in passes}
    for name, run in passes.items():
        run(probs[name])  # warm-up, untimed
    rates: dict[str, list[float]] = {name: [] for name in passes}
    for _ in range(args.rounds):
        for name, run in passes.items():
            start = time.perf_counter()
            run(probs[name])
            rates[name].append(len(ids) / (time.perf_counter() - start))
    print(f"{len(ids)} reviews at {args.max_length}, {len(batches)} batches, threads "
          f"{args.threads}, best of {args.rounds} interleaved rounds; OpenVINO convert and "
          f"compile {prepare:.1f} s")
    reference = next(iter(rates))
    for name, got in rates.items():
        print(f"{name:<40} {max(got):6.1f} reviews/s (median {np.median(got):6.1f})  "
              f"x{max(got) / max(rates[reference]):.2f}  accuracy "
              f"{(probs[name].argmax(-1) == labels).mean():.4f}  max |dp| "
              f"{np.abs(probs[name] - probs[reference]).max():.1e}", flush=True)


if __name__ == "__main__":
    main()
