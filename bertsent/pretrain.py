"""python -m bertsent.pretrain: within-task pre-training before fine-tuning (Sun et al. 2019).

Continues masked-language-model training of a base model on the data's own texts: the train
split and an unlabelled split when the data has one (IMDb's 50,000 `unsup` reviews), never the
validation or test texts. The same machinery as bertsent.train: a DataLoader over
length-grouped batches with dynamic padding, AdamW with the step-function schedule, TensorBoard,
sealed checkpoints with exact resume, progress lines. Masks are BERT's (15% of the tokens, a
pure function of seed, epoch and batch) and the loss runs the vocabulary projection on the
masked positions only (bertsent/mlm.py). The result, `checkpoints/<run>/final`, is a plain
encoder folder like the base model (its pooler kept): `bertsent.train --model` takes it.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from bertsent import checkpoint as ckpt
from bertsent import dataid
from bertsent import distributed as D
from bertsent.attention import use_attention
from bertsent.cli import parse_overrides
from bertsent.config import PretrainConfig
from bertsent.datafiles import pretraining_texts
from bertsent.engine import NonFiniteError, to_device, train_step
from bertsent.errors import fail, run_cli
from bertsent.jsonio import strict_json
from bertsent.mlm import (
    Masked,
    freeze_encoder,
    mask_seed,
    mask_tokens,
    masked_lm_loss,
    mlm_parts,
)
from bertsent.model import check_max_length, load_tokenizer, where
from bertsent.optim import build_optimizer, lr_at, planned_steps
from bertsent.progress import Progress, every
from bertsent.resume import Rules, resolve_or_finished, resume_command, run_facts
from bertsent.runfolder import RunLock, RunPaths, prepare, relative_path
from bertsent.runtime import (
    autocast_for,
    pick_device,
    pick_precision,
    seed_everything,
    setup_process,
)
from bertsent.sampling import TrainBatchSampler, windows
from bertsent.signals import Stopper
from bertsent.summary import tidy
from bertsent.tokens import Collator, EncodedDataset, tokenize
from bertsent.tracking import RunLogger, StepMeter

RULES = Rules(PretrainConfig,
              unsafe=("model", "data", "runs_dir", "text_column", "max_length", "truncation",
                      "mask_prob", "epochs", "max_steps", "head_steps", "grad_accum", "lr",
                      "weight_decay", "warmup_ratio", "max_grad_norm", "val_samples",
                      "group_by_length", "seed"),
              safe=("eval_every", "save_every", "log_every", "keep_last", "precision",
                    "attention", "device", "cache_dir"),
              module="bertsent.pretrain")
META_FILE = "bertsent-pretrain.json"  # the settings and held-out losses, beside the model


@dataclass
class PretrainRun:
    """Everything the pre-training loop needs."""

    cfg: PretrainConfig
    device: torch.device
    precision: str
    tokenizer: Any
    model: torch.nn.Module  # the masked-LM model (encoder + vocabulary head)
    optimizer: torch.optim.Optimizer
    sampler: TrainBatchSampler
    train_loader: torch.utils.data.DataLoader
    held_out: EncodedDataset | None
    total_steps: int
    warmup_steps: int
    paths: RunPaths
    logger: RunLogger
    stopper: Stopper
    special_ids: list[int]
    sources: list[str]  # the splits the texts come from
    history: list[tuple[int, float]]
    identity: dict | None = None  # what the data is (dataid.py), saved in every checkpoint

    def live_state(self, progress: Progress) -> dict[str, Any]:
        return {"model": self.model, "optimizer": self.optimizer, "progress": progress,
                "rng": ckpt.GlobalRNG()}

    def mask(self, batch: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
        """A padded batch with its masks, as train_step's micro-batch for mlm_loss."""
        masked = mask_tokens(batch["input_ids"], batch["attention_mask"],
                             special_ids=self.special_ids, mask_id=self.tokenizer.mask_token_id,
                             vocab_size=len(self.tokenizer), seed=seed, prob=self.cfg.mask_prob)
        return to_device({"input_ids": masked.input_ids, "attention_mask": batch["attention_mask"],
                          "positions": masked.positions, "targets": masked.targets}, self.device)


def mlm_loss(model: torch.nn.Module, batch: dict, autocast) -> torch.Tensor:
    """train_step's loss for pre-training: summed over the masked positions."""
    masked = Masked(batch["input_ids"], batch["positions"], batch["targets"])
    with autocast():
        return masked_lm_loss(model, masked, batch["attention_mask"])


