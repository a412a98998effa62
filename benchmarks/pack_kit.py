"""Pack a model and exactly the reviews a set of runs reads into one small folder, for a machine
that has no ../shared (a GPU box, say), and unpack it there.

The seed protocol (README's first command with --seed S) and compare_trainer.py read a few
thousand of IMDb's 50,000 reviews: which ones follows from the seed and the sizes alone
(`bertsent.data.subset_indices`). The kit keeps every row and its label, so the same seeds
draw the same rows, and replaces the text of each row no planned run reads by a short
placeholder: 55 MB of model and data become about 50, of which the model's weights, stored in
fp16, are 45. Unpacking writes the weights back as fp32, so runs there start from the
pre-trained weights rounded to fp16 (a relative change of at most 2^-11), which is the one
difference from a run on ../shared. It shows in the last digit: README's first command from
the kit gives test accuracy 0.880 / F1 0.873 on the CPU (seed 42, bf16) against 0.882 / 0.875
from ../shared, and the kit's data with ../shared's model gives 0.882 / 0.875 again (Intel Xeon
with AMX; transformers 5.17 and 5.24 alike). A GPU's figures from the kit compare with the
former. The seed protocol from the kit on that CPU (bf16, two threads), test accuracy for
seeds 42, 1, 2, 3, 4: 0.880, 0.864, 0.878, 0.860, 0.856 (mean 0.868, as from ../shared):

    python benchmarks/cuda_check.py --device cpu --parts main,seeds --model /tmp/kit/model \
        --data /tmp/kit/data --out /tmp/kit-cpu

    python benchmarks/pack_kit.py pack --out .kit                      # here
    python benchmarks/pack_kit.py unpack --kit .kit --out /tmp/kit     # there
    python -m bertsent.train --model /tmp/kit/model --data /tmp/kit/data ...

Both write only into a new or empty folder (files left there by an earlier kit would travel
with this one), and refuse anything else in one line.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"
# (seed, train samples, val samples or None for the default, test samples): README's first
# command under the seed protocol's seeds, and compare_trainer.py's subsets.
PLANNED = [*((seed, 2000, None, 500) for seed in (42, 1, 2, 3, 4)), (42, 2000, 200, 500)]
MODEL_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
               "special_tokens_map.json")


def needed_rows(n_train: int, n_test: int, planned=PLANNED) -> tuple[set[int], set[int]]:
    """The train and test rows the planned runs read (their validation rows included)."""
    from bertsent.config import TrainConfig
    from bertsent.data import subset_indices

    train, test = set(), set()
    for seed, train_samples, val_samples, test_samples in planned:
        val = TrainConfig(val_samples=val_samples).val_size(n_train)
        rows = subset_indices(n_train, n_test, train_samples, val, test_samples, seed)
        train.update(int(i) for i in (*rows.train, *rows.val))
        test.update(int(i) for i in rows.test)
    return train, test


def refuse(problem: str, fix: str) -> None:
    print(f"error: {problem}: {fix}", file=sys.stderr)
    sys.exit(2)


def check_out(out: Path) -> None:
    """A kit is written into a new or empty folder: files left there by an earlier kit or
    unpack would travel with it (and swell it past what a machine may carry)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        refuse(f"--out {out} is not a new or empty folder", "pass a new folder, or remove it")


def pack(model: Path, data: Path, out: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch
    from safetensors.torch import load_file, save_file

    out.mkdir(parents=True, exist_ok=True)
    tables = {split: pq.read_table(data / f"{split}.parquet", columns=["text", "label"])
              for split in ("train", "test")}
    train_rows, test_rows = needed_rows(tables["train"].num_rows, tables["test"].num_rows)
    keep = {"train": train_rows, "test": test_rows}
    (out / "data").mkdir(exist_ok=True)
    for split, table in tables.items():
        texts = table.column("text").to_pylist()
        texts = [t if i in keep[split] else f"placeholder {split} review {i}, never read"
                 for i, t in enumerate(texts)]
        pq.write_table(pa.table({"text": texts, "label": table.column("label")}),
                       out / "data" / f"{split}.parquet", compression="zstd",
                       compression_level=19)
    (out / "model").mkdir(exist_ok=True)
    weights = {k: v.half() if v.is_floating_point() else v
               for k, v in load_file(model / "model.safetensors").items()}
    save_file(weights, out / "model" / "model.fp16.safetensors")
    for name in MODEL_FILES:
        if (model / name).exists():
            shutil.copy2(model / name, out / "model" / name)
    (out / "kit.json").write_text(json.dumps(
        {"model": model.name, "data": data.name, "planned": PLANNED,
         "rows": {k: len(v) for k, v in keep.items()}, "dtype": str(torch.float16)}, indent=2))
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"{out}: {size / 2**20:.1f} MiB; rows read: {len(keep['train'])} train, "
          f"{len(keep['test'])} test")


def unpack(kit: Path, out: Path) -> None:
    from safetensors.torch import load_file, save_file

    (out / "model").mkdir(parents=True, exist_ok=True)
    weights = {k: v.float() if v.is_floating_point() else v
               for k, v in load_file(kit / "model" / "model.fp16.safetensors").items()}
    save_file(weights, out / "model" / "model.safetensors", metadata={"format": "pt"})
    for name in MODEL_FILES:
        if (kit / "model" / name).exists():
            shutil.copy2(kit / "model" / name, out / "model" / name)
    shutil.copytree(kit / "data", out / "data", dirs_exist_ok=True)
    print(f"unpacked to {out}/model and {out}/data")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("pack")
    p.add_argument("--model", default=str(SHARED / "models" / "minilm-l6"))
    p.add_argument("--data", default=str(SHARED / "data" / "imdb"))
    p.add_argument("--out", required=True)
    u = sub.add_parser("unpack")
    u.add_argument("--kit", required=True)
    u.add_argument("--out", required=True)
    args = parser.parse_args()
    check_out(Path(args.out))
    if args.verb == "pack":
        needed = [Path(args.model) / "model.safetensors",
                  *(Path(args.data) / f"{split}.parquet" for split in ("train", "test"))]
        for path in needed:
            if not path.is_file():
                refuse(f"{path} does not exist", "pass --model and --data (a Hugging Face "
                       "model folder and a folder with train.parquet and test.parquet)")
        pack(Path(args.model), Path(args.data), Path(args.out))
    else:
        if not (Path(args.kit) / "kit.json").is_file():
            refuse(f"{args.kit} is not a kit (no kit.json)", "pass the folder `pack` wrote")
        unpack(Path(args.kit), Path(args.out))


if __name__ == "__main__":
    main()
