"""python -m bertsent.evaluate: score a saved model on a split; JSON on stdout."""

from __future__ import annotations

import sys
from pathlib import Path

from bertsent import dataid
from bertsent.cli import parse_overrides
from bertsent.config import EvalConfig, check_fields, from_mapping
from bertsent.data import apply_labels, check_split, is_unlabelled, read_data, test_subset
from bertsent.engine import evaluate
from bertsent.errors import fail, run_cli
from bertsent.export import load_exported
from bertsent.jsonio import strict_json
from bertsent.labels import LabelMap
from bertsent.metrics import confusion
from bertsent.runfolder import check_output_folder, relative_path
from bertsent.runtime import (
    autocast_for,
    keep_matplotlib_in,
    pick_device,
    pick_precision,
    use_threads,
)
from bertsent.tokens import eval_loader, tokenize


def run(cfg: EvalConfig) -> dict:
    check_fields(cfg)
    if cfg.report_dir:
        # before the work, not after; never over another report or a run's own files
        check_output_folder(cfg.report_dir, "--report-dir", new=True)
    device = pick_device(cfg.device)
    use_threads(cfg.threads)
    precision = pick_precision(cfg.precision, device)
    loaded = load_exported(cfg.model, device, cfg.max_length, cfg.truncation)
    data, made_with = model_data(cfg, loaded)
    label_column = loaded.recorded("label_column", cfg.label_column, "label")
    raw, _ = read_data(data, cfg.cache_dir, (made_with, f"model {cfg.model}"))
    ds = check_split(labelled_split(raw, data, cfg.split, label_column), cfg.split,
                     loaded.recorded("text_column", cfg.text_column, "text"), label_column)
    labels = LabelMap.for_model(loaded.model.config.id2label, ds.data.column("label"))
    ds = apply_labels(ds, labels, cfg.split, known_by="the model")
    subset = ds.select(test_subset(len(ds), cfg.samples, cfg.seed, flag="--samples"))
    enc = tokenize(subset, loaded.tokenizer, loaded.max_length, loaded.truncation, cfg.cache_dir)
    loader = eval_loader(enc, cfg.batch_size, loaded.tokenizer.pad_token_id or 0,
                         loaded.max_length)
    result = evaluate(loaded.model, loader, device, num_labels=labels.num_labels,
                      autocast=autocast_for(precision, device), desc=f"eval {cfg.split}",
                      names=list(labels.names))
    report = {**result.metrics,
              "confusion_matrix": confusion(result.logits, result.labels, labels.num_labels),
              "labels": list(labels.names),
              "split": cfg.split, "data": data, "model": cfg.model,
              "max_length": loaded.max_length,
              "truncation": loaded.truncation, "precision_mode": precision}
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
    where = dataid.locate(recorded, identity, False, f"model {cfg.model}",
                          base=Path(cfg.model).expanduser().resolve())
    return relative_path(where) if identity.get("kind") == "folder" else where, identity


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
