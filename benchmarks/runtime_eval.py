"""bertsent's evaluation (bf16 weights, 4,096-token batches) against inference runtimes.

The issue's last evaluation lever: an inference runtime, worth a dependency only if it beats
bertsent's own scoring on the same CPU. Each runtime scores the same token ids in the same
longest-first batches of a trained model, timed in interleaved rounds (best counts), with its
accuracy and its largest difference in probabilities from the fp32 PyTorch model.

- `openvino`: the PyTorch model through `openvino.convert_model` with dynamic batch and length,
  and its bf16 precision hint (where the CPU has native bf16; `--ov-precision f32` elsewhere).
- `onnxruntime`: the model exported to ONNX with eager attention (so that ONNX Runtime's BERT
  optimizer fuses it into its `Attention` operator, with LayerNorm and GELU), fp32: ONNX
  Runtime's CPU provider has no bf16 matmuls on x86.
- `onnxruntime-int8`: the same graph with its weights quantised to int8 (dynamic activations).

    pip install openvino onnxruntime onnx onnxscript   # not bertsent dependencies
    python benchmarks/runtime_eval.py --model checkpoints/<run>/best --threads 1
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from eval_levers import test_sample  # this folder: the same reviews as eval_levers.py

from bertsent.export import load_trained
from bertsent.metrics import softmax
from bertsent.model import load_tokenizer
from bertsent.runtime import use_threads
from bertsent.sampling import longest_first
from bertsent.tokens import Collator

SHARED = Path(__file__).resolve().parents[2] / "shared"
RUNTIMES = ("openvino", "onnxruntime", "onnxruntime-int8")
Batches = list[tuple[np.ndarray, dict[str, np.ndarray]]]
Pass = Callable[[np.ndarray], None]


def torch_pass(model, batches: Batches) -> Pass:
    def run(probs: np.ndarray) -> None:
        with torch.inference_mode():
            for rows, x in batches:
                probs[rows] = softmax(model(**{k: torch.from_numpy(v) for k, v in x.items()})
                                      .logits.float().numpy())
    return run


def openvino_pass(model, batches: Batches, threads: int, precision: str) -> tuple[str, Pass]:
    import openvino as ov

    dynamic = ov.PartialShape([-1, -1])
    converted = ov.convert_model(
        model, example_input={k: torch.from_numpy(v) for k, v in batches[0][1].items()},
        input=[(name, dynamic, ov.Type.i64) for name in batches[0][1]])
    request = ov.Core().compile_model(converted, "CPU", {
        "INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": precision,
        "PERFORMANCE_HINT": "LATENCY"}).create_infer_request()

    def run(probs: np.ndarray) -> None:
        for rows, x in batches:
            probs[rows] = softmax(request.infer(x)[0].copy())  # OpenVINO reuses its buffer
    return f"OpenVINO {ov.__version__.split('-')[0]} ({precision})", run


def onnx_pass(model, batches: Batches, threads: int, int8: bool, folder: Path
              ) -> tuple[str, Pass]:
    import onnxruntime as ort
    from onnxruntime.transformers import optimizer

    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")  # the form ONNX Runtime's BERT fusion recognises
    names = list(batches[0][1])
    torch.onnx.export(eager, tuple(torch.from_numpy(v) for v in batches[0][1].values()),
                      folder / "model.onnx", input_names=names, output_names=["logits"],
                      dynamic_axes={n: {0: "batch", 1: "length"} for n in names},
                      opset_version=17, dynamo=False)
    config = model.config
    fused = optimizer.optimize_model(str(folder / "model.onnx"), model_type="bert",
                                     num_heads=config.num_attention_heads,
                                     hidden_size=config.hidden_size)
    path = folder / "fused.onnx"
    fused.save_model_to_file(str(path))
    if int8:
        from onnx import TensorProto
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(path, folder / "int8.onnx", weight_type=QuantType.QInt8,
                         extra_options={"DefaultTensorType": TensorProto.FLOAT})
        path = folder / "int8.onnx"
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def run(probs: np.ndarray) -> None:
        for rows, x in batches:
            probs[rows] = softmax(session.run(None, x)[0])
    return f"ONNX Runtime {ort.__version__} ({'int8' if int8 else 'fp32'})", run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a model folder written by bertsent")
    parser.add_argument("--data", default=str(SHARED / "data" / "imdb"))
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runtimes", default=",".join(RUNTIMES),
                        help=f"comma-separated, of {', '.join(RUNTIMES)}")
    parser.add_argument("--ov-precision", default="bf16", choices=("bf16", "f32"))
    args = parser.parse_args()
    runtimes = args.runtimes.split(",")
    if unknown := set(runtimes) - set(RUNTIMES):
        parser.error(f"unknown runtime {', '.join(sorted(unknown))}: choose of {RUNTIMES}")

    use_threads(args.threads)
    tokenizer = load_tokenizer(args.model)
    ids, labels = test_sample(args.data, args.samples, tokenizer, args.max_length)
    collate = Collator(tokenizer.pad_token_id or 0, 8, args.max_length)
    batches = [(rows, {k: v.numpy() for k, v in collate([(i, ids[i], 0) for i in rows]).items()
                       if k in ("input_ids", "attention_mask")})
               for rows in longest_first(np.array([len(x) for x in ids]), 64, 4096, 8)]
    model = load_trained(args.model).eval()
    reference = np.zeros((len(ids), 2), np.float32)
    torch_pass(model, batches)(reference)  # fp32: what the differences are measured against

    passes = {"bertsent (torch, bf16 weights)":
              torch_pass(copy.deepcopy(model).to(torch.bfloat16), batches)}
    prepare: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as folder:
        for runtime in runtimes:
            start = time.perf_counter()
            if runtime == "openvino":
                name, run = openvino_pass(model, batches, args.threads, args.ov_precision)
            else:
                name, run = onnx_pass(model, batches, args.threads,
                                      runtime.endswith("int8"), Path(folder))
            passes[name], prepare[name] = run, time.perf_counter() - start
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
          f"{args.threads}, best of {args.rounds} interleaved rounds; fp32 PyTorch accuracy "
          f"{(reference.argmax(-1) == labels).mean():.4f}")
    first = max(next(iter(rates.values())))
    for name, got in rates.items():
        setup = f", {prepare[name]:.0f} s to prepare" if name in prepare else ""
        print(f"{name:<34} {max(got):6.1f} reviews/s (median {np.median(got):6.1f})  "
              f"x{max(got) / first:.2f}  accuracy {(probs[name].argmax(-1) == labels).mean():.4f}"
              f"  max |dp| {np.abs(probs[name] - reference).max():.1e}{setup}", flush=True)


if __name__ == "__main__":
    main()
