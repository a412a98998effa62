"""python -m bertsent.train: setup -> fit -> validate -> finish, readable top to bottom.

The setup_* functions build a Run (data, labels, model, optimizer, loaders) and build_run
restores a checkpoint into it; fit() is the loop, in stanzas; validate() is one evaluation
pass; finish() exports the final model and reports the best one on the test split. Each other
concern has a module of its own (see docs/architecture.md): this file only calls them.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from bertsent import checkpoint as ckpt
from bertsent import distributed as D
from bertsent.attention import use_attention
from bertsent.cli import parse_overrides
from bertsent.config import LOWER_IS_BETTER, TrainConfig
from bertsent.data import Splits, labelled_splits, start_notes, subset_indices
from bertsent.dataid import portable
from bertsent.ema import WeightAverage
from bertsent.engine import EvalResult, NonFiniteError, StepResult, evaluate, to_device, train_step
from bertsent.errors import fail, run_cli
from bertsent.export import add_test_results, load_weights, read_meta, save_model
from bertsent.firsttoken import cut_to_first_token
from bertsent.jsonio import strict_json
from bertsent.labels import LabelMap, class_weights
from bertsent.model import check_max_length, load_model, load_tokenizer
from bertsent.optim import build_optimizer, lr_at, planned_steps
from bertsent.progress import Progress, every
from bertsent.resume import resolve_or_finished, resume_command, run_facts, saved_labels
from bertsent.runfolder import RunLock, RunPaths, prepare, relative_path
from bertsent.runtime import (
    autocast_for,
    device_name,
    keep_matplotlib_in,
    pick_device,
    pick_precision,
    seed_everything,
    setup_process,
)
from bertsent.sampling import TrainBatchSampler, windows
from bertsent.scoring import for_scoring
from bertsent.signals import Stopper
from bertsent.sparse import use_sparse_embeddings
from bertsent.summary import (
    describe_labels,
    evaluate_command,
    run_summary,
    scores,
    tidy,
    validation_line,
)
from bertsent.tokens import Collator, EncodedDataset, eval_loader, tokenize
from bertsent.tracking import RunLogger, StepMeter


@dataclass
class Hooks:
    """What a caller adds to a run: stop as if SIGTERM arrived after an optimizer step (tests),
    and a look at each validation point (`on_validation(step, metrics)`: True ends the run
    there like an early stop; the sweep prunes a trial this way)."""

    stop_after_step: int | None = None
    on_validation: Callable[[int, dict[str, Any]], bool] | None = None

    @classmethod
    def from_env(cls) -> Hooks:  # subprocess tests set it through the environment
        stop = os.environ.get("BERTSENT_STOP_AFTER_STEP")
        return cls(stop_after_step=int(stop) if stop else None)


@dataclass
class Run:
    """Everything fit() needs, built by the setup_* functions."""

    cfg: TrainConfig
    dist: D.DistInfo
    device: torch.device
    precision: str
    tokenizer: Any
    raw_model: torch.nn.Module  # the bare model: state dicts, export, best weights
    model: torch.nn.Module  # what training calls: cut, compiled, DDP-wrapped as set
    eval_model: torch.nn.Module  # the model inside DDP: ranks hold unequal eval batches
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    ema: WeightAverage | None  # --ema: the average is what is evaluated and exported
    step: Any  # train_step with this run's constants bound: step(micro, lr=, num_items=)
    sampler: TrainBatchSampler
    train_loader: torch.utils.data.DataLoader
    val_loader: torch.utils.data.DataLoader | None
    test_loader: torch.utils.data.DataLoader
    total_steps: int
    warmup_steps: int
    paths: RunPaths
    logger: RunLogger
    labels: LabelMap  # class ids <-> names, decided once and saved in every checkpoint
    class_weights: torch.Tensor | None  # per-class loss weights (--class-weights)
    stopper: Stopper
    splits: Splits
    val_texts: list[str] = field(default_factory=list)  # for misclassified examples in TB
    test_texts: list[str] = field(default_factory=list)  # for the report's confident mistakes
    history: list[tuple[int, float]] = field(default_factory=list)

    def live_state(self, progress: Progress) -> dict[str, Any]:
        """The checkpoint's live entries, saved and restored the same way (checkpoint.py)."""
        return {"model": self.raw_model, "optimizer": self.optimizer, "scaler": self.scaler,
                "ema": self.ema, "progress": progress, "rng": ckpt.GlobalRNG()}

    def averaged(self):
        """The weights to evaluate and export: the average under --ema (swapped in for the
        duration), else the training weights as they are."""
        return self.ema.applied(self.raw_model) if self.ema else contextlib.nullcontext()


