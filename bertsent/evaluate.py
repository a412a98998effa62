"""python -m bertsent.evaluate: score a saved model on a split; JSON on stdout."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

import torch

from bertsent.config import _f, from_mapping, parse_overrides
from bertsent.data import Collator, check_split, load_raw, test_subset, tokenize
from bertsent.engine import evaluate
from bertsent.errors import fail, run_cli
from bertsent.metrics import confusion
from bertsent.model import load_tokenizer, load_trained, read_meta
from bertsent.runtime import autocast_for, pick_device, pick_precision
from bertsent.sampling import EvalBatchSampler


@dataclass
class EvalConfig:
    """Evaluate a saved model (a folder written by bertsent.train) on a labelled split."""

    model: str = _f("", "model folder, e.g. checkpoints/<run>/best")
    data: str = _f("stanfordnlp/imdb", "hub dataset id or local data folder")
    split: str = _f("test", "which split to score", choices=("train", "test"))
    samples: int | None = _f(None, "shuffled reviews of the split to score (default: all)")
    seed: int = _f(42, "seed of the shuffle (42 matches bertsent.train's default test subset)")
    text_column: str = _f("text", "name of the text column")
    label_column: str = _f("label", "name of the integer label column")
    max_length: int | None = _f(None, "default: the length the model was trained with")
    truncation: str | None = _f(None, "default: the strategy the model was trained with",
                                choices=("head", "tail", "head+tail"))
    batch_size: int = _f(64, "evaluation batch size")
    device: str = _f("auto", "auto, cpu, cuda or cuda:N")
    precision: str = _f("fp32", "fp32 (exact), bf16, fp16 or auto",
                        choices=("auto", "fp32", "bf16", "fp16"))
    cache_dir: str = _f("~/.cache/bertsent", "where tokenised datasets are cached")
    report_dir: str | None = _f(None, "also write a report folder (metrics, plots, mistakes)")


def run(cfg: EvalConfig) -> dict:
    if not cfg.model:
        fail("--model is required: pass a model folder such as checkpoints/<run>/best")
    if cfg.batch_size <= 0:
        fail(f"--batch-size must be positive, got {cfg.batch_size}")
    if cfg.samples is not None and cfg.samples <= 0:
        fail(f"--samples must be positive, got {cfg.samples}")
    meta = read_meta(cfg.model)
    max_length = cfg.max_length or meta.get("max_length", 512)
    truncation = cfg.truncation or meta.get("truncation", "head")
    if max_length < 8:
        fail(f"--max-length must be at least 8, got {max_length}")
    device = pick_device(cfg.device)
    precision = pick_precision(cfg.precision, device)
    tokenizer = load_tokenizer(cfg.model)
    model = load_trained(cfg.model)
    num_labels = model.config.num_labels
    raw = load_raw(cfg.data)
    ds = check_split(raw[cfg.split], cfg.split, cfg.text_column, cfg.label_column, num_labels)
    idx = test_subset(len(ds), cfg.samples, cfg.seed, flag="--samples")
    subset = ds.select(idx)
    enc = tokenize(subset, tokenizer, max_length, truncation, cfg.cache_dir)
    loader = torch.utils.data.DataLoader(
        enc, batch_sampler=EvalBatchSampler(enc.lengths, cfg.batch_size),
        collate_fn=Collator(tokenizer.pad_token_id or 0, 8, max_length))
    result = evaluate(model.to(device), loader, device, num_labels=num_labels,
                      autocast=autocast_for(precision, device), desc=f"eval {cfg.split}")
    report = {**result.metrics,
              "confusion_matrix": confusion(result.logits, result.labels, num_labels),
              "labels": [model.config.id2label[i] for i in range(num_labels)],
              "split": cfg.split, "model": cfg.model, "max_length": max_length,
              "truncation": truncation, "precision_mode": precision}
    if cfg.report_dir:
        from bertsent.report import write_report

        texts = subset["text"]
        report["report_dir"] = write_report(cfg.report_dir, result, texts, report)
    return report


def main(argv: list[str] | None = None) -> int:
    def entry() -> int:
        args = parse_overrides(argv, EvalConfig, prog="bertsent.evaluate")
        print(json.dumps(run(from_mapping(args, cls=EvalConfig))), flush=True)
        return 0

    return run_cli(entry)


if __name__ == "__main__":
    sys.exit(main())
