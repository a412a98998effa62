"""Choose full-data settings on a cheap proxy, on validation only (never on test).

Each variant trains MiniLM-L6 on the same shuffled training reviews (5,000 at length 512 for
the `5000x512` proxy, 2,000 at 256 for the cheaper `2000x256`) and is scored on the same fixed
1,000-review validation slice carved from the training split (`--val-samples 1000`: the slice
depends on the seed only, not on the other settings). The test split is not looked at:
`--test-samples 64` keeps the closing test pass short and its figures are not read. With
`--seeds 42 1` every variant runs once per seed (the seed changes the training reviews' order,
the validation slice and the new head), so that a difference can be told from noise: the
standard error of an accuracy on 1,000 reviews is about 1 point.

    python benchmarks/tune.py --out docs/results/tuning.json            # every variant
    python benchmarks/tune.py --only 512 512-2ep --out /tmp/t.json      # a few of them
    python benchmarks/tune.py --proxy 2000x256 --only 256 ema0.99 bs16 --seeds 42 1 --out x.json
    python benchmarks/tune.py --proxy 2000x256 --only mlm --pretrained checkpoints/mlm/final
    python benchmarks/tune.py --proxy 2000x256 --only mlm-head \
        --pretrained checkpoints/mlm-head100/final

Variants run one after the other, each in its own process (one training at a time on a small
CPU); a variant whose run already finished is read back, not trained again, and one that was
interrupted is resumed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

COMMON = ["--val-samples", "1000", "--test-samples", "64", "--sanity-eval-batches", "0",
          "--save-every", "0", "--keep-last", "1"]
PROXIES = {"5000x512": ["--train-samples", "5000", *COMMON],
           "2000x256": ["--train-samples", "2000", "--max-length", "256", *COMMON]}
VARIANTS = {
    "256": ["--max-length", "256"],  # today's defaults
    "512": ["--max-length", "512"],
    "512-2ep": ["--max-length", "512", "--epochs", "2"],
    "512-llrd0.9": ["--max-length", "512", "--lr", "1.5e-4", "--layer-lr-decay", "0.9"],
    "ema0.99": ["--ema", "0.99"],  # the weights averaged over about the last 100 steps
    "bs16": ["--batch-size", "16", "--lr", "1.4e-4"],  # half the updates, lr by sqrt(2)
    "mlm": [],  # the --pretrained folder (bertsent.pretrain's output) as the base model
    "mlm-head": [],  # the same, for a folder pre-trained with --head-steps (its own run names)
}
PRETRAINED = ("mlm", "mlm-head")  # variants whose base model is --pretrained


def run_variant(name: str, flags: list[str], seed: int, args: argparse.Namespace) -> dict:
    proxy = PROXIES[args.proxy]
    run_name = f"tune-{name}" if (args.proxy, seed) == ("5000x512", 42) else \
        f"tune-{args.proxy}-{name}-s{seed}"
    metrics_file = Path(args.checkpoint_dir) / run_name / "metrics.json"
    model = args.pretrained if name in PRETRAINED else args.model
    if name in PRETRAINED and not args.pretrained:
        sys.exit(f"the {name} variant needs --pretrained <folder written by bertsent.pretrain>")
    if not metrics_file.exists():
        cmd = [sys.executable, "-m", "bertsent.train", "--model", model, "--data", args.data,
               "--run-name", run_name, "--checkpoint-dir", args.checkpoint_dir,
               "--runs-dir", args.runs_dir, "--seed", str(seed), *proxy, *flags]
        if list((Path(args.checkpoint_dir) / run_name).glob("step-*")):
            cmd += ["--resume", "latest"]  # an interrupted variant continues where it stopped
        print("$", " ".join(cmd), file=sys.stderr, flush=True)
        start = time.time()
        subprocess.run(cmd, check=True)
        print(f"{name}: {time.time() - start:.0f} s", file=sys.stderr, flush=True)
    metrics = json.loads(metrics_file.read_text())
    shown_model = os.path.relpath(model)  # results name no machine's folders
    return {"variant": name, "flags": " ".join(flags + (["--model", shown_model]
                                                       if name in PRETRAINED else [])),
            "seed": seed, "proxy": args.proxy, "val_accuracy": metrics["val_accuracy"],
            "val_samples": 1000, "train_samples": metrics.get("train_samples"),
            "steps": metrics["steps"], "best_step": metrics["best_step"],
            "train_samples_per_second": round(metrics["train_samples_per_second"], 2),
            "precision_mode": metrics["precision_mode"], "device_name": metrics.get("device_name")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="../shared/models/minilm-l6")
    parser.add_argument("--data", default="../shared/data/imdb")
    parser.add_argument("--only", nargs="+", choices=list(VARIANTS),
                        help="default: all but the mlm variants")
    parser.add_argument("--proxy", choices=list(PROXIES), default="5000x512")
    parser.add_argument("--seeds", nargs="+", type=int, default=[42])
    parser.add_argument("--pretrained", help="the mlm variants' base model folder")
    parser.add_argument("--checkpoint-dir", default="checkpoints/tune")
    parser.add_argument("--runs-dir", default="runs/tune")
    parser.add_argument("--out", help="write the rows as JSON here")
    args = parser.parse_args()
    names = args.only or [v for v in VARIANTS if v not in PRETRAINED]
    rows = [run_variant(name, VARIANTS[name], seed, args) for name in names
            for seed in args.seeds]
    print("| variant | flags | seed | val accuracy (1,000) | steps | samples/s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | `{r['flags']}` | {r['seed']} | {r['val_accuracy']:.3f} | "
              f"{r['steps']} | {r['train_samples_per_second']} |")
    for name in names:  # the mean over seeds, beside each seed's figure
        accs = [r["val_accuracy"] for r in rows if r["variant"] == name]
        print(f"{name}: mean {sum(accs) / len(accs):.4f} over seeds {args.seeds}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"proxy": " ".join(PROXIES[args.proxy]),
                                              "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
