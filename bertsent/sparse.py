"""Word-embedding updates that touch only the rows a step used (`--sparse-embeddings`).

A BERT's word embeddings are half of MiniLM's parameters (30,522 x 384), but a step of 8
reviews reads about 1,500 of their rows. With a dense gradient, every step still zeroes a
47 MB gradient, sums its norm and runs AdamW over all 11.7M values; on a CPU that is memory
traffic the matmuls wait on. With `nn.Embedding(sparse=True)` the gradient holds only the rows
used; `SparseRowsAdamW` updates those rows (and their moments) and leaves the others alone.

That is lazy AdamW, not AdamW: a row the step did not use keeps its moments, so its momentum
does not carry it further and its weight decay waits until it is used again. On every row it
does use, the update is AdamW's, with the same step count for the bias corrections.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch


def use_sparse_embeddings(model: torch.nn.Module) -> None:
    """Make the word embeddings' gradient row-sparse (the model's other parameters stay dense).
    A model whose output layer shares those weights (a masked-LM head) cannot use it."""
    embeddings = model.get_input_embeddings()
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if output is not None and output.weight is embeddings.weight:
        raise ValueError("the word embeddings are tied to the output layer: their gradient "
                         "is dense")
    embeddings.sparse = True


def clip_grad_norm(params: Iterable[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
    """`torch.nn.utils.clip_grad_norm_` that also counts row-sparse gradients (which torch's
    cannot): the same global norm as the dense gradient would have, and the same scaling."""
    params = [p for p in params if p.grad is not None]
    sparse = [p for p in params if p.grad.is_sparse]
    if not sparse:
        return torch.nn.utils.clip_grad_norm_(params, max_norm)
    for p in sparse:
        p.grad = p.grad.coalesce()  # a row used twice counts once, with its summed gradient
    dense = [p.grad for p in params if not p.grad.is_sparse]
    norms = [torch.linalg.vector_norm(p.grad._values()) for p in sparse]
    if dense:
        norms.append(torch.nn.utils.get_total_norm(dense))
    total = torch.linalg.vector_norm(torch.stack(norms))
    if math.isfinite(max_norm):
        scale = torch.clamp(max_norm / (total + 1e-6), max=1.0)
        if dense:
            torch._foreach_mul_(dense, scale)
        for p in sparse:
            p.grad._values().mul_(scale)
    return total


class SparseRowsAdamW(torch.optim.AdamW):
    """AdamW (fused where torch has it) for dense gradients, lazy AdamW for row-sparse ones.

    The sparse rows keep their state under AdamW's own names (`step`, `exp_avg`,
    `exp_avg_sq`), so a checkpoint's optimizer state has the same shape either way.
    """

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102 - AdamW's
        if closure is not None:
            raise ValueError("SparseRowsAdamW takes no closure")
        sparse = [(group, p, p.grad) for group in self.param_groups for p in group["params"]
                  if p.grad is not None and p.grad.is_sparse]
        for _, p, _ in sparse:
            p.grad = None  # AdamW skips a parameter without a gradient
        try:
            super().step()
        finally:
            for _, p, grad in sparse:
                p.grad = grad
        for group, p, grad in sparse:
            self._update_rows(group, p, grad.coalesce())

    def _update_rows(self, group: dict, p: torch.Tensor, grad: torch.Tensor) -> None:
        if group["amsgrad"] or group["maximize"]:
            raise ValueError("sparse embedding updates support neither amsgrad nor maximize")
        state = self.state[p]
        if not state:
            state["step"] = torch.tensor(0.0)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["step"] += 1
        step = state["step"].item()
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        rows, values = grad._indices()[0], grad._values()
        weights = p.index_select(0, rows).mul_(1 - lr * group["weight_decay"])
        exp_avg = state["exp_avg"].index_select(0, rows).lerp_(values, 1 - beta1)
        exp_avg_sq = state["exp_avg_sq"].index_select(0, rows).mul_(beta2).addcmul_(
            values, values, value=1 - beta2)
        denom = (exp_avg_sq.sqrt() / math.sqrt(1 - beta2 ** step)).add_(eps)
        weights.addcdiv_(exp_avg, denom, value=-lr / (1 - beta1 ** step))
        p.index_copy_(0, rows, weights)
        state["exp_avg"].index_copy_(0, rows, exp_avg)
        state["exp_avg_sq"].index_copy_(0, rows, exp_avg_sq)
