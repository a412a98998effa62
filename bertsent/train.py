"""python -m bertsent.train: setup -> fit -> validate -> test, readable top to bottom."""

from __future__ import annotations

import json
import math
import os
import shlex
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bertsent import checkpoint as ckpt
from bertsent import distributed as D
from bertsent.card import model_card
from bertsent.config import TrainConfig, check_output_folder, parse_overrides
from bertsent.data import (
    Collator,
    EncodedDataset,
    Splits,
    apply_labels,
    check_split,
    load_raw,
    pick_splits,
    subset_indices,
    tokenize,
)
from bertsent.engine import EvalResult, NonFiniteError, evaluate, to_device, train_step
from bertsent.errors import Interrupted, fail, run_cli
from bertsent.labels import LabelMap, class_weights
from bertsent.metrics import (
    confident_mistakes,
    expected_calibration_error,
    softmax,
    strict_json,
)
from bertsent.model import META_FILE, check_max_length, load_model, load_tokenizer, unwrap
from bertsent.optim import build_optimizer, lr_at
from bertsent.resume import RunFinished, resolve_resume
from bertsent.runfolder import RunLock, relative_path
from bertsent.runtime import (
    autocast_for,
    device_name,
    pick_device,
    pick_precision,
    seed_everything,
)
from bertsent.sampling import EvalBatchSampler, TrainBatchSampler
from bertsent.tracking import Meter, RunLogger


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint."""

    step: int = 0  # optimizer steps taken
    epoch: int = 0
    batch_in_epoch: int = 0  # global micro-batches consumed this epoch: the sampler position
    samples_seen: int = 0
    train_seconds: float = 0.0
    best_metric: float = -math.inf
    best_step: int = -1
    skipped_steps: int = 0
    loss_sum: float = 0.0  # summed step losses since the last logged point
    loss_steps: int = 0  # steps in that sum: the logged loss is their mean


@dataclass
class Hooks:
    """Test hooks: stop as if SIGTERM arrived after this optimizer step."""

    stop_after_step: int | None = None


@dataclass
class Run:
    """Everything fit() needs, built by the setup_* functions."""

    cfg: TrainConfig
    dist: D.DistInfo
    device: torch.device
    precision: str
    tokenizer: Any
    model: torch.nn.Module  # possibly compiled / DDP-wrapped
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    sampler: TrainBatchSampler
    train_loader: torch.utils.data.DataLoader
    val_loader: torch.utils.data.DataLoader | None
    test_loader: torch.utils.data.DataLoader
    total_steps: int
    warmup_steps: int
    ckpt_dir: Path  # checkpoints/<run-name>: checkpoints, models, metrics (TensorBoard: runs/)
    logger: RunLogger
    val_texts: list[str] = field(default_factory=list)  # for misclassified examples in TB
    test_raw: Any = None  # the test reviews as text, for the report's confident mistakes
    history: list[tuple[int, float]] = field(default_factory=list)
    stop_signal: int | None = None
    labels: LabelMap = field(default_factory=lambda: LabelMap.identity(2))  # ids <-> names
    class_weights: torch.Tensor | None = None  # per-class loss weights (--class-weights)
    test_split: str = "test"  # the split reported on: "validation" when test has no labels
    phase: str = "train"  # then "export" (writing final/) and "test": a signal stops those

    @property
    def label_names(self) -> list[str]:
        return list(self.labels.names)


def say(dist: D.DistInfo, message: str) -> None:
    if dist.is_main:
        print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- setup
def setup_labels(cfg: TrainConfig, dist: D.DistInfo, saved: dict | None = None
                 ) -> tuple[Splits, LabelMap]:
    """Read the data, decide which split does what, check it, and map its labels to class ids.

    The classes come from the whole train split (not the --train-samples subset, so they do
    not change with it). A resumed run takes them from its checkpoint (`saved`), exactly as
    they were, and only checks that the data still maps onto them; cfg keeps what the user gave.
    """
    splits = pick_splits(load_raw(cfg.data), cfg.data, cfg.label_column)
    if splits.note:
        say(dist, splits.note + (f"; model selection uses {cfg.val_samples} reviews carved "
                                 "from train" if cfg.val_samples else ""))
    train_split = check_split(splits.train, "train", cfg.text_column, cfg.label_column)
    if saved is not None:
        labels = LabelMap(names=tuple(saved["names"]), by_id=bool(saved["by_id"]))
    else:
        labels = LabelMap.from_column(train_split.data.column("label"), cfg.labels,
                                      cfg.num_labels)

    def ready(ds, name: str):
        return apply_labels(check_split(ds, name, cfg.text_column, cfg.label_column), labels,
                            name)

    valid = splits.validation
    return Splits(apply_labels(train_split, labels, "train"),
                  ready(splits.test, splits.test_split),
                  ready(valid, "validation") if valid is not None else None,
                  splits.test_split, splits.note), labels


def saved_labels(state: dict) -> dict:
    """The class map a checkpoint was trained with. Checkpoints written before the map had an
    entry of its own kept it in their config (num_labels, and labels when not plain ids)."""
    if "labels" in state:
        return state["labels"]
    config = state["config"]
    if config.get("labels"):
        return {"names": list(config["labels"]), "by_id": False}
    return {"names": list(LabelMap.identity(config["num_labels"]).names), "by_id": True}


def setup_data(cfg: TrainConfig, tokenizer, dist: D.DistInfo, splits: Splits
               ) -> tuple[EncodedDataset, EncodedDataset | None, EncodedDataset, list[str], Any]:
    """Subset and tokenise; rank 0 fills the token cache before the others read. Validation
    comes from the data's own validation split when it has one, else it is carved from train."""
    train, test = splits.train, splits.test
    val_source = splits.validation if splits.validation is not None else train
    idx = subset_indices(len(train), len(test), cfg.train_samples, cfg.val_samples,
                         cfg.eval_samples, cfg.seed,
                         n_val=len(splits.validation) if splits.validation is not None else None)
    if not dist.is_main:
        D.barrier()
    enc = {name: tokenize(ds.select(ix), tokenizer, cfg.max_length, cfg.truncation,
                          cfg.cache_dir) if len(ix) else None
           for name, ds, ix in (("train", train, idx.train), ("val", val_source, idx.val),
                                ("test", test, idx.test))}
    if dist.is_main:
        D.barrier()
    val_texts = val_source.select(idx.val)["text"] if len(idx.val) else []
    return enc["train"], enc["val"], enc["test"], val_texts, test.select(idx.test)