# ---------------------------------------------------------------- setup
def check_head_steps(head_steps: int, total_steps: int | None) -> None:
    """Head-only steps must leave the encoder some: checked before the texts are read when
    --max-steps gives the budget, and again once the data has fixed the run's length."""
    if total_steps is not None and head_steps >= total_steps:
        fail(f"--head-steps {head_steps} leaves none of the run's {total_steps} steps to train "
             f"the encoder: pass fewer, or raise --max-steps or --epochs")


def setup_texts(cfg: PretrainConfig, tokenizer, made_with: dict | None = None
                ) -> tuple[EncodedDataset, EncodedDataset | None, list[str], dict]:
    """Tokenised texts to learn from, a seeded held-out slice to measure on, the splits read,
    and the data's identity (checked against `made_with`, a resumed checkpoint's)."""
    texts, sources, identity = pretraining_texts(cfg.data, cfg.text_column, cfg.cache_dir,
                                                 (made_with, "the checkpoint"))
    if cfg.val_samples >= len(texts):
        fail(f"--val-samples {cfg.val_samples} leaves no texts to pre-train on from "
             f"{len(texts)}: lower it")
    perm = np.random.default_rng(cfg.seed).permutation(len(texts))
    held, rest = perm[:cfg.val_samples], perm[cfg.val_samples:]
    def encode(ix: np.ndarray) -> EncodedDataset:
        return tokenize(texts.select(ix), tokenizer, cfg.max_length, cfg.truncation,
                        cfg.cache_dir)

    return encode(rest), encode(held) if len(held) else None, sources, identity


def setup_model(cfg: PretrainConfig, device: torch.device) -> torch.nn.Module:
    from transformers import AutoModelForMaskedLM

    try:
        model = AutoModelForMaskedLM.from_pretrained(cfg.model)
    except Exception:  # noqa: BLE001 - hub, file and format errors mean the same to a user
        fail(where(cfg.model))
    try:
        mlm_parts(model)
    except ValueError:
        fail(f"{cfg.model} is not a BERT-style model (no masked-LM head to train): pass a "
             "BERT-family model")
    check_max_length(model, cfg.max_length, cfg.model)
    use_attention(model, cfg.attention)
    return model.to(device)


def build(cfg: PretrainConfig, device: torch.device, stopper: Stopper,
          resume_state: dict | None) -> tuple[PretrainRun, Progress]:
    precision = pick_precision(cfg.precision, device)
    tokenizer = load_tokenizer(cfg.model)
    if tokenizer.mask_token_id is None:
        fail(f"the tokenizer of {cfg.model} has no mask token: pass a BERT-family model")
    seed_everything(cfg.seed)  # the new vocabulary head's init depends on it
    model = setup_model(cfg, device)
    train_ds, held_out, sources, identity = setup_texts(
        cfg, tokenizer, resume_state.get("data_identity") if resume_state else None)
    sampler = TrainBatchSampler(train_ds.lengths, cfg.batch_size, seed=cfg.seed,
                                group_by_length=cfg.group_by_length)
    loader = torch.utils.data.DataLoader(
        train_ds, batch_sampler=sampler, collate_fn=Collator(tokenizer.pad_token_id or 0, 8),
        generator=torch.Generator().manual_seed(cfg.seed))
    total, note = planned_steps(len(sampler.global_batches()), cfg.grad_accum, cfg.epochs,
                                cfg.max_steps)
    if note:
        D.say(note)
    check_head_steps(cfg.head_steps, total)
    optimizer = build_optimizer(model, cfg.lr, cfg.weight_decay, device)
    paths = RunPaths.of(cfg.checkpoint_dir, cfg.runs_dir, cfg.run_name)
    run = PretrainRun(cfg=cfg, device=device, precision=precision, tokenizer=tokenizer,
                      model=model, optimizer=optimizer, sampler=sampler, train_loader=loader,
                      held_out=held_out, total_steps=total,
                      warmup_steps=round(cfg.warmup_ratio * total), paths=paths,
                      logger=RunLogger(None), stopper=stopper,
                      special_ids=list(tokenizer.all_special_ids), sources=sources, history=[],
                      identity=identity)
    progress = Progress()
    if resume_state is not None:
        ckpt.restore(run.live_state(progress), resume_state)
    prepare(paths, resuming=resume_state is not None, main=True)
    run.logger = RunLogger(paths.log_dir, purge_step=progress.step + 1 if resume_state else None)
    return run, progress


