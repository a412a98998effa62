"""python -m bertsent.evaluate: score a saved model on a split; JSON on stdout."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from bertsent import dataid
from bertsent.cli import parse_overrides
from bertsent.config import EvalConfig, TrainConfig, canonical, check_fields, from_mapping
from bertsent.data import (
    apply_labels,
    check_split,
    is_unlabelled,
    pick_splits,
    subset_indices,
    test_subset,
)
from bertsent.datafiles import read_data
from bertsent.engine import evaluate
from bertsent.errors import UserError, fail, run_cli
from bertsent.export import META_FILE, load_exported
from bertsent.jsonio import strict_json
from bertsent.labels import LabelMap
from bertsent.metrics import confusion
from bertsent.runfolder import check_output_folder, relative_path
from bertsent.runtime import (
    keep_matplotlib_in,
    pick_device,
    pick_precision,
    setup_process,
)
from bertsent.scoring import for_scoring
from bertsent.tokens import eval_loader, tokenize
from bertsent.windows import per_review, windows_dataset


def run(cfg: EvalConfig) -> dict:
    check_fields(cfg)
    if cfg.report_dir:
        # before the work, not after; never over another report or a run's own files
        check_output_folder(cfg.report_dir, "--report-dir", new=True)
    device = pick_device(cfg.device)
    setup_process(device, cfg.threads)
    precision = pick_precision(cfg.precision, device)
    loaded = load_exported(cfg.model, device, cfg.max_length, cfg.truncation)
    data, made_with = model_data(cfg, loaded)
    label_column = loaded.recorded("label_column", cfg.label_column, "label")
    try:
        raw, _ = read_data(data, cfg.cache_dir, (made_with, f"model {cfg.model}"))
    except UserError as exc:
        if cfg.data is not None or made_with is not None or Path(data).expanduser().exists():
            raise
        # a model exported before identities were recorded: only the string is known
        fail(f"the data {data!r} recorded in model {cfg.model} is neither a folder here "
             f"(looked for at {Path(data).expanduser().resolve()}) nor a dataset that loads "
             f"({str(exc).split(': ', 1)[0]}): pass --data with where the data is")
    ds = check_split(scored_split(raw, data, cfg.split, label_column, loaded.meta), cfg.split,
                     loaded.recorded("text_column", cfg.text_column, "text"), label_column)
    labels = LabelMap.for_model(loaded.model.config.id2label, ds.data.column("label"))
    ds = apply_labels(ds, labels, cfg.split, known_by="the model")
    subset = ds.select(test_subset(len(ds), cfg.samples, cfg.seed, flag="--samples"))
    names, pad = list(labels.names), loaded.tokenizer.pad_token_id or 0
    if cfg.windows > 1:
        enc, owner = windows_dataset(list(subset["text"]), list(subset["label"]),
                                     loaded.tokenizer,
                                     loaded.max_length, loaded.truncation, cfg.windows)
    else:
        enc = tokenize(subset, loaded.tokenizer, loaded.max_length, loaded.truncation,
                       cfg.cache_dir)
    loader = eval_loader(enc, cfg.batch_size, pad, loaded.max_length, tokens=cfg.batch_tokens)
    model, autocast = for_scoring(loaded.model, precision, device)
    result = evaluate(model, loader, device, num_labels=labels.num_labels,
                      autocast=autocast, desc=f"eval {cfg.split}",
                      names=names)
    if cfg.windows > 1:
        result = per_review(result, owner, np.asarray(subset["label"]), labels.num_labels,
                            names)
    report = {**result.metrics,
              "confusion_matrix": confusion(result.logits, result.labels, labels.num_labels),
              "labels": list(labels.names),
              "split": cfg.split, "data": data, "model": cfg.model,
              "max_length": loaded.max_length,
              "truncation": loaded.truncation, "precision_mode": precision,
              "windows": cfg.windows}
    if cfg.report_dir:
        keep_matplotlib_in(cfg.cache_dir)
        from bertsent.report import write_report

        report["report_dir"] = write_report(cfg.report_dir, result, subset["text"], report)
    return report


def model_data(cfg: EvalConfig, loaded) -> tuple[str, dict | None]:
    """(the data to score, the identity it must have): --data as given (any data, no check),
    else the data the model was trained on, read where its folder was when it trained (found
    from the model folder, not from the working folder) and checked to hold the same files."""
    if cfg.data is not None:
        return cfg.data, None
    recorded = loaded.recorded("data", None, "stanfordnlp/imdb")
    identity = loaded.meta.get("data_identity")
    if not identity:  # a model exported before identities were recorded
        return recorded, None
    where = dataid.locate(recorded, identity, f"model {cfg.model}",
                          base=Path(cfg.model).expanduser().resolve())
    return relative_path(where) if identity.get("kind") == "folder" else where, identity


def scored_split(raw, data: str, split: str, label_column: str, meta: dict):
    """The split to score; `selection` is the reviews the run chose its model on, drawn again
    exactly as bertsent.train drew them (the same seed, sizes and splits)."""
    if split != "selection":
        return labelled_split(raw, data, split, label_column)
    config = meta.get("config")
    if not config:
        fail(f"--split selection needs the settings the model was trained with ({META_FILE} "
             "in the model folder): pass --split validation or test")
    splits = pick_splits(raw, data, label_column)
    settings = TrainConfig(**{k: v for k, v in canonical(config).items()
                              if k in TrainConfig.__dataclass_fields__})
    source = splits.validation if splits.validation is not None else splits.train
    n_val = len(splits.validation) if splits.validation is not None else None
    size = settings.val_size(len(splits.train), carved=n_val is None)
    idx = subset_indices(len(splits.train), len(splits.test), settings.train_samples, size,
                         None, settings.seed, n_val=n_val)
    return source.select(idx.val)


def labelled_split(raw, data: str, split: str, label_column: str):
    """The split to score, refused in one line when the data lacks it or hides its labels."""
    if split not in raw:
        others = [s for s in ("test", "validation", "train") if s in raw and s != split]
        fail(f"{data} has no {split} split: pass --split {others[0]}")
    ds = raw[split]
    if label_column in ds.column_names and is_unlabelled(ds, label_column):
        hint = " --split validation" if "validation" in raw else " a split with labels"
        fail(f"the {split} split of {data} has no labels (all -1): score{hint}")
    return ds


def main(argv: list[str] | None = None) -> int:
    def entry() -> int:
        args = parse_overrides(argv, EvalConfig, prog="bertsent.evaluate")
        print(strict_json(run(from_mapping(args, cls=EvalConfig))), flush=True)
        return 0

    return run_cli(entry)


if __name__ == "__main__":
    sys.exit(main())