def eval_loader(ds: EncodedDataset, cfg: TrainConfig, collate: Collator, dist: D.DistInfo
                ) -> torch.utils.data.DataLoader:
    sampler = EvalBatchSampler(ds.lengths, cfg.eval_batch_size, dist.world_size, dist.rank)
    return torch.utils.data.DataLoader(ds, batch_sampler=sampler, collate_fn=collate,
                                       num_workers=cfg.num_workers,
                                       generator=torch.Generator())  # not the global RNG


def setup_model(cfg: TrainConfig, device: torch.device, labels: LabelMap):
    tokenizer = load_tokenizer(cfg.model)
    model = load_model(cfg.model, labels.num_labels, cfg.dropout, labels.names)
    check_max_length(model, cfg.max_length, cfg.model)
    if cfg.freeze_embeddings:
        unwrap(model).get_input_embeddings().weight.requires_grad_(False)
    return tokenizer, model.to(device)


def setup_run_dirs(cfg: TrainConfig, resuming: bool) -> tuple[Path, Path]:
    """Create (or, on resume, reuse) runs/<name> and checkpoints/<name>; refuse to overwrite.

    The TensorBoard folder is outside the locked run folder: rank 0 claims it for this run's
    id, so a second run of the same name never appends its curves to this one's log."""
    ckpt_dir = Path(cfg.checkpoint_dir) / cfg.run_name
    log_dir = Path(cfg.runs_dir) / cfg.run_name
    if not resuming and (ckpt.step_checkpoints(ckpt_dir) or (ckpt_dir / "metrics.json").exists()):
        fail(f"run {cfg.run_name} already exists in {cfg.checkpoint_dir}: pass --resume latest "
             "to continue it, or a new --run-name")
    check_output_folder(str(ckpt_dir), "--checkpoint-dir")
    check_output_folder(str(log_dir), "--runs-dir")
    if D.is_main_env():
        from bertsent.runfolder import claim_log_dir

        claim_log_dir(log_dir, ckpt_dir, resuming)
    return ckpt_dir, log_dir