# ---------------------------------------------------------------- setup
def setup_data(cfg: TrainConfig, tokenizer, dist: D.DistInfo, splits: Splits
               ) -> tuple[dict[str, EncodedDataset | None], list[str], list[str]]:
    """Subset and tokenise ({train, val, test}, validation texts, test texts); rank 0 fills the
    token cache first. Validation comes from the data's own validation split when it has one,
    else it is carved from train."""
    val_source = splits.validation if splits.validation is not None else splits.train
    if splits.validation is not None and cfg.val_samples is not None and \
            cfg.val_samples > len(splits.validation):  # as --test-samples is
        fail(f"--val-samples {cfg.val_samples} is larger than the validation split "
             f"({len(splits.validation)} rows): lower it or omit it to use all")
    idx = subset_indices(len(splits.train), len(splits.test), cfg.train_samples,
                         val_size(cfg, splits), cfg.test_samples, cfg.seed,
                         n_val=len(splits.validation) if splits.validation is not None else None)
    parts = {"train": (splits.train, idx.train), "val": (val_source, idx.val),
             "test": (splits.test, idx.test if cfg.test else idx.test[:0])}  # --no-test: unread
    with D.main_process_first(dist):
        encoded = {name: tokenize(ds.select(ix), tokenizer, cfg.max_length, cfg.truncation,
                                  cfg.cache_dir) if len(ix) else None
                   for name, (ds, ix) in parts.items()}
    val_texts = val_source.select(idx.val)["text"] if len(idx.val) else []
    return encoded, val_texts, splits.test.select(idx.test)["text"] if cfg.test else []


def val_size(cfg: TrainConfig, splits: Splits) -> int:
    return cfg.val_size(len(splits.train), carved=splits.validation is None)


def setup_model(cfg: TrainConfig, device: torch.device, labels: LabelMap):
    tokenizer = load_tokenizer(cfg.model)
    model = load_model(cfg.model, labels.num_labels, cfg.dropout, labels.names)
    check_max_length(model, cfg.max_length, cfg.model)
    if cfg.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    elif cfg.sparse_embeddings:
        use_sparse_embeddings(model)
    use_attention(model, cfg.attention)
    return tokenizer, model.to(device)


def setup_optimizer(cfg: TrainConfig, model: torch.nn.Module, device: torch.device,
                    precision: str) -> tuple[torch.optim.Optimizer, torch.amp.GradScaler | None]:
    """AdamW over the model's parameter groups, and the loss scaler fp16 needs."""
    optimizer = build_optimizer(model, cfg.lr, cfg.weight_decay, device, cfg.head_lr_mult,
                                cfg.layer_lr_decay)
    return optimizer, torch.amp.GradScaler(device.type) if precision == "fp16" else None


def bind_step(run: Run) -> Any:
    """train_step with the run's constants bound: the loop passes what changes per step."""
    cfg = run.cfg
    return functools.partial(
        train_step, run.model, run.optimizer, max_grad_norm=cfg.max_grad_norm,
        autocast=autocast_for(run.precision, run.device), scaler=run.scaler,
        world_size=run.dist.world_size, skip_nonfinite=cfg.skip_nonfinite,
        class_weights=run.class_weights,
        all_reduce=D.all_reduce_sum if run.dist.enabled else None)