# ---------------------------------------------------------------- the loop
def fit(run: PretrainRun, progress: Progress, stop_after_step: int | None = None) -> bool:
    """Train until the planned steps are done; False if stopped early by a signal or hook."""
    cfg, autocast = run.cfg, autocast_for(run.precision, run.device)
    with StepMeter(run.logger, run.total_steps, progress.step, cfg.log_every,
                   cfg.progress_every, True) as meter:
        run.model.train()
        for window, fetch, epoch_batches in windows(run.sampler, run.train_loader, progress,
                                                    cfg.grad_accum, run.total_steps):
            start = time.perf_counter()
            # each micro-batch masked as a function of (seed, epoch, batch)
            micro = [run.mask(batch, mask_seed(cfg.seed, progress.epoch,
                                               progress.batch_in_epoch + j))
                     for j, batch in enumerate(fetch())]
            lr = lr_at(progress.step, base_lr=cfg.lr, warmup_steps=run.warmup_steps,
                       total_steps=run.total_steps)
            # the first --head-steps train the new head alone: also a pure function of the step
            freeze_encoder(run.model, progress.step < cfg.head_steps)
            try:
                result = train_step(run.model, run.optimizer, micro, lr=lr,
                                    num_items=sum(int(b["positions"].sum()) for b in micro),
                                    max_grad_norm=cfg.max_grad_norm, autocast=autocast,
                                    loss_fn=mlm_loss)
            except NonFiniteError as exc:
                fail(f"non-finite value at step {progress.step + 1} ({exc}): lower --lr")
            epoch_end = progress.advance(window, epoch_batches, result, time.perf_counter() - start)
            run.history.append((progress.step, result.loss))
            last = progress.step >= run.total_steps
            meter.step(progress, result, lr, last)
            if epoch_end or last or every(cfg.eval_every, progress.step):
                log_held_out(run, progress.step)
            stop = run.stopper.should_stop(stop_after_step == progress.step)
            if epoch_end or last or stop or every(cfg.save_every, progress.step):
                save_state(run, progress)
            if stop:
                return False
    return True


@torch.inference_mode()
def held_out_loss(run: PretrainRun) -> float | None:
    """The masked-LM loss per masked token on the held-out texts, with fixed masks."""
    if run.held_out is None:
        return None
    was_training = run.model.training
    run.model.eval()
    collate, autocast = Collator(run.tokenizer.pad_token_id or 0, 8), \
        autocast_for(run.precision, run.device)
    order = np.argsort(-run.held_out.lengths, kind="stable")
    total, count = 0.0, 0
    for i, start in enumerate(range(0, len(order), 64)):
        batch = run.mask(collate([run.held_out[j] for j in order[start:start + 64]]),
                         mask_seed(run.cfg.seed, -1, i))
        total += float(mlm_loss(run.model, batch, autocast))
        count += int(batch["positions"].sum())
    run.model.train(was_training)
    return total / max(count, 1)


def held_out_words(loss: float | None) -> str:
    """The held-out loss for a line of text; with --val-samples 0 there is none (not 'nan')."""
    return ("no held-out texts (--val-samples 0)" if loss is None
            else f"held-out masked-LM loss {loss:.4f}")


def head_words(head_steps: int) -> str:
    """How --head-steps reads in the start line and on the card ("" when off)."""
    return f" (the first {head_steps} training the new head alone)" if head_steps else ""


def log_held_out(run: PretrainRun, step: int) -> None:
    loss = held_out_loss(run)
    if loss is not None:
        run.logger.scalars("val", {"loss": loss, "perplexity": math.exp(min(loss, 50))}, step)


def save_state(run: PretrainRun, progress: Progress) -> None:
    folder = run.paths.step(progress.step)
    try:
        ckpt.save_checkpoint(folder, ckpt.capture(run.live_state(progress), {
            "config": run.cfg.to_dict(), "world_size": 1,
            **run_facts("bertsent.pretrain", run.identity)}))
    except OSError as exc:
        fail(f"saving checkpoint {folder} failed ({exc.strerror or exc}): free disk space or "
             "pass another --checkpoint-dir")
    ckpt.prune(run.paths.folder, run.cfg.keep_last)


