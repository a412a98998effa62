"""Which settings may differ between a checkpoint and the run that resumes it."""

from __future__ import annotations

from typing import Any

from bertsent.config import TrainConfig
from bertsent.errors import fail

# Changing these changes what is trained or the order it is seen in: never allowed.
UNSAFE = ("model", "data", "text_column", "label_column", "num_labels", "max_length",
          "truncation", "train_samples", "val_samples", "seed", "group_by_length", "epochs",
          "lr", "weight_decay", "warmup_ratio", "max_grad_norm", "max_steps",
          "freeze_embeddings", "grad_accum", "dropout", "head_lr_mult",
          "layer_lr_decay")
# These change how the run is evaluated, logged or computed: allowed with --resume-force.
SAFE = ("eval_samples", "eval_batch_size", "eval_every", "save_every", "log_every",
        "keep_last", "sanity_eval_batches", "precision", "compile", "device", "num_workers",
        "skip_nonfinite", "cache_dir")


def differences(saved: dict[str, Any], saved_world: int, cfg: TrainConfig, world: int
                ) -> tuple[list[str], list[str]]:
    """(unsafe, safe) differences as 'name: saved -> now' strings."""
    now = cfg.to_dict()
    # a setting added after the checkpoint was written had its default then
    saved = {**TrainConfig().to_dict(), **saved}
    unsafe = [f"{k}: {saved[k]!r} -> {now[k]!r}" for k in UNSAFE if saved[k] != now[k]]
    safe = [f"{k}: {saved[k]!r} -> {now[k]!r}" for k in SAFE if saved[k] != now[k]]
    before, after = saved["batch_size"] * saved_world, cfg.batch_size * world
    if before != after:
        unsafe.append(f"global batch (batch_size x processes): {saved['batch_size']} x "
                      f"{saved_world} = {before} -> {cfg.batch_size} x {world} = {after}")
    return unsafe, safe


def check_compatible(saved: dict[str, Any], saved_world: int, cfg: TrainConfig,
                     world: int) -> None:
    unsafe, safe = differences(saved, saved_world, cfg, world)
    if unsafe:
        fail("cannot resume: the checkpoint was made with other settings ("
             + "; ".join(unsafe) + "): resume with the same settings or start a new run")
    if safe and not cfg.resume_force:
        fail("the checkpoint was made with other settings (" + "; ".join(safe)
             + "): pass --resume-force to resume with the new ones")