def build_run(cfg: TrainConfig, dist: D.DistInfo, device: torch.device, stopper: Stopper,
              resume_state: dict | None) -> tuple[Run, Progress]:
    precision = pick_precision(cfg.precision, device)
    made_with = (resume_state.get("data_identity"), "the checkpoint") if resume_state else \
        (None, "")
    splits, labels = labelled_splits(cfg.data, cfg.text_column, cfg.label_column, cfg.labels,
                                     cfg.num_labels, saved_labels(resume_state),  # the head
                                     cfg.cache_dir, made_with)
    if splits.note:  # needs the number of classes: read them first
        D.say(f"{splits.note}; model selection uses {val_size(cfg, splits)} reviews carved "
              "from train", dist)
    if resume_state is None and dist.is_main:  # a resumed run said these at its start
        for note in start_notes(splits, labels, labels_given=cfg.labels is not None):
            D.say(note, dist)
    if cfg.select_metric == "f1_macro" and labels.num_labels == 2:
        fail("--select-metric f1_macro needs more than two classes (this data has two): pass "
             "f1 (the positive class's) or accuracy")
    seed_everything(cfg.seed)  # the classifier head's init depends on it
    tokenizer, model = setup_model(cfg, device, labels)
    data, val_texts, test_texts = setup_data(cfg, tokenizer, dist, splits)
    weights = class_weights(data["train"].labels, labels.num_labels, cfg.class_weights)
    weights = None if weights is None else torch.tensor(weights, dtype=torch.float32,
                                                        device=device)
    pad, multiple = tokenizer.pad_token_id or 0, 64 if cfg.compile else 8  # compile: few shapes
    sampler = TrainBatchSampler(data["train"].lengths, cfg.batch_size, seed=cfg.seed,
                                group_by_length=cfg.group_by_length,
                                world_size=dist.world_size, rank=dist.rank)
    train_loader = torch.utils.data.DataLoader(
        data["train"], batch_sampler=sampler, collate_fn=Collator(pad, multiple, cfg.max_length),
        num_workers=cfg.num_workers, pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(cfg.seed))  # keeps the global RNG untouched
    loaders = {name: eval_loader(data[name], cfg.eval_batch_size, pad, cfg.max_length,
                                 cfg.num_workers, dist.world_size, dist.rank, multiple,
                                 cfg.eval_tokens)
               if data[name] else None for name in ("val", "test")}
    total, note = planned_steps(len(sampler.global_batches()), cfg.grad_accum, cfg.epochs,
                                cfg.max_steps)
    if note:
        D.say(note, dist)
    optimizer, scaler = setup_optimizer(cfg, model, device, precision)
    paths = RunPaths.of(cfg.checkpoint_dir, cfg.runs_dir, cfg.run_name)
    progress = Progress()
    run = Run(cfg=cfg, dist=dist, device=device, precision=precision, tokenizer=tokenizer,
              raw_model=model, model=model, eval_model=model, optimizer=optimizer,
              scaler=scaler, ema=WeightAverage(model, cfg.ema) if cfg.ema else None, step=None,
              sampler=sampler, train_loader=train_loader,
              val_loader=loaders["val"], test_loader=loaders["test"], total_steps=total,
              warmup_steps=round(cfg.warmup_ratio * total), paths=paths, logger=RunLogger(None),
              labels=labels, class_weights=weights, stopper=stopper, splits=splits,
              val_texts=val_texts, test_texts=test_texts)
    if resume_state is not None:
        ckpt.restore(run.live_state(progress), resume_state)
    prepare(paths, resuming=resume_state is not None, main=dist.is_main)
    stepped = cut_to_first_token(model) if cfg.cut_last_layer else model  # same weights
    run.model, run.eval_model = D.wrap(stepped, cfg.compile, dist, device)
    run.step = bind_step(run)
    run.logger = RunLogger(paths.log_dir if dist.is_main else None,
                           purge_step=progress.step + 1 if resume_state is not None else None)
    return run, progress


# ---------------------------------------------------------------- checkpoints and exports
def save_state(run: Run, progress: Progress) -> None:
    """Rank 0 writes checkpoints/<run>/step-N atomically, then prunes old ones."""
    folder = run.paths.step(progress.step)
    if run.dist.is_main:
        facts = {"config": run.cfg.to_dict(), "world_size": run.dist.world_size,
                 "labels": {"names": list(run.labels.names), "by_id": run.labels.by_id},
                 **run_facts("bertsent.train", run.splits.identity)}
        try:
            ckpt.save_checkpoint(folder, ckpt.capture(run.live_state(progress), facts))
        except OSError as exc:
            fail(f"saving checkpoint {folder} failed ({exc.strerror or exc}): free disk space "
                 f"or pass another --checkpoint-dir; the previous checkpoint "
                 f"{last_checkpoint(run)} is intact")
        ckpt.prune(run.paths.folder, run.cfg.keep_last)
    D.barrier()


