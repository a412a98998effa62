"""Inference passes: the model they run (bf16 weights where bf16 is native, a last layer that
computes only the first token) and how their batches run (side by side on a CPU's threads).

A sequence classifier of the BERT family reads one vector of its last layer, the first
token's ([CLS], <s>): BERT's pooler and the RoBERTa/ELECTRA heads take `hidden[:, 0]`. Every
other position of the last layer is computed and thrown away. The first token still attends
to every key, so the last layer needs the keys and values of all tokens, but its query, its
attention output, its feed-forward block and its LayerNorms only for one row: for MiniLM-L6
that is 10 of the last layer's 12 hidden^2 multiply-adds per token, about 14% of a forward
pass (28% for MiniLM-L3), and the same share of GELU and LayerNorm. The logits are the same
computation on fewer rows: equal to the full forward to 1e-6 in fp32 (tests/test_scoring.py).
Models whose head or layer this module does not know score with the full forward.

The same encoder hands the layers the padding mask as one row per review (faster in SDPA's
CPU kernel than transformers' row per query). `scored` runs whole batches side by side, one
per thread, where a CPU has several threads and enough batches (docs/performance.md).
"""

from __future__ import annotations

import collections
import contextlib
import copy
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import torch
import torch.nn.functional as F
from transformers.modeling_outputs import BaseModelOutputWithPastAndCrossAttentions

from bertsent.runtime import AutocastFactory, autocast_for

# Heads that read only the first token of the last layer, over BERT-shaped layers
# (`attention.self.{query,key,value}`, `attention.output`, `feed_forward_chunk`).
FIRST_TOKEN_HEADS = ("BertForSequenceClassification", "RobertaForSequenceClassification",
                     "XLMRobertaForSequenceClassification", "CamembertForSequenceClassification",
                     "ElectraForSequenceClassification")


def first_token_output(layer: torch.nn.Module, hidden_states: torch.Tensor,
                       attention_mask: torch.Tensor | None) -> torch.Tensor:
    """A BERT layer's output for the first token only, (batch, 1, hidden): the query is that
    token's, the keys and values every token's."""
    attention = layer.attention
    heads = attention.self.num_attention_heads
    batch, length, _ = hidden_states.shape
    first = hidden_states[:, :1]

    def split(x: torch.Tensor, rows: int) -> torch.Tensor:
        return x.view(batch, rows, heads, -1).transpose(1, 2)

    query = split(attention.self.query(first), 1)
    key = split(attention.self.key(hidden_states), length)
    value = split(attention.self.value(hidden_states), length)
    context = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask,
                                             scale=attention.self.scaling)
    context = context.transpose(1, 2).reshape(batch, 1, -1)
    return layer.feed_forward_chunk(attention.output(context, first))


class ScoringEncoder(torch.nn.Module):
    """The encoder of an inference pass. It shares the wrapped encoder's layers (and so its
    parameter names and weights) and holds no state of its own; it returns only the first
    token's last hidden state, (batch, 1, hidden).

    The padding mask reaches the layers as one row per review, (batch, 1, 1, keys), instead of
    transformers' (batch, 1, queries, keys): every query row of a bidirectional padding mask is
    the same, and SDPA's CPU kernel is faster with the row broadcast (docs/performance.md)."""

    def __init__(self, encoder: torch.nn.Module):
        super().__init__()
        self.layer = encoder.layer

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                *args, **kwargs) -> BaseModelOutputWithPastAndCrossAttentions:
        if attention_mask is not None and attention_mask.dim() == 4:
            attention_mask = attention_mask[:, :, :1, :]
        *body, last = self.layer
        for layer in body:
            hidden_states = layer(hidden_states, attention_mask)
        return BaseModelOutputWithPastAndCrossAttentions(
            last_hidden_state=first_token_output(last, hidden_states, attention_mask))