def build_run(cfg: TrainConfig, dist: D.DistInfo, device: torch.device,
              resume_state: dict | None) -> tuple[Run, Progress]:
    precision = pick_precision(cfg.precision, device)
    splits, labels = setup_labels(cfg, dist, None if resume_state is None
                                  else saved_labels(resume_state))  # the head needs the classes
    seed_everything(cfg.seed)  # the classifier head's init depends on it
    tokenizer, model = setup_model(cfg, device, labels)
    train_ds, val_ds, test_ds, val_texts, test_raw = setup_data(cfg, tokenizer, dist, splits)
    weights = class_weights(train_ds.labels, labels.num_labels, cfg.class_weights)
    collate = Collator(tokenizer.pad_token_id or 0, 64 if cfg.compile else 8, cfg.max_length)
    sampler = TrainBatchSampler(train_ds.lengths, cfg.batch_size, seed=cfg.seed,
                                group_by_length=cfg.group_by_length,
                                world_size=dist.world_size, rank=dist.rank)
    train_loader = torch.utils.data.DataLoader(
        train_ds, batch_sampler=sampler, collate_fn=collate, num_workers=cfg.num_workers,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(cfg.seed))  # keeps the global RNG untouched
    steps_per_epoch = math.ceil(len(sampler.global_batches()) / cfg.grad_accum)
    total = steps_per_epoch * cfg.epochs
    total = min(total, cfg.max_steps) if cfg.max_steps else total
    optimizer = build_optimizer(model, cfg.lr, cfg.weight_decay, device, cfg.head_lr_mult,
                                cfg.layer_lr_decay)
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None

    progress = Progress()
    if resume_state is not None:
        unwrap(model).load_state_dict(resume_state["model"])
        optimizer.load_state_dict(resume_state["optimizer"])
        if scaler is not None and resume_state.get("scaler"):
            scaler.load_state_dict(resume_state["scaler"])
        progress = Progress(**resume_state["progress"])
        ckpt.set_rng_state(resume_state["rng"])

    ckpt_dir, log_dir = setup_run_dirs(cfg, resume_state is not None)
    if cfg.compile:
        model = torch.compile(model, dynamic=False)
    if dist.enabled:
        ids = [device.index] if device.type == "cuda" else None
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids,
                                                          broadcast_buffers=False)
    logger = RunLogger(log_dir if dist.is_main else None,
                       purge_step=progress.step + 1 if resume_state is not None else None)
    run = Run(cfg=cfg, dist=dist, device=device, precision=precision, tokenizer=tokenizer,
              model=model, optimizer=optimizer, scaler=scaler, sampler=sampler,
              train_loader=train_loader,
              val_loader=eval_loader(val_ds, cfg, collate, dist) if val_ds else None,
              test_loader=eval_loader(test_ds, cfg, collate, dist), total_steps=total,
              warmup_steps=round(cfg.warmup_ratio * total), ckpt_dir=ckpt_dir, logger=logger,
              val_texts=val_texts, test_raw=test_raw, labels=labels,
              test_split=splits.test_split,
              class_weights=None if weights is None else
              torch.tensor(weights, dtype=torch.float32, device=device))
    return run, progress


# ---------------------------------------------------------------- checkpoints of a run
def save_state(run: Run, progress: Progress) -> Path | None:
    """Rank 0 writes checkpoints/<run>/step-N atomically, then prunes old ones."""
    folder = run.ckpt_dir / f"{ckpt.STEP_PREFIX}{progress.step}"
    if run.dist.is_main:
        state = {
            "model": unwrap(run.model).state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "scaler": run.scaler.state_dict() if run.scaler else None,
            "progress": asdict(progress),
            "rng": ckpt.rng_state(),
            "config": run.cfg.to_dict(),
            "labels": {"names": list(run.labels.names), "by_id": run.labels.by_id},
            "world_size": run.dist.world_size,
        }
        try:
            ckpt.save_checkpoint(folder, state)
        except OSError as exc:
            prev = ckpt.step_checkpoints(run.ckpt_dir)
            fail(f"saving checkpoint {folder} failed ({exc.strerror or exc}): free disk space "
                 f"or pass another --checkpoint-dir; the previous checkpoint "
                 f"{prev[-1] if prev else '(none)'} is intact")
        ckpt.prune(run.ckpt_dir, run.cfg.keep_last)
    D.barrier()
    return folder