def last_checkpoint(run: Run) -> str:
    found = ckpt.step_checkpoints(run.paths.folder)
    return str(found[-1]) if found else "(none)"


def export(run: Run, folder, metrics: dict) -> None:
    """The model as a Hugging Face folder that `pipeline` loads (rank 0)."""
    if run.dist.is_main:
        with run.averaged():
            save_model(folder, run.raw_model, run.tokenizer, run.cfg.to_dict(), metrics,
                       list(run.labels.names), run.splits.identity)


# ---------------------------------------------------------------- the loop
def fit(run: Run, progress: Progress, hooks: Hooks) -> bool:
    """Train until the planned steps are done; False if stopped early by a signal or hook."""
    cfg = run.cfg
    with StepMeter(run.logger, run.total_steps, progress.step, cfg.log_every,
                   cfg.progress_every, run.dist.is_main) as meter:
        run.model.train()
        # each step is a window of grad_accum micro-batches, in an order fixed by (seed, epoch)
        for window, fetch, epoch_batches in windows(run.sampler, run.train_loader, progress,
                                                    cfg.grad_accum, run.total_steps):
            start = time.perf_counter()
            micro = [to_device(batch, run.device) for batch in fetch()]
            # the learning rate is a pure function of the step
            lr = lr_at(progress.step, base_lr=cfg.lr, warmup_steps=run.warmup_steps,
                       total_steps=run.total_steps)
            result = take_step(run, progress, micro, lr, sum(window))
            epoch_end = progress.advance(window, epoch_batches, result, time.perf_counter() - start)
            run.history.append((progress.step, result.loss))
            last = progress.step >= run.total_steps
            meter.step(progress, result, lr, last)
            # validate: the best point so far is exported; --patience may end the run here
            if run.val_loader is not None and (epoch_end or last or every(cfg.eval_every,
                                                                        progress.step)):
                result = validate(run, run.val_loader, progress.step)
                select(run, progress, result)
                if hooks.on_validation and hooks.on_validation(progress.step, result.metrics):
                    progress.stopped_early = True  # finishes like an early stop
                    D.say(f"stopping at step {progress.step}: the caller ended the run here "
                          "(a pruned sweep trial)", run.dist)
            # checkpoint, and stop when a signal or hook asked
            stop = run.stopper.should_stop(hooks.stop_after_step == progress.step)
            if epoch_end or last or stop or progress.stopped_early or \
                    every(cfg.save_every, progress.step):
                save_state(run, progress)
            if stop:
                return False
    return True


def take_step(run: Run, progress: Progress, micro: list, lr: float, items: int) -> StepResult:
    """One optimizer step; a non-finite loss or gradient stops the run in one line."""
    try:
        result = run.step(micro, lr=lr, num_items=items)
    except NonFiniteError as exc:
        fail(f"non-finite value at step {progress.step + 1} ({exc}): lower --lr or check the "
             f"data, or pass --skip-nonfinite; the last good checkpoint {last_checkpoint(run)} "
             "is intact")
    if run.ema is not None and not result.skipped:
        run.ema.update(run.raw_model)
    return result


def select(run: Run, progress: Progress, result: EvalResult) -> None:
    """--select-metric picks the exported model: best/ is the best validation point so far.
    After --patience points in a row without a better one, the run stops early (and finishes
    normally: the rest of the learning-rate schedule is not run). Each point gets one line
    with its figures, as a plain log has nothing else to tell them by."""
    name = run.cfg.select_metric
    best = progress.validated(result.metrics[name], name in LOWER_IS_BETTER, run.cfg.patience)
    if best:
        export(run, run.paths.best, {"val": result.metrics, "step": progress.step})
    D.say(validation_line(result.metrics, progress, name, best), run.dist)
    if progress.stopped_early:
        D.say(f"stopping early at step {progress.step}: validation {name} has not improved "
              f"for {progress.evals_since_best} points (best {progress.best_metric:.4f} at step "
              f"{progress.best_step})", run.dist)


