"""The CUDA checks in one command: what bertsent does on a GPU, each part recorded as it ends.

Parts, in order (the first ones matter most; --parts picks, --budget-s skips a part that would
start after the budget is spent):

* ``env``      torch, CUDA and the device, bf16 support.
* ``main``     README's first command on the GPU: bf16 autocast (fp16 where bf16 is missing),
  pinned host memory, the GPU's own evaluation.
* ``torchrun`` a one-process start under ``torchrun --standalone``: NCCL's process group.
* ``resume``   a run stopped after step 7 and resumed, against the same run uninterrupted (the
  losses of every step, and the final weights: bit for bit or the largest difference).
* ``compare``  ``compare_trainer.py --device cuda`` (its JSON beside this one).
* ``seeds``    the seed protocol: README's first command with seeds 42, 1, 2, 3, 4.

    python benchmarks/cuda_check.py --model ../shared/models/minilm-l6 \\
        --data ../shared/data/imdb --out cuda-check          # about 6 minutes on one GPU
    python benchmarks/cuda_check.py --device cpu --quick --out /tmp/c   # the script's own test

Each part's result (or its error) goes to <out>/cuda_check.json as soon as it ends; the
runs' logs to <out>/cuda_check.log. On a machine without ../shared, benchmarks/pack_kit.py
packs the model and the reviews these parts read.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"
PARTS = ("env", "main", "torchrun", "resume", "compare", "seeds")
SEEDS = (42, 1, 2, 3, 4)


def readme_run(args, seed: int, work: Path, name: str) -> dict:
    """README's first command (with --seed), on the checked device."""
    return {"model": args.model, "data": args.data, "train_samples": args.train_samples,
            "test_samples": args.test_samples, "epochs": 1, "seed": seed,
            "device": args.device, "run_name": name, "checkpoint_dir": str(work / "ckpt"),
            "runs_dir": str(work / "runs")}


def summary(result: dict) -> dict:
    keys = ("accuracy", "f1", "val_accuracy", "train_samples_per_second", "train_seconds",
            "test_seconds", "steps", "precision_mode", "device_name", "world_size")
    return {k: result.get(k) for k in keys}


def part_env(args, work: Path) -> dict:
    import torch
    import transformers

    cuda = torch.cuda.is_available()
    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "cuda": torch.version.cuda, "cuda_available": cuda,
            "device": torch.cuda.get_device_name() if cuda else None,
            "bf16": torch.cuda.is_bf16_supported() if cuda else None,
            "nccl": torch.cuda.nccl.version() if cuda else None}


def part_main(args, work: Path) -> dict:
    import torch

    from bertsent.train import train

    result = train(readme_run(args, 42, work, "main"))
    out = summary(result)
    if torch.cuda.is_available():
        out["cuda_peak_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def part_torchrun(args, work: Path) -> dict:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
           "-m", "bertsent.train", "--model", args.model, "--data", args.data,
           "--train-samples", str(min(args.train_samples, 400)),
           "--test-samples", str(min(args.test_samples, 100)), "--epochs", "1",
           "--device", args.device, "--run-name", "torchrun",
           "--checkpoint-dir", str(work / "ckpt"), "--runs-dir", str(work / "runs")]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    log(args, "torchrun", proc.stdout + proc.stderr)
    metrics = work / "ckpt" / "torchrun" / "metrics.json"
    found = json.loads(metrics.read_text()) if metrics.exists() else {}
    started = [x for x in proc.stderr.splitlines() if x.startswith("run torchrun:")]
    return {"exit": proc.returncode, "start_line": started[0] if started else None,
            "process_group": next((b for b in ("nccl", "gloo") if started and f"({b})"
                                   in started[0]), None),
            **summary(found), "stderr_tail": proc.stderr[-600:]}