# ---------------------------------------------------------------- export
def export(run: PretrainRun, progress: Progress, held_out: float | None) -> None:
    """The trained encoder as a folder like the base model's: the base model's own class (its
    pooler kept, since the masked-LM model has none), the new encoder weights, the tokenizer, a
    card that names its base, and the settings with the held-out losses."""
    from transformers import AutoModel

    from bertsent.card import base_model_facts, data_name

    encoder, _ = mlm_parts(run.model)
    base = AutoModel.from_pretrained(run.cfg.model)
    missing, unexpected = base.load_state_dict(encoder.state_dict(), strict=False)
    if unexpected or [k for k in missing if not k.startswith("pooler.")]:
        raise AssertionError(f"encoder weights do not fit {run.cfg.model}: {missing[:3]}")
    facts = base_model_facts(run.cfg.model)
    meta = {"config": run.cfg.to_dict(), "steps": progress.step, "sources": run.sources,
            "train_seconds": progress.train_seconds, "held_out_loss": held_out,
            "texts_seen": progress.samples_seen}
    card = (f"---\nbase_model: {facts['hub_id'] or run.cfg.model}\n"
            f"license: {facts['license'] or 'unknown'}\nlibrary_name: transformers\n"
            f"tags:\n- bertsent\n- fill-mask\n---\n\n# {run.cfg.run_name}\n\n"
            f"`{facts['hub_id'] or run.cfg.model}` after {progress.step} steps of masked-LM "
            f"training{head_words(run.cfg.head_steps)} on the {' and '.join(run.sources)} texts "
            f"of `{data_name(run.cfg.data)}` "
            f"(bertsent.pretrain; {held_out_words(held_out)}). "
            "Fine-tune it with "
            "`python -m bertsent.train --model <this folder>`.\n")

    def write(tmp) -> None:
        base.save_pretrained(tmp)
        run.tokenizer.save_pretrained(tmp)
        (tmp / META_FILE).write_text(strict_json(meta, indent=2))
        (tmp / "README.md").write_text(card)

    ckpt.atomic_folder(run.paths.final, write)


# ---------------------------------------------------------------- entry points
def pretrain(overrides: dict[str, Any], stop_after_step: int | None = None) -> dict[str, Any]:
    """A whole pre-training run; returns its summary (also in the exported folder)."""
    if D.world_size_from_env() > 1:
        fail("bertsent.pretrain runs in one process: start it without torchrun")
    with Stopper() as stopper:
        cfg, resume_state, finished = resolve_or_finished(overrides, RULES)
        if finished is not None:
            return finished
        check_head_steps(cfg.head_steps, cfg.max_steps)
        device = pick_device(cfg.device)
        setup_process(device, cfg.threads, cfg.reuse_memory)
        if not cfg.run_name:
            cfg.run_name = f"{cfg.model.rstrip('/').rsplit('/', 1)[-1]}-mlm-" \
                           f"{time.strftime('%Y%m%d-%H%M%S')}"
        lock = RunLock(RunPaths.of(cfg.checkpoint_dir, cfg.runs_dir, cfg.run_name).folder
                       ).acquire()
        try:
            return _pretrain(cfg, device, resume_state, stopper, stop_after_step)
        finally:
            lock.release()


def _pretrain(cfg: PretrainConfig, device: torch.device, resume_state: dict | None,
              stopper: Stopper, stop_after_step: int | None) -> dict[str, Any]:
    run, progress = build(cfg, device, stopper, resume_state)
    run.paths.config.write_text(strict_json(cfg.to_dict(), indent=2))
    D.say(f"pre-training run {cfg.run_name}: {len(run.sampler.lengths)} texts from "
          f"{' and '.join(run.sources)}, {run.total_steps} steps{head_words(cfg.head_steps)}, "
          f"{run.precision} on {device}")
    if resume_state is not None:
        D.say(resume_state["resumed_from"])
    stopper.enter("train")
    finished = fit(run, progress, stop_after_step)
    run.logger.flush()
    if not finished:
        run.logger.close()
        D.say(f"stopped at step {progress.step}; checkpoint saved in {run.paths.folder}: "
              f"continue with {resume_command(cfg, 'bertsent.pretrain')}")
        return {"interrupted": True, "step": progress.step, "history": run.history,
                "exit_code": 128 + (stopper.requested or 15)}
    stopper.enter("export", f"stopping while the model is written; the last checkpoint in "
                            f"{run.paths.folder} is intact: "
                            f"{resume_command(cfg, 'bertsent.pretrain')} writes it")
    held_out = held_out_loss(run)
    export(run, progress, held_out)
    summary = {"model_dir": relative_path(run.paths.final), "steps": progress.step,
               "held_out_loss": held_out, "train_seconds": progress.train_seconds,
               "texts_seen": progress.samples_seen, "sources": run.sources,
               "data_identity": dataid.portable(run.identity, run.paths.folder.resolve())}
    run.paths.metrics.write_text(strict_json(summary, indent=2))  # marks the run finished
    run.logger.close()
    D.say(f"pre-training run {cfg.run_name} finished: {held_out_words(held_out)}; "
          f"fine-tune it with python -m bertsent.train --model {run.paths.final}; "
          + tidy(run.paths, run.paths.final, cfg.keep_checkpoints))
    return {**summary, "history": run.history}


def main(argv: list[str] | None = None) -> int:
    def entry() -> int:
        result = pretrain(parse_overrides(argv, PretrainConfig, prog="bertsent.pretrain"))
        result.pop("history")
        if not result.get("interrupted"):
            print(strict_json(result), flush=True)
        return result.get("exit_code", 0)

    return run_cli(entry)


if __name__ == "__main__":
    sys.exit(main())