def validate(run: Run, loader, step: int, prefix: str = "val",
             max_batches: int | None = None, average: bool = True) -> EvalResult:
    """One evaluation pass over every rank's share (of the averaged weights under --ema,
    unless they are already in the model); a full pass is logged to TensorBoard."""
    with run.averaged() if average else contextlib.nullcontext():
        model, autocast = for_scoring(run.eval_model, run.precision, run.device)
        result = evaluate(model, loader, run.device, num_labels=run.labels.num_labels,
                          autocast=autocast,
                          max_batches=max_batches, desc=prefix,
                          gather=D.all_gather_objects if run.dist.enabled else None,
                          names=list(run.labels.names), show=run.dist.is_main,
                          progress_every=run.cfg.progress_every)
    if max_batches is None:
        run.logger.evaluation(prefix, result, list(run.labels.names), step,
                              run.val_texts if prefix == "val" else None)
    return result


# ---------------------------------------------------------------- a whole run
def train(cfg: TrainConfig | dict[str, Any], hooks: Hooks | None = None) -> dict[str, Any]:
    """Run a whole training job; returns the final metrics (and writes metrics.json)."""
    overrides = cfg if isinstance(cfg, dict) else cfg.to_dict()
    with Stopper() as stopper:
        cfg, resume_state, finished = resolve_or_finished(overrides)
        if finished is not None:
            return finished
        device = pick_device(cfg.device)
        setup_process(device, cfg.threads, cfg.reuse_memory)
        dist = stopper.dist = D.setup_distributed(device.type)
        if dist.enabled and device.type == "cuda":
            device = torch.device("cuda", dist.local_rank)
            torch.cuda.set_device(device)
        if not cfg.run_name:
            name = f"{cfg.model.rstrip('/').rsplit('/', 1)[-1]}-{time.strftime('%Y%m%d-%H%M%S')}"
            cfg.run_name = D.broadcast_object(name) if dist.enabled else name
        # one process per run folder: taken before anything is written, released on every exit
        lock = RunLock(RunPaths.of(cfg.checkpoint_dir, cfg.runs_dir, cfg.run_name).folder
                       ).acquire() if dist.is_main else None
        try:
            return _train(cfg, dist, device, resume_state, hooks or Hooks.from_env(), stopper)
        finally:
            if lock is not None:
                lock.release()


def _train(cfg: TrainConfig, dist: D.DistInfo, device: torch.device, resume_state: dict | None,
           hooks: Hooks, stopper: Stopper) -> dict[str, Any]:
    run, progress = build_run(cfg, dist, device, stopper, resume_state)
    if dist.is_main:
        run.paths.config.write_text(strict_json(cfg.to_dict(), indent=2))
        run.logger.config(cfg.to_dict(), progress.step)
    weights = run.class_weights
    D.say(f"run {cfg.run_name}: {len(run.sampler.lengths)} train reviews, {run.total_steps} "
          f"steps, {run.precision} on {device}, world size {dist.world_size}"
          f"{f' ({D.backend()})' if dist.enabled else ''}; "
          + describe_labels(run.labels, None if weights is None else weights.tolist()), dist)
    if resume_state is not None:
        D.say(resume_state["resumed_from"], dist)  # once every check has passed
    if run.val_loader is not None and cfg.sanity_eval_batches:
        validate(run, run.val_loader, progress.step, max_batches=cfg.sanity_eval_batches)
    stopper.enter("train")
    try:
        finished = fit(run, progress, hooks)
    finally:
        run.logger.flush()
    if not finished:
        run.logger.close()
        D.say(f"stopped at step {progress.step}; checkpoint saved in {run.paths.folder}: "
              f"continue with {resume_command(cfg)}", dist)
        return {"interrupted": True, "step": progress.step, "history": run.history,
                "exit_code": 128 + stopper.requested if stopper.requested else 143,
                "run_name": cfg.run_name}
    return finish(run, progress)