def cuttable(model: torch.nn.Module) -> bool:
    """A head that reads only the first token over BERT-shaped layers, not a decoder, and not
    cut already."""
    if type(model).__name__ not in FIRST_TOKEN_HEADS or getattr(model.config, "is_decoder",
                                                                False):
        return False
    encoder = getattr(model.base_model, "encoder", None)
    layers = getattr(encoder, "layer", None)
    if isinstance(encoder, ScoringEncoder) or not isinstance(layers, torch.nn.ModuleList) \
            or not len(layers):
        return False
    attention = getattr(layers[-1], "attention", None)
    return hasattr(layers[-1], "feed_forward_chunk") and hasattr(attention, "output") and all(
        hasattr(getattr(attention, "self", None), name)
        for name in ("query", "key", "value", "num_attention_heads", "scaling"))


def _own_children(module: torch.nn.Module) -> torch.nn.Module:
    """A shallow copy with its own table of children (the children themselves shared)."""
    twin = copy.copy(module)
    twin._modules = dict(module._modules)
    return twin


def cut_to_first_token(model: torch.nn.Module) -> torch.nn.Module:
    """The model with a ScoringEncoder, sharing every weight with `model` (which is left as it
    is); `model` itself where the cut does not apply."""
    if not cuttable(model):
        return model
    cut, base = _own_children(model), _own_children(model.base_model)
    base._modules["encoder"] = ScoringEncoder(base.encoder)
    cut._modules[model.base_model_prefix] = base
    return cut


def for_scoring(model: torch.nn.Module, precision: str, device: torch.device
                ) -> tuple[torch.nn.Module, AutocastFactory]:
    """(the model, the autocast) an inference pass runs with: the last layer cut to the first
    token, and in bf16 a bf16 copy of the weights without autocast. Autocast keeps fp32
    weights and casts every one of them again for every batch, and keeps LayerNorm and the
    residual stream in fp32 (1.15-1.3x slower on a CPU with AMX, docs/performance.md;
    probabilities differ by about 2e-4). The trained weights (and a compiled or averaged
    model) are left as they are; fp32 and fp16 score with them, fp32 to 1e-6 of the full
    forward."""
    plain = getattr(model, "_orig_mod", model)  # a torch.compile'd model: its module
    if precision != "bf16":
        cut = cut_to_first_token(plain)
        return (model if cut is plain else cut), autocast_for(precision, device)
    return cut_to_first_token(copy.deepcopy(plain).to(torch.bfloat16)), contextlib.nullcontext


def workers_for(device: torch.device, batches: int) -> int:
    """How many batches a CPU scores at once: one per thread torch may use, when there are at
    least two batches for each (fewer, and the threads share each batch as before)."""
    threads = torch.get_num_threads()
    return threads if device.type == "cpu" and threads > 1 and batches >= 2 * threads else 1


def scored(forward: Callable[[dict], torch.Tensor], batches: Iterable[dict],
           workers: int = 1) -> Iterator[tuple[dict, torch.Tensor]]:
    """(batch, forward(batch)) for every batch, in order. With `workers` > 1 that many batches
    are scored at once, each on one thread of its own (torch's threads are set to 1 for the
    pass and restored after): on a CPU the small operations of one batch (LayerNorm, GELU,
    softmax, adds) keep every thread waiting on the others at each operation, while whole
    batches side by side never wait (docs/performance.md). At most 2 x `workers` batches are
    in flight. Each worker runs `forward` under inference mode (grad mode is per thread)."""
    if workers <= 1:
        for batch in batches:
            yield batch, forward(batch)
        return

    def work(batch: dict) -> torch.Tensor:
        torch.set_num_threads(1)  # OpenMP's thread count is per thread: this worker's own
        with torch.inference_mode():
            return forward(batch)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(workers, thread_name_prefix="bertsent-score") as pool:
            pending: collections.deque = collections.deque()
            for batch in batches:
                pending.append((batch, pool.submit(work, batch)))
                if len(pending) >= 2 * workers:
                    done, future = pending.popleft()
                    yield done, future.result()
            while pending:
                done, future = pending.popleft()
                yield done, future.result()
    finally:
        torch.set_num_threads(threads)
