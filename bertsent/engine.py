"""The two loops' bodies: one optimizer step over K micro-batches, and a full evaluation."""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from bertsent.metrics import compute_metrics, expected_calibration_error, softmax
from bertsent.optim import set_lr
from bertsent.runtime import AutocastFactory, out_of_memory_is_one_line
from bertsent.scoring import scored, workers_for
from bertsent.sparse import clip_grad_norm
from bertsent.tracking import Meter


@dataclass
class StepResult:
    loss: float  # mean (class-weighted) loss per sample of the step, all micro-batches/ranks
    grad_norm: float  # global norm before clipping
    skipped: bool = False  # the update was skipped because loss or gradient was not finite


LossFn = Callable[[torch.nn.Module, dict, AutocastFactory], torch.Tensor]  # a summed loss


class NonFiniteError(RuntimeError):
    """Loss or gradient norm became NaN/inf."""


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    non_blocking = device.type == "cuda"
    return {k: v.to(device, non_blocking=non_blocking) for k, v in batch.items()}


def forward_logits(model: torch.nn.Module, batch: dict[str, torch.Tensor],
                   autocast: AutocastFactory) -> torch.Tensor:
    with autocast():
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    return out.logits.float()


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
               micro_batches: list[dict[str, torch.Tensor]], *, lr: float, num_items: int,
               max_grad_norm: float = 1.0,
               autocast: AutocastFactory = contextlib.nullcontext,
               scaler: torch.amp.GradScaler | None = None, world_size: int = 1,
               skip_nonfinite: bool = False,
               all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
               class_weights: torch.Tensor | None = None,
               loss_fn: LossFn | None = None) -> StepResult:
    """Forward, loss, backward for each micro-batch, then clip, step and zero the gradients.

    Each micro-batch's summed loss is divided by `num_items`, the samples of the whole step on
    all ranks, so K micro-batches of B equal one batch of K*B exactly (also for a short last
    step); DDP averages gradients over ranks, hence the `world_size` factor. With
    `class_weights` each sample's loss is multiplied by its class's weight and the sum is
    still divided by `num_items` (not by the sum of the weights, which no micro-batch knows):
    the loss is the mean weighted loss per sample, and accumulation stays exact.

    `loss_fn(model, batch, autocast)` replaces the classification loss with another summed one
    (the masked-LM loss of pre-training, where `num_items` counts masked tokens).
    """
    set_lr(optimizer, lr)
    losses = []
    for i, batch in enumerate(micro_batches):
        last = i == len(micro_batches) - 1
        sync = contextlib.nullcontext() if last or not hasattr(model, "no_sync") \
            else model.no_sync()
        with sync:
            loss = loss_fn(model, batch, autocast) if loss_fn else F.cross_entropy(
                forward_logits(model, batch, autocast), batch["labels"], weight=class_weights,
                reduction="sum")
            scaled = loss * (world_size / num_items)
            (scaler.scale(scaled) if scaler else scaled).backward()
        losses.append(loss.detach())
    loss_sum = torch.stack(losses).double().sum()  # stays on the device: one sync per step
    if all_reduce is not None:
        loss_sum = all_reduce(loss_sum)
    mean_loss = loss_sum.item() / num_items
    if scaler:
        scaler.unscale_(optimizer)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    grad_norm = clip_grad_norm(params, max_grad_norm if max_grad_norm > 0 else float("inf")
                               ).item()
    finite = math.isfinite(mean_loss) and (scaler is not None or math.isfinite(grad_norm))
    if not finite and not skip_nonfinite:
        optimizer.zero_grad(set_to_none=True)
        raise NonFiniteError(f"loss {mean_loss} / grad norm {grad_norm}")
    if scaler:
        scaler.step(optimizer)  # skips the update itself on inf/NaN gradients
        scaler.update()
    elif finite:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return StepResult(loss=mean_loss, grad_norm=grad_norm, skipped=not finite)


@dataclass
class EvalResult:
    metrics: dict
    logits: np.ndarray  # (n, num_labels), in the dataset's order of `indices`
    labels: np.ndarray
    indices: np.ndarray
    probs: np.ndarray  # softmax of the logits, computed once for every consumer

    @functools.cached_property
    def calibration_error(self) -> float:
        return expected_calibration_error(self.labels, self.probs) if len(self.labels) else 0.0


@torch.inference_mode()
def predict_logits(model: torch.nn.Module, loader: Iterable[dict[str, torch.Tensor]],
                   device: torch.device,
                   autocast: AutocastFactory = contextlib.nullcontext,
                   max_batches: int | None = None, desc: str = "eval", show: bool = True,
                   progress_every: float = 60.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logits, labels and dataset indices for every batch of the loader (this rank's share),
    with a progress bar, or plain progress lines in a log (`show`: this process shows it)."""
    was_training = model.training
    model.eval()
    logits, labels, indices = [], [], []
    batches = list(getattr(getattr(loader, "batch_sampler", None), "batches", []))
    if max_batches is not None:
        batches = batches[:max_batches]
    total = sum(len(b) for b in batches)
    meter = Meter(total, desc, unit="review", every=progress_every, enabled=show and total > 0,
                  leave=False)
    start, done = time.perf_counter(), 0

    def forward(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        with out_of_memory_is_one_line(batch["input_ids"].shape):
            return forward_logits(model, to_device(batch, device), autocast)

    chosen = itertools.islice(loader, max_batches)  # max_batches None: every batch
    for batch, out in scored(forward, chosen, workers_for(device, len(batches))):
        logits.append(out.cpu().numpy())
        labels.append(batch["labels"].numpy())
        indices.append(batch["index"].numpy())
        done += len(batch["index"])
        meter.update(min(done, total),
                     f"{done / max(time.perf_counter() - start, 1e-9):.1f} reviews/s")
    meter.close()
    model.train(was_training)
    if not logits:
        return np.zeros((0, 0), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(logits), np.concatenate(labels), np.concatenate(indices)


def evaluate(model: torch.nn.Module, loader: Iterable[dict[str, torch.Tensor]],
             device: torch.device, *, num_labels: int = 2,
             autocast: AutocastFactory = contextlib.nullcontext,
             max_batches: int | None = None, desc: str = "eval",
             gather: Callable[[tuple], list[tuple]] | None = None,
             names: list[str] | None = None, show: bool = True,
             progress_every: float = 60.0) -> EvalResult:
    """Run the model over the loader in inference mode and score the whole set at once.

    Under data parallelism `gather` collects every rank's (logits, labels, indices); rows are
    put back in dataset order and each index is counted exactly once.
    """
    logits, labels, indices = predict_logits(model, loader, device, autocast, max_batches, desc,
                                             show, progress_every)
    if gather is not None:
        parts = [p for p in gather((logits, labels, indices)) if len(p[2])]
        logits = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
        indices = np.concatenate([p[2] for p in parts])
    order = np.argsort(indices, kind="stable")
    logits, labels, indices = logits[order], labels[order], indices[order]
    if len(np.unique(indices)) != len(indices):
        raise AssertionError("an evaluation sample was counted twice")
    return EvalResult(compute_metrics(logits, labels, num_labels, names), logits, labels,
                      indices, softmax(logits) if len(labels) else logits)