def save_model(run: Run, folder: Path, metrics: dict) -> None:
    """Hugging Face format with tokenizer and training settings: loads in `pipeline`."""
    if not run.dist.is_main:
        return
    bad = [n for n, p in unwrap(run.model).named_parameters() if not torch.isfinite(p).all()]
    if bad:
        fail(f"the model has non-finite weights ({bad[0]}{' and others' if len(bad) > 1 else ''})"
             f" and was not exported to {folder}: lower --lr or check the data; earlier "
             "checkpoints are intact")
    meta = {"max_length": run.cfg.max_length, "truncation": run.cfg.truncation,
            "metrics": metrics, "config": run.cfg.to_dict()}

    def write(tmp: Path) -> None:
        unwrap(run.model).save_pretrained(tmp)
        run.tokenizer.save_pretrained(tmp)
        (tmp / META_FILE).write_text(strict_json(meta, indent=2))
        (tmp / "README.md").write_text(model_card(run.cfg.to_dict(), metrics, run.label_names))

    try:
        ckpt.atomic_folder(folder, write)
    except OSError as exc:
        fail(f"saving the model to {folder} failed ({exc.strerror or exc}): free disk space "
             "or pass another --checkpoint-dir")


# ---------------------------------------------------------------- the loop
def validate(run: Run, loader, step: int, prefix: str = "val",
             max_batches: int | None = None) -> EvalResult:
    gather = D.all_gather_objects if run.dist.enabled else None
    # Ranks hold different numbers of eval batches: run the module inside DDP, whose forward
    # would otherwise wait for the other ranks.
    model = run.model.module if run.dist.enabled else run.model
    result = evaluate(model, loader, run.device, num_labels=run.labels.num_labels,
                      autocast=autocast_for(run.precision, run.device),
                      max_batches=max_batches, desc=prefix, gather=gather,
                      names=run.label_names, show=run.dist.is_main,
                      progress_every=run.cfg.progress_every)
    if max_batches is None:
        run.logger.scalars(prefix, result.metrics, step)
        probs = softmax(result.logits) if len(result.labels) else None
        if run.labels.num_labels == 2 and probs is not None:
            run.logger.pr_curve(f"{prefix}/pr_curve", result.labels, probs[:, 1], step)
        elif probs is not None:  # one-vs-rest: one F1 per class, one curve while readable
            from bertsent.config import PR_CURVE_MAX_CLASSES  # as many as the report draws

            if len(run.label_names) <= PR_CURVE_MAX_CLASSES:  # more would swell every eval
                for i, name in enumerate(run.label_names):
                    run.logger.pr_curve(f"{prefix}/pr_curve/{name}", result.labels == i,
                                        probs[:, i], step)
            run.logger.scalars(f"{prefix}/f1_per_class", {
                name: v["f1"] for name, v in result.metrics["per_class"].items()}, step)
        if prefix == "val" and run.val_texts and probs is not None:
            run.logger.text("val/misclassified", misclassified(run, result, probs), step)
    return result


def misclassified(run: Run, result: EvalResult, probs: np.ndarray, k: int = 5) -> str:
    """A few validation reviews the model got wrong, surest first (markdown for TensorBoard)."""
    names = run.labels.names
    lines = [f"**true {names[int(result.labels[i])]}, p={probs[i].max():.3f}**: "
             f"{run.val_texts[int(result.indices[i])][:400]}"
             for i in confident_mistakes(result.labels, probs, k)]
    return "\n\n".join(lines) or "(none)"