def finish(run: Run, progress: Progress) -> dict[str, Any]:
    """Export the final model, put the best weights back, and report them on the test split:
    scores in metrics.json, plots and the most confident mistakes in report/."""
    run.stopper.enter("export", f"stopping while the final model is written; the last "
                                f"checkpoint in {run.paths.folder} is intact: "
                                f"{resume_command(run.cfg)} writes it and reports on test")
    export(run, run.paths.final, {"step": progress.step})
    best = run.paths.best if progress.best_step >= 0 else run.paths.final
    facts = {"test_split": run.splits.test_split, "train_samples": len(run.sampler.lengths),
             "val_samples": len(run.val_texts),
             "val_metrics": read_meta(str(best)).get("metrics", {}).get("val"),
             "precision": run.precision, "device_name": device_name(run.device),
             "world_size": run.dist.world_size, "best_model_dir": relative_path(best),
             "data_identity": portable(run.splits.identity, run.paths.folder.resolve())}
    if not run.cfg.test:  # a validation-only run: its best model is scored later, if ever
        result = run_summary(None, progress=progress, config=run.cfg.to_dict(),
                             labels=run.labels, facts=facts)
        run.stopper.check()
        if run.dist.is_main:
            run.paths.metrics.write_text(strict_json(result, indent=2))  # marks it finished
            chosen = (f"best validation {run.cfg.select_metric} {progress.best_metric:.4f} at "
                      f"step {progress.best_step}" if progress.best_step >= 0 else "no validation")
            D.say(f"run {run.cfg.run_name} finished without a test pass (--no-test): {chosen}; "
                  f"{evaluate_command(run.cfg, run.precision, best)} scores it; "
                  + tidy(run.paths, best, run.cfg.keep_checkpoints))
        run.logger.close()
        return {**result, "history": run.history}
    run.stopper.enter("test", f"stopping the final evaluation; the trained model is in "
                              f"{run.paths.final}: {resume_command(run.cfg)} reports on test")
    D.barrier()
    load_weights(run.raw_model, best)  # as exported: averaged already under --ema
    start = time.perf_counter()
    test = validate(run, run.test_loader, progress.step, prefix="test", average=False)
    result = run_summary(test, progress=progress, config=run.cfg.to_dict(), labels=run.labels,
                         facts={**facts, "test_seconds": time.perf_counter() - start})
    run.stopper.check()  # a signal in the test pass ends it before the run is marked finished
    if run.dist.is_main:
        write_results(run, test, result, best)
    run.logger.close()
    return {**result, "history": run.history}


def write_results(run: Run, test: EvalResult, result: dict[str, Any], best) -> None:
    """The reported model's card gets the test figures; metrics.json (last: it marks the run
    finished), the report, and TensorBoard's hparams; then the disk is tidied."""
    keep_matplotlib_in(run.cfg.cache_dir)
    from bertsent.report import write_report  # matplotlib: ~1 s of start-up, only needed here

    add_test_results(best, run.cfg.to_dict(), list(run.labels.names), result)
    run.paths.metrics.write_text(strict_json(result, indent=2))
    try:
        write_report(str(run.paths.report), test, run.test_texts, result)
    except Exception as exc:  # noqa: BLE001 - the scores are saved; pictures are extra
        D.say(f"warning: the report in {run.paths.report} was not written "
              f"({type(exc).__name__}: {exc}); metrics.json is complete")
    run.logger.hparams(run.cfg.to_dict(), {**scores(test), "val_accuracy":
                                           result["val_accuracy"] or 0.0})
    D.say(f"run {run.cfg.run_name} finished: test accuracy {result['accuracy']:.4f} on "
          f"{result['test_samples']} reviews; " + tidy(run.paths, best, run.cfg.keep_checkpoints))


def main(argv: list[str] | None = None) -> int:
    def entry() -> int:
        result = train(parse_overrides(argv))
        result.pop("history")
        if not result.get("interrupted") and D.is_main_env():
            print(strict_json(result), flush=True)
        D.teardown()
        return result.get("exit_code", 0)

    return run_cli(entry)


if __name__ == "__main__":
    sys.exit(main())