def part_resume(args, work: Path) -> dict:
    from safetensors.torch import load_file

    from bertsent.train import Hooks, train

    base = {**readme_run(args, 42, work, ""), "train_samples": min(args.train_samples, 160),
            "test_samples": min(args.test_samples, 64), "save_every": 5}
    full = train({**base, "run_name": "full"})
    cut = train({**base, "run_name": "cut"}, hooks=Hooks(stop_after_step=7))
    time.sleep(1.05)  # TensorBoard event files of the same second (tests/test_train.py)
    rest = train({**base, "run_name": "cut", "resume": "latest"})
    a = load_file(work / "ckpt" / "full" / "final" / "model.safetensors")
    b = load_file(work / "ckpt" / "cut" / "final" / "model.safetensors")
    diff = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    losses = cut["history"] + rest["history"]
    return {"steps": full["steps"], "stopped_at": cut.get("step"),
            "same_losses": losses == full["history"],
            "largest_loss_difference": max(  # history: (step, loss) per optimizer step
                (abs(x[1] - y[1]) for x, y in zip(losses, full["history"], strict=False)),
                default=None),
            "weights_bit_for_bit": diff == 0.0, "largest_weight_difference": diff,
            "accuracy_full": full["accuracy"], "accuracy_resumed": rest["accuracy"]}


def part_compare(args, work: Path) -> dict:
    out = Path(args.out) / "results-gpu.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "compare_trainer.py"), "--device",
           args.device, "--model", args.model, "--data", args.data, "--out", str(out)]
    if args.quick:
        cmd.append("--quick")
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=900)
    log(args, "compare", proc.stdout + proc.stderr)
    table = json.loads(out.read_text()).get("table") if out.exists() else None
    return {"exit": proc.returncode, "table": table, "stderr_tail": proc.stderr[-600:]}


def part_seeds(args, work: Path) -> dict:
    from bertsent.train import train

    return {str(seed): summary(train(readme_run(args, seed, work, f"seed-{seed}")))
            for seed in SEEDS}


def log(args, part: str, text: str) -> None:
    with open(Path(args.out) / "cuda_check.log", "a") as fh:
        fh.write(f"\n===== {part} =====\n{text}\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(SHARED / "models" / "minilm-l6"))
    parser.add_argument("--data", default=str(SHARED / "data" / "imdb"))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", required=True, help="folder for cuda_check.json and the logs")
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"comma-separated, of {', '.join(PARTS)} (default: all, in order)")
    parser.add_argument("--budget-s", type=float, default=480.0,
                        help="no part starts after this many seconds (default 480)")
    parser.add_argument("--quick", action="store_true",
                        help="the script's own test: tiny subsets (and compare_trainer --quick)")
    args = parser.parse_args()
    args.model, args.data = str(Path(args.model).resolve()), str(Path(args.data).resolve())
    args.train_samples, args.test_samples = (64, 32) if args.quick else (2000, 500)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    report: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "device": args.device,
                    "quick": args.quick, "parts": {}}
    start = time.perf_counter()
    for part in (p for p in PARTS if p in args.parts.split(",")):
        if time.perf_counter() - start > args.budget_s:
            report["parts"][part] = {"skipped": f"past the {args.budget_s:.0f} s budget"}
            continue
        began = time.perf_counter()
        print(f"=== {part} ===", flush=True)
        with tempfile.TemporaryDirectory(prefix=f"cuda-check-{part}-") as tmp:
            try:
                got = globals()[f"part_{part}"](args, Path(tmp))
            except BaseException as exc:  # noqa: BLE001 - record it and go on to the next part
                if isinstance(exc, KeyboardInterrupt):
                    raise
                got = {"error": f"{type(exc).__name__}: {exc}"}
                log(args, part, traceback.format_exc())
        got["seconds"] = round(time.perf_counter() - began, 1)
        report["parts"][part] = got
        Path(args.out, "cuda_check.json").write_text(json.dumps(report, indent=2, default=str))
        print(json.dumps({part: got}, indent=2, default=str), flush=True)
    return 0 if all("error" not in r for r in report["parts"].values()) else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
