"""What identifying a run's data costs beside tokenising it (docs/performance.md).

A run records a sha256 of every data file it reads (bertsent/dataid.py). This times that
digest over all of IMDb's parquet files (train, test and unsup: every file a training or a
pre-training run reads), then times tokenising --sample reviews at max length 512 (head+tail)
with MiniLM's fast tokenizer and scales it to IMDb's 75,000 train and unsup reviews.

    python benchmarks/digest_cost.py            # about a minute on a 2-core CPU
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pyarrow.parquet as pq

from bertsent.dataid import file_digest
from bertsent.model import load_tokenizer
from bertsent.tokens import encode_texts

SHARED = Path(__file__).resolve().parents[2] / "shared"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(SHARED / "data" / "imdb"))
    parser.add_argument("--model", default=str(SHARED / "models" / "minilm-l6"))
    parser.add_argument("--sample", type=int, default=5000, help="reviews tokenised")
    args = parser.parse_args()
    files = sorted(Path(args.data).glob("*.parquet"))
    start = time.perf_counter()
    size = sum(file_digest(f)["bytes"] for f in files)
    digest = time.perf_counter() - start
    print(f"sha256 of {len(files)} files, {size / 1e6:.1f} MB: {digest:.3f} s")
    texts = [t for name in ("train", "unsup") for t in
             pq.read_table(Path(args.data) / f"{name}.parquet", columns=["text"])
             .column("text").to_pylist()]
    tokenizer = load_tokenizer(args.model)
    start = time.perf_counter()
    encode_texts(texts[: args.sample], tokenizer, 512, "head+tail")
    per_review = (time.perf_counter() - start) / args.sample
    total = per_review * len(texts)
    print(f"tokenising {len(texts)} train+unsup reviews at 512 (from {args.sample} timed): "
          f"{total:.1f} s")
    print(f"digest / tokenisation: {100 * digest / total:.2f}%")


if __name__ == "__main__":
    main()