def fit(run: Run, progress: Progress, hooks: Hooks) -> bool:
    """Train until the planned steps are done; False if stopped early by a signal or hook."""
    cfg, autocast = run.cfg, autocast_for(run.precision, run.device)
    reduce = D.all_reduce_sum if run.dist.enabled else None
    meter = Meter(run.total_steps, "step", every=cfg.progress_every, enabled=run.dist.is_main,
                  initial=progress.step)
    run.model.train()
    while progress.step < run.total_steps:
        run.sampler.set_epoch(progress.epoch, progress.batch_in_epoch)
        sizes = [len(b) for b in run.sampler.global_batches()]
        batches = iter(run.train_loader)
        while progress.batch_in_epoch < len(sizes) and progress.step < run.total_steps:
            start = time.perf_counter()
            window = sizes[progress.batch_in_epoch : progress.batch_in_epoch + cfg.grad_accum]
            micro = [to_device(next(batches), run.device) for _ in window]
            lr = lr_at(progress.step, base_lr=cfg.lr, warmup_steps=run.warmup_steps,
                       total_steps=run.total_steps)
            try:
                result = train_step(run.model, run.optimizer, micro, lr=lr, num_items=sum(window),
                                    max_grad_norm=cfg.max_grad_norm, autocast=autocast,
                                    scaler=run.scaler, world_size=run.dist.world_size,
                                    skip_nonfinite=cfg.skip_nonfinite, all_reduce=reduce,
                                    class_weights=run.class_weights)
            except NonFiniteError as exc:
                last = ckpt.step_checkpoints(run.ckpt_dir)
                fail(f"non-finite value at step {progress.step + 1} ({exc}): lower --lr or "
                     f"check the data, or pass --skip-nonfinite; the last good checkpoint "
                     f"{last[-1] if last else '(none)'} is intact")
            progress.step += 1
            progress.batch_in_epoch += len(window)
            progress.samples_seen += result.num_items
            progress.train_seconds += time.perf_counter() - start
            progress.skipped_steps += result.skipped
            epoch_end = progress.batch_in_epoch == len(sizes)
            if epoch_end:
                progress.epoch, progress.batch_in_epoch = progress.epoch + 1, 0
            run.history.append((progress.step, result.loss))
            if not result.skipped:
                progress.loss_sum, progress.loss_steps = (progress.loss_sum + result.loss,
                                                          progress.loss_steps + 1)
            done = progress.step >= run.total_steps
            log_now = progress.step % cfg.log_every == 0 if cfg.log_every else False
            sps = progress.samples_seen / max(progress.train_seconds, 1e-9)
            # the mean loss of the window so far: what the next logged point will show
            window_loss = progress.loss_sum / max(progress.loss_steps, 1)
            if (log_now or done) and progress.loss_steps:
                progress.loss_sum, progress.loss_steps = 0.0, 0
                run.logger.scalars("train", {"loss": window_loss, "lr": lr,
                                             "grad_norm": result.grad_norm,
                                             "samples_per_second": sps,
                                             "skipped_steps": progress.skipped_steps},
                                   progress.step)
            meter.update(progress.step, f"loss {window_loss:.4f}", f"{sps:.1f} samples/s")
            if run.val_loader is not None and (epoch_end or done or (
                    cfg.eval_every and progress.step % cfg.eval_every == 0)):
                metrics = validate(run, run.val_loader, progress.step).metrics
                if metrics["accuracy"] > progress.best_metric:
                    progress.best_metric, progress.best_step = metrics["accuracy"], progress.step
                    save_model(run, run.ckpt_dir / "best", {"val": metrics,
                                                           "step": progress.step})
                run.model.train()
            stop = run.stop_signal is not None or hooks.stop_after_step == progress.step
            if run.dist.enabled:
                stop = bool(D.all_reduce_sum(torch.tensor(float(stop))).item())
            if epoch_end or done or stop or (cfg.save_every and progress.step % cfg.save_every
                                             == 0):
                save_state(run, progress)
            if stop:
                meter.close()
                return False
            if epoch_end:
                break  # the next epoch gets a new order and a new iterator
    meter.close()
    return True


# ---------------------------------------------------------------- entry points
def resume_command(cfg: TrainConfig) -> str:
    """The whole command that continues this run (`--resume latest` alone would pick the newest
    run of the checkpoint root, which may be another one)."""
    where = "" if cfg.checkpoint_dir == TrainConfig.checkpoint_dir else \
        f" --checkpoint-dir {shlex.quote(cfg.checkpoint_dir)}"
    return (f"python -m bertsent.train --resume latest --run-name {shlex.quote(cfg.run_name)}"
            f"{where}")


