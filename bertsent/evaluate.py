"""python -m bertsent.evaluate: score a saved model on a split; JSON on stdout."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import torch

from bertsent.config import _f, check_fields, check_output_folder, from_mapping, parse_overrides
from bertsent.data import (
    Collator,
    apply_labels,
    check_split,
    is_unlabelled,
    load_raw,
    test_subset,
    tokenize,
)
from bertsent.engine import evaluate
from bertsent.errors import fail, run_cli
from bertsent.labels import LabelMap
from bertsent.metrics import confusion, strict_json
from bertsent.model import check_max_length, load_tokenizer, load_trained, read_meta
from bertsent.runtime import autocast_for, pick_device, pick_precision
from bertsent.sampling import EvalBatchSampler


@dataclass
class EvalConfig:
    """Evaluate a saved model (a folder written by bertsent.train) on a labelled split."""

    model: str = _f("", "model folder, e.g. checkpoints/<run>/best")
    data: str = _f("stanfordnlp/imdb", "hub dataset id or local data folder")
    split: str = _f("test", "which split to score", choices=("train", "validation", "test"))
    samples: int | None = _f(None, "shuffled reviews of the split to score (default: all)")
    seed: int = _f(42, "seed of the shuffle (42 matches bertsent.train's default test subset)")
    text_column: str = _f("text", "name of the text column")
    label_column: str = _f("label", "name of the label column: strings (or integers that are "
                           "not 0..n-1, like ratings) are matched to the model's label names; "
                           "integers 0..n-1 are its class ids")
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
    check_fields(cfg)
    if cfg.report_dir:
        # before the work, not after; never over another report or a run's own files
        check_output_folder(cfg.report_dir, "--report-dir", new=True)
    meta = read_meta(cfg.model)
    max_length = cfg.max_length if cfg.max_length is not None else meta.get("max_length", 512)
    truncation = cfg.truncation or meta.get("truncation", "head")
    device = pick_device(cfg.device)
    precision = pick_precision(cfg.precision, device)
    tokenizer = load_tokenizer(cfg.model)
    model = load_trained(cfg.model)
    check_max_length(model, max_length, cfg.model)
    num_labels = model.config.num_labels
    ds = check_split(labelled_split(load_raw(cfg.data), cfg), cfg.split, cfg.text_column,
                     cfg.label_column)
    labels = LabelMap.for_model(model.config.id2label, ds.data.column("label"))
    ds = apply_labels(ds, labels, cfg.split, known_by="the model")
    idx = test_subset(len(ds), cfg.samples, cfg.seed, flag="--samples")
    subset = ds.select(idx)
    enc = tokenize(subset, tokenizer, max_length, truncation, cfg.cache_dir)
    loader = torch.utils.data.DataLoader(
        enc, batch_sampler=EvalBatchSampler(enc.lengths, cfg.batch_size),
        collate_fn=Collator(tokenizer.pad_token_id or 0, 8, max_length))
    result = evaluate(model.to(device), loader, device, num_labels=num_labels,
                      autocast=autocast_for(precision, device), desc=f"eval {cfg.split}",
                      names=list(labels.names))
    report = {**result.metrics,
              "confusion_matrix": confusion(result.logits, result.labels, num_labels),
              "labels": list(labels.names),
              "split": cfg.split, "model": cfg.model, "max_length": max_length,
              "truncation": truncation, "precision_mode": precision}
    if cfg.report_dir:
        from bertsent.report import write_report

        texts = subset["text"]
        report["report_dir"] = write_report(cfg.report_dir, result, texts, report)
    return report


def labelled_split(raw, cfg: EvalConfig):
    """The split to score, refused in one line when the data lacks it or hides its labels."""
    if cfg.split not in raw:
        others = [s for s in ("test", "validation", "train") if s in raw and s != cfg.split]
        fail(f"{cfg.data} has no {cfg.split} split: pass --split {others[0]}")
    ds = raw[cfg.split]
    if cfg.label_column in ds.column_names and is_unlabelled(ds, cfg.label_column):
        hint = " --split validation" if "validation" in raw else " a split with labels"
        fail(f"the {cfg.split} split of {cfg.data} has no labels (all -1): score{hint}")
    return ds


def main(argv: list[str] | None = None) -> int:
    def entry() -> int:
        args = parse_overrides(argv, EvalConfig, prog="bertsent.evaluate")
        print(strict_json(run(from_mapping(args, cls=EvalConfig))), flush=True)
        return 0

    return run_cli(entry)


if __name__ == "__main__":
    sys.exit(main())
