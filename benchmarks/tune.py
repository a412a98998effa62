"""Choose full-data settings on a cheap proxy, on validation only (never on test).

Each variant trains MiniLM-L6 on the same 5,000 shuffled training reviews and is scored on the
same fixed 1,000-review validation slice carved from the training split (`--val-samples 1000`:
the slice depends on the seed only, not on the other settings). The test split is not looked at:
`--test-samples 64` keeps the closing test pass short and its figures are not read.

    python benchmarks/tune.py --out docs/results/tuning.json            # every variant
    python benchmarks/tune.py --only 512 512-2ep --out /tmp/t.json      # a few of them

Variants run one after the other, each in its own process (one training at a time on a small
CPU); a variant whose run already finished is read back, not trained again, and one that was
interrupted is resumed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

PROXY = ["--train-samples", "5000", "--val-samples", "1000", "--test-samples", "64",
         "--sanity-eval-batches", "0", "--save-every", "0", "--keep-last", "1"]
VARIANTS = {
    "256": ["--max-length", "256"],  # today's defaults
    "512": ["--max-length", "512"],
    "512-2ep": ["--max-length", "512", "--epochs", "2"],
    "512-llrd0.9": ["--max-length", "512", "--lr", "1.5e-4", "--layer-lr-decay", "0.9"],
}


def run_variant(name: str, flags: list[str], args: argparse.Namespace) -> dict:
    run_name = f"tune-{name}"
    metrics_file = Path(args.checkpoint_dir) / run_name / "metrics.json"
    if not metrics_file.exists():
        cmd = [sys.executable, "-m", "bertsent.train", "--model", args.model, "--data", args.data,
               "--run-name", run_name, "--checkpoint-dir", args.checkpoint_dir,
               "--runs-dir", args.runs_dir, *PROXY, *flags]
        if list((Path(args.checkpoint_dir) / run_name).glob("step-*")):
            cmd += ["--resume", "latest"]  # an interrupted variant continues where it stopped
        print("$", " ".join(cmd), file=sys.stderr, flush=True)
        start = time.time()
        subprocess.run(cmd, check=True)
        print(f"{name}: {time.time() - start:.0f} s", file=sys.stderr, flush=True)
    metrics = json.loads(metrics_file.read_text())
    return {"variant": name, "flags": " ".join(flags), "val_accuracy": metrics["val_accuracy"],
            "val_samples": 1000, "train_samples": metrics.get("train_samples"),
            "steps": metrics["steps"], "best_step": metrics["best_step"],
            "train_samples_per_second": round(metrics["train_samples_per_second"], 2),
            "precision_mode": metrics["precision_mode"], "device_name": metrics.get("device_name")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="../shared/models/minilm-l6")
    parser.add_argument("--data", default="../shared/data/imdb")
    parser.add_argument("--only", nargs="+", choices=list(VARIANTS), help="default: all")
    parser.add_argument("--checkpoint-dir", default="checkpoints/tune")
    parser.add_argument("--runs-dir", default="runs/tune")
    parser.add_argument("--out", help="write the rows as JSON here")
    args = parser.parse_args()
    rows = [run_variant(name, VARIANTS[name], args) for name in (args.only or VARIANTS)]
    print("| variant | flags | val accuracy (1,000) | steps | samples/s |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | `{r['flags']}` | {r['val_accuracy']:.3f} | {r['steps']} | "
              f"{r['train_samples_per_second']} |")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"proxy": " ".join(PROXY), "rows": rows},
                                             indent=2) + "\n")


if __name__ == "__main__":
    main()
