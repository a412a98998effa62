"""A last layer that computes only the first token, for training steps and inference passes.

A sequence classifier of the BERT family reads one vector of its last layer, the first
token's ([CLS], <s>): BERT's pooler and the RoBERTa/ELECTRA heads take `hidden[:, 0]`. Every
other position of the last layer is computed and thrown away, and in training its gradient is
zero. The first token still attends to every key, so the last layer needs the keys and values
of all tokens, but its query, its attention output, its feed-forward block and its LayerNorms
only for one row: for MiniLM-L6 that is 10 of the last layer's 12 hidden^2 multiply-adds per
token, about 14% of a forward and a backward (28% for MiniLM-L3), and the same share of GELU
and LayerNorm. The logits and every gradient are the same computation on fewer rows: equal to
the full model's to 1e-6 in fp32 (tests/test_firsttoken.py). Models whose head or layer this
module does not know run the full forward.

The encoder hands the layers the padding mask as one row per review (faster in SDPA's CPU
kernel than transformers' row per query, and a smaller bias for the written-out attention).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from transformers.modeling_outputs import BaseModelOutputWithPastAndCrossAttentions
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

# Heads that read only the first token of the last layer, over BERT-shaped layers
# (`attention.self.{query,key,value}`, `attention.output`, `feed_forward_chunk`).
FIRST_TOKEN_HEADS = ("BertForSequenceClassification", "RobertaForSequenceClassification",
                     "XLMRobertaForSequenceClassification", "CamembertForSequenceClassification",
                     "ElectraForSequenceClassification")


def first_token_output(layer: torch.nn.Module, hidden_states: torch.Tensor,
                       attention_mask: torch.Tensor | None) -> torch.Tensor:
    """A BERT layer's output for the first token only, (batch, 1, hidden): the query is that
    token's, the keys and values every token's. The attention is the one the model is set to
    (bertsent's written-out form in a bf16 training step, SDPA otherwise; eager models get
    SDPA, the same numbers), with the layer's own dropout."""
    self_attention = layer.attention.self
    heads = self_attention.num_attention_heads
    batch, length, _ = hidden_states.shape
    first = hidden_states[:, :1]

    def split(x: torch.Tensor, rows: int) -> torch.Tensor:
        return x.view(batch, rows, heads, -1).transpose(1, 2)

    query = split(self_attention.query(first), 1)
    key = split(self_attention.key(hidden_states), length)
    value = split(self_attention.value(hidden_states), length)
    dropout = self_attention.dropout.p if self_attention.training else 0.0
    interface = ALL_ATTENTION_FUNCTIONS.get(self_attention.config._attn_implementation)
    if interface is None:  # eager: SDPA computes the same softmax(q k^T + mask) v
        context = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask,
                                                 dropout_p=dropout,
                                                 scale=self_attention.scaling).transpose(1, 2)
    else:  # returns (batch, queries, heads, head size)
        context, _ = interface(self_attention, query, key, value, attention_mask,
                               dropout=dropout, scaling=self_attention.scaling)
    context = context.reshape(batch, 1, -1)
    return layer.feed_forward_chunk(layer.attention.output(context, first))


class FirstTokenEncoder(torch.nn.Module):
    """An encoder that shares the wrapped encoder's layers (and so its parameter names and
    weights), holds no state of its own, and returns only the first token's last hidden
    state, (batch, 1, hidden).

    The padding mask reaches the layers as one row per review, (batch, 1, 1, keys), instead of
    transformers' (batch, 1, queries, keys): every query row of a bidirectional padding mask is
    the same."""

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
    if isinstance(encoder, FirstTokenEncoder) or not isinstance(layers, torch.nn.ModuleList) \
            or not len(layers):
        return False
    attention = getattr(layers[-1], "attention", None)
    return hasattr(layers[-1], "feed_forward_chunk") and hasattr(attention, "output") and all(
        hasattr(getattr(attention, "self", None), name)
        for name in ("query", "key", "value", "num_attention_heads", "scaling", "dropout",
                     "config"))


def _own_children(module: torch.nn.Module) -> torch.nn.Module:
    """A shallow copy with its own table of children (the children themselves shared)."""
    twin = copy.copy(module)
    twin._modules = dict(module._modules)
    return twin


def cut_to_first_token(model: torch.nn.Module) -> torch.nn.Module:
    """The model with a FirstTokenEncoder, sharing every layer, weight and buffer with `model`
    (which is left as it is): its state dict has the same keys and loads into either; `model`
    itself where the cut does not apply. Set the training mode on the model that is called."""
    if not cuttable(model):
        return model
    cut, base = _own_children(model), _own_children(model.base_model)
    base._modules["encoder"] = FirstTokenEncoder(base.encoder)
    cut._modules[model.base_model_prefix] = base
    return cut
