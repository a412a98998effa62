"""Attention for training steps on a CPU: two batched matmuls and a softmax where a backward
follows, SDPA's fused kernel everywhere else.

PyTorch's CPU flash-attention backward is slow at BERT's small heads (MiniLM: 12 heads of 32):
on a CPU with AMX it took 38-42% of a bf16 training step, about 1.6 GFLOP in 50-70 ms a layer,
far below the matmul rate. Written out as `softmax(q k^T + bias) v` in the activations' bf16,
autograd runs the backward as four batched matmuls and a softmax backward (docs/performance.md:
x1.2-1.5 a step). The forward alone is faster in the fused kernel, so evaluation and every
pass without a gradient keep SDPA; fp32 steps keep it too (the written-out form is no faster
there). The numbers are those of HF's eager attention under autocast (bf16 scores, the
softmax accumulated in fp32), with the probabilities kept in bf16 instead of fp32.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

_NAMES = {"auto": "bertsent_auto", "matmul": "bertsent_matmul"}
_LOW = (torch.bfloat16, torch.float16)


def written_out(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                mask: torch.Tensor | None, scaling: float, dropout: float,
                training: bool) -> torch.Tensor:
    """softmax(q k^T * scaling + mask) v in q's dtype, autocast off (it would run the softmax
    in fp32 and keep fp32 probabilities for the backward). mask: bool, True = attend,
    broadcastable to (batch, heads, queries, keys). Returns (batch, queries, heads, dim)."""
    with torch.autocast(query.device.type, enabled=False):
        dtype = query.dtype
        scores = torch.matmul(query * scaling, key.to(dtype).transpose(-1, -2))
        if mask is not None:  # an additive bias: its gradient is free, masked_fill's is not
            bias = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
            scores = scores + bias.masked_fill_(~mask, torch.finfo(dtype).min)
        probs = F.dropout(torch.softmax(scores, dim=-1), p=dropout, training=training)
        return torch.matmul(probs, value.to(dtype)).transpose(1, 2).contiguous()


def wants_written_out(module: torch.nn.Module, query: torch.Tensor, always: bool) -> bool:
    """A backward will follow (training), the attention is bidirectional, and either the mode
    is 'matmul' or this is a bf16/fp16 step on a CPU ('auto')."""
    if not (torch.is_grad_enabled() and query.requires_grad) or getattr(module, "is_causal",
                                                                        False):
        return False
    return always or (query.device.type == "cpu" and query.dtype in _LOW)


def attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
              value: torch.Tensor, attention_mask: torch.Tensor | None,
              scaling: float | None = None, dropout: float = 0.0, *, always: bool = False,
              **kwargs) -> tuple[torch.Tensor, None]:
    """transformers' attention-function interface (what `attn_implementation` names)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if not wants_written_out(module, query, always):
        return sdpa_attention_forward(module, query, key, value, attention_mask,
                                      dropout=dropout, scaling=scaling, **kwargs)
    scaling = query.size(-1) ** -0.5 if scaling is None else scaling
    return written_out(query, key, value, attention_mask, scaling, dropout,
                       module.training), None


def key_padding_mask(*args, **kwargs) -> torch.Tensor | None:
    """SDPA's boolean mask, cut to (batch, 1, 1, keys) when every query row is the same (a
    padding mask): the bias the written-out form adds is then batch x keys, not keys^2."""
    from transformers.masking_utils import sdpa_mask

    full = sdpa_mask(*args, **kwargs)
    if full is None or full.dim() != 4:
        return full
    keys = full[:, :, :1, :]
    return keys if bool((full == keys).all()) else full


@functools.cache
def _register() -> None:
    from transformers import AttentionInterface, AttentionMaskInterface

    for mode, name in _NAMES.items():
        AttentionInterface.register(name, functools.partial(attention, always=mode == "matmul"))
        AttentionMaskInterface.register(name, key_padding_mask)


def use_attention(model: torch.nn.Module, mode: str) -> None:
    """--attention: give a model that runs SDPA the written-out training attention ('auto',
    'matmul'); 'sdpa' and models without SDPA are left as they are."""
    if mode == "sdpa" or getattr(model.config, "_attn_implementation", None) != "sdpa":
        return
    _register()
    model.set_attn_implementation(_NAMES[mode])
