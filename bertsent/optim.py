"""AdamW with decay on weight matrices only, and the learning rate as a pure function of step."""

from __future__ import annotations

import math
import re

import torch

from bertsent.sparse import SparseRowsAdamW


def lr_at(step: int, *, base_lr: float, warmup_steps: int, total_steps: int) -> float:
    """Learning rate for the update that takes the optimizer from `step` to `step + 1`.

    Linear warmup over `warmup_steps` (never exactly zero), then linear decay that reaches 0 at
    `total_steps`. Being a function of the step alone, resuming needs no scheduler state.
    """
    if step < warmup_steps:
        return base_lr * (step + 1) / (warmup_steps + 1)
    decay_steps = max(1, total_steps - warmup_steps)
    return base_lr * max(0.0, 1.0 - (step - warmup_steps) / decay_steps)


HEAD_MARKERS = ("classifier", "pooler")
LAYER_INDEX = re.compile(r"\.layers?\.(\d+)\.")


def planned_steps(batches_per_epoch: int, grad_accum: int, epochs: int,
                  max_steps: int | None) -> tuple[int, str]:
    """(optimizer steps, a note or ''): the epochs' worth of steps, or --max-steps when fewer.
    --max-steps never adds epochs, so asking for more than they hold gets a note that says
    what the run takes and how to get the rest."""
    per_epoch = math.ceil(batches_per_epoch / grad_accum)
    total = per_epoch * epochs
    if max_steps and max_steps > total:
        return total, (f"note: --max-steps {max_steps} is more than {epochs} epoch"
                       f"{'s' if epochs > 1 else ''} of {per_epoch} steps hold: the run takes "
                       f"{total} steps (pass --epochs {math.ceil(max_steps / per_epoch)} for "
                       f"{max_steps})")
    return (min(total, max_steps) if max_steps else total), ""


def depth_from_top(name: str, num_layers: int) -> int:
    """0 for the top encoder layer, num_layers - 1 for the bottom one, num_layers for the
    embeddings (and anything else below the encoder)."""
    match = LAYER_INDEX.search(name)
    return num_layers - 1 - int(match.group(1)) if match else num_layers


def param_groups(model: torch.nn.Module, weight_decay: float,
                 head_lr_mult: float = 1.0, layer_lr_decay: float = 1.0) -> list[dict]:
    """Decay weight matrices (ndim >= 2); never biases or LayerNorm weights (ndim 1).

    The freshly initialised head (pooler + classifier) can learn `head_lr_mult` times faster
    than the pre-trained body. With `layer_lr_decay` < 1 each encoder layer learns that much
    slower than the one above it, and the embeddings slowest (Sun et al. 2019: lower layers
    hold general features that fine-tuning should move least). Each group carries its
    multiplier as `lr_mult`; with both at 1 the groups are the same as plain AdamW's.
    """
    num_layers = getattr(getattr(model, "config", None), "num_hidden_layers", 0) or 0
    groups: dict[tuple[bool, bool, float], list] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            head = head_lr_mult != 1.0 and any(m in name for m in HEAD_MARKERS)
            if head:
                mult = head_lr_mult
            elif layer_lr_decay != 1.0 and not any(m in name for m in HEAD_MARKERS):
                mult = layer_lr_decay ** depth_from_top(name, num_layers)
            else:
                mult = 1.0
            groups.setdefault((p.ndim >= 2, head, mult), []).append(p)
    order = sorted(groups, key=lambda k: (not k[0], k[1], -k[2]))
    return [{"params": groups[key], "weight_decay": weight_decay if key[0] else 0.0,
             "lr_mult": key[2]} for key in order]


def build_optimizer(model: torch.nn.Module, lr: float, weight_decay: float,
                    device: torch.device, head_lr_mult: float = 1.0,
                    layer_lr_decay: float = 1.0) -> torch.optim.AdamW:
    """Fused AdamW (one kernel over all parameters) where this torch has it for the device;
    row-sparse gradients (`--sparse-embeddings`) get lazy AdamW on their rows."""
    groups = param_groups(model, weight_decay, head_lr_mult, layer_lr_decay)
    try:
        return SparseRowsAdamW(groups, lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return SparseRowsAdamW(groups, lr=lr, foreach=device.type != "cpu" or None)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_mult", 1.0)