def _install_signal_handlers(run: Run) -> dict:
    """While training, the first SIGINT/SIGTERM finishes the step, checkpoints and exits; a
    second exits at once (safe: checkpoints are written atomically). Once the steps are done
    there is no step to finish: a signal while the final model is written or during the test
    pass ends the run at once (the last checkpoint, or final/, is intact). Returns the previous
    handlers, restored when train() returns."""
    def handler(signum, frame):
        name = signal.Signals(signum).name
        if run.phase == "export":
            say(run.dist, f"\n{name}: stopping while the final model is written; the last "
                          f"checkpoint in {run.ckpt_dir} is intact: {resume_command(run.cfg)} "
                          "writes it and reports on test")
        elif run.phase == "test":
            say(run.dist, f"\n{name}: stopping the final evaluation; the trained model is in "
                          f"{run.ckpt_dir / 'final'}: {resume_command(run.cfg)} reports on test")
        if run.stop_signal is not None or run.phase != "train":
            sys.exit(128 + signum)
        run.stop_signal = signum
        say(run.dist, f"\n{name}: finishing this step and saving a checkpoint (again to quit "
                      "at once)")

    return {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}


def train(cfg: TrainConfig | dict[str, Any], hooks: Hooks | None = None) -> dict[str, Any]:
    """Run a whole training job; returns the final metrics (and writes metrics.json)."""
    if hooks is None:  # subprocess tests stop a run at a chosen step through the environment
        stop = os.environ.get("BERTSENT_STOP_AFTER_STEP")
        hooks = Hooks(stop_after_step=int(stop) if stop else None)
    overrides = cfg if isinstance(cfg, dict) else cfg.to_dict()
    previous = signal.signal(signal.SIGTERM, _stopped_during_start_up)
    try:
        return _start(overrides, hooks)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stopped_during_start_up(signum, frame):
    """SIGTERM before training starts: nothing to save yet; unwind like Ctrl-C, so that a
    half-written tokenisation cache file and the run lock are cleaned up on the way out."""
    raise Interrupted(signum, f"interrupted ({signal.Signals(signum).name}) during start-up: "
                              "nothing was saved; run the same command again")


def _start(overrides: dict[str, Any], hooks: Hooks) -> dict[str, Any]:
    try:
        cfg, resume_state = resolve_resume(overrides)
    except RunFinished as done:
        if D.is_main_env():
            print(done, file=sys.stderr)
        return {**done.metrics, "already_finished": True, "history": []}
    device = pick_device(cfg.device)
    dist = D.setup_distributed(device.type)
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    if not cfg.run_name:
        name = f"{Path(cfg.model.rstrip('/')).name}-{time.strftime('%Y%m%d-%H%M%S')}"
        cfg.run_name = D.broadcast_object(name) if dist.enabled else name
    # one process per run folder: taken before anything is written, released on every exit
    lock = RunLock(Path(cfg.checkpoint_dir) / cfg.run_name).acquire() if dist.is_main else None
    try:
        return _train(cfg, dist, device, resume_state, hooks)
    finally:
        if lock is not None:
            lock.release()


