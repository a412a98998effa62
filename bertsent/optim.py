"""AdamW with decay on weight matrices only, and the learning rate as a pure function of step."""

from __future__ import annotations

import torch


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


def param_groups(model: torch.nn.Module, weight_decay: float,
                 head_lr_mult: float = 1.0) -> list[dict]:
    """Decay weight matrices (ndim >= 2); never biases or LayerNorm weights (ndim 1).

    The freshly initialised head (pooler + classifier) can learn `head_lr_mult` times faster
    than the pre-trained body; each group carries its multiplier as `lr_mult`.
    """
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            head = head_lr_mult != 1.0 and any(m in name for m in HEAD_MARKERS)
            groups.setdefault((p.ndim >= 2, head), []).append(p)
    return [{"params": params, "weight_decay": weight_decay if decay else 0.0,
             "lr_mult": head_lr_mult if head else 1.0}
            for (decay, head), params in sorted(groups.items(), key=lambda kv: (not kv[0][0],
                                                                                kv[0][1]))]


def build_optimizer(model: torch.nn.Module, lr: float, weight_decay: float,
                    device: torch.device, head_lr_mult: float = 1.0) -> torch.optim.AdamW:
    """Fused AdamW (one kernel over all parameters) where this torch has it for the device."""
    groups = param_groups(model, weight_decay, head_lr_mult)
    try:
        return torch.optim.AdamW(groups, lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=lr, foreach=device.type != "cpu" or None)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_mult", 1.0)