def _train(cfg: TrainConfig, dist: D.DistInfo, device: torch.device,
           resume_state: dict | None, hooks: Hooks) -> dict[str, Any]:
    run, progress = build_run(cfg, dist, device, resume_state)
    if resume_state is not None:
        say(dist, resume_state["resumed_from"])  # once every check has passed
    if dist.is_main:
        (run.ckpt_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
        run.logger.config(cfg.to_dict(), progress.step)
    say(dist, f"run {cfg.run_name}: {len(run.sampler.lengths)} train reviews, "
              f"{run.total_steps} steps, {run.precision} on {device}, "
              f"world size {dist.world_size}; {describe_labels(run)}")
    if run.val_loader is not None and cfg.sanity_eval_batches:
        validate(run, run.val_loader, progress.step, max_batches=cfg.sanity_eval_batches)
    previous = _install_signal_handlers(run)
    try:
        try:
            finished = fit(run, progress, hooks)
        finally:
            run.logger.flush()
        if not finished:
            run.logger.close()
            say(dist, f"stopped at step {progress.step}; checkpoint saved in {run.ckpt_dir}: "
                      f"continue with {resume_command(cfg)}")
            code = 128 + (run.stop_signal or signal.SIGTERM)
            return {"interrupted": True, "step": progress.step, "exit_code": code,
                    "history": run.history, "run_name": cfg.run_name}
        run.phase = "export"
        return finish(run, progress)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


RESULT_SETTINGS = ("model", "data", "max_length", "truncation", "epochs", "batch_size",
                   "grad_accum", "lr", "head_lr_mult", "layer_lr_decay", "warmup_ratio",
                   "weight_decay", "dropout", "val_samples", "seed")


def describe_labels(run: Run) -> str:
    """'3 classes: 0=negative, 1=neutral, 2=positive' (and the class weights when used)."""
    names = run.label_names
    shown = ", ".join(f"{i}={n}" for i, n in enumerate(names[:10])) + \
        (", ..." if len(names) > 10 else "")
    weights = "" if run.class_weights is None else \
        "; class weights " + ", ".join(f"{w:.3g}" for w in run.class_weights.tolist()[:10])
    return f"{len(names)} classes: {shown}{weights}"


def finish(run: Run, progress: Progress) -> dict[str, Any]:
    """Save the final model, reload the best one, and report it on the test split: scores in
    metrics.json, plots and the most confident mistakes in report/."""
    from bertsent.report import write_report  # matplotlib: only once the run is done

    cfg = run.cfg
    save_model(run, run.ckpt_dir / "final", {"step": progress.step})
    run.phase = "test"
    best_dir = run.ckpt_dir / ("best" if progress.best_step >= 0 else "final")
    D.barrier()
    best = load_model(str(best_dir), run.labels.num_labels, names=run.labels.names
                      ).to(run.device)
    unwrap(run.model).load_state_dict(best.state_dict())
    del best
    test_start = time.perf_counter()
    test = validate(run, run.test_loader, progress.step, prefix="test")
    test_seconds = time.perf_counter() - test_start
    metrics = {k: test.metrics[k] for k in ("accuracy", "f1", "precision", "recall", "loss",
                                            "f1_macro", "f1_weighted", "mae")
               if k in test.metrics}
    result = {
        **metrics,
        **({"per_class": test.metrics["per_class"]} if "per_class" in test.metrics else {}),
        "labels": run.label_names,
        "test_split": run.test_split,
        "expected_calibration_error": expected_calibration_error(test.labels,
                                                                 softmax(test.logits)),
        "test_samples": test.metrics["samples"],
        "train_samples": len(run.sampler.lengths),
        "val_accuracy": progress.best_metric if progress.best_step >= 0 else None,
        "best_step": progress.best_step,
        "steps": progress.step,
        "train_samples_per_second": progress.samples_seen / max(progress.train_seconds, 1e-9),
        "train_seconds": progress.train_seconds,
        "test_seconds": test_seconds,
        "skipped_steps": progress.skipped_steps,
        "precision_mode": run.precision,
        "device_name": device_name(run.device),
        "world_size": run.dist.world_size,
        "run_name": cfg.run_name,
        "best_model_dir": relative_path(best_dir),  # from where the run started: no machine's
        "settings": {k: cfg.to_dict()[k] for k in RESULT_SETTINGS},
    }
    if run.dist.is_main:
        (run.ckpt_dir / "metrics.json").write_text(strict_json(result, indent=2))
        try:
            write_report(str(run.ckpt_dir / "report"), test, run.test_raw["text"], result)
        except Exception as exc:  # noqa: BLE001 - the scores are saved; pictures are extra
            say(run.dist, f"warning: the report in {run.ckpt_dir / 'report'} was not written "
                          f"({type(exc).__name__}: {exc}); metrics.json is complete")
        run.logger.hparams(cfg.to_dict(), {**metrics, "val_accuracy": result["val_accuracy"]
                                           or 0.0})
    run.logger.close()
    return {**result, "history": run.history}


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
