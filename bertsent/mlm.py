"""Masked-language-model pieces for within-task pre-training: which tokens are masked, and the
loss on those tokens only.

Masking is BERT's token-level rule: 15% of the real tokens (never [CLS], [SEP] or padding) are
chosen; of those 80% become [MASK], 10% a random token, 10% stay as they are. The choice is a
pure function of (seed, epoch, batch) through its own generator, so a resumed run masks every
batch exactly as the uninterrupted one did.

The loss runs the vocabulary projection (30,522 wide for BERT) on the masked positions only:
about 15% of the tokens, instead of all of them, which would cost more than the encoder.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

MASK_PROB = 0.15


@dataclass
class Masked:
    input_ids: torch.Tensor  # the batch with the chosen tokens replaced
    positions: torch.Tensor  # bool (batch, length): True where the loss is computed
    targets: torch.Tensor  # the original ids at those positions, in row-major order


def mask_seed(seed: int, epoch: int, batch: int) -> int:
    return (seed * 1_000_003 + epoch) * 1_000_033 + batch


def mask_tokens(input_ids: torch.Tensor, attention_mask: torch.Tensor, *, special_ids: list[int],
                mask_id: int, vocab_size: int, seed: int, prob: float = MASK_PROB) -> Masked:
    """Choose and replace tokens as BERT does (see the module docstring)."""
    g = torch.Generator().manual_seed(seed)
    real = attention_mask.bool() & ~torch.isin(input_ids, torch.tensor(special_ids))
    chosen = (torch.rand(input_ids.shape, generator=g) < prob) & real
    if not chosen.any() and real.any():  # a short batch: mask one token rather than none
        chosen.view(-1)[real.view(-1).nonzero()[0]] = True
    roll = torch.rand(input_ids.shape, generator=g)
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=g)
    out = input_ids.clone()
    out[chosen & (roll < 0.8)] = mask_id
    swap = chosen & (roll >= 0.8) & (roll < 0.9)
    out[swap] = random_ids[swap]
    return Masked(input_ids=out, positions=chosen, targets=input_ids[chosen])


def mlm_parts(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(encoder, vocabulary head) of a BERT-family masked-LM model."""
    encoder = getattr(model, "bert", None) or getattr(model, "base_model", None)
    head = getattr(model, "cls", None)
    if encoder is None or head is None:
        raise ValueError(f"{type(model).__name__} is not a BERT-style masked-LM model")
    return encoder, head


def freeze_encoder(model: torch.nn.Module, frozen: bool) -> None:
    """Train the vocabulary head alone (frozen=True) or the whole model.

    The head's output projection is tied to the word embeddings, which belong to the encoder:
    frozen, they stay as the base model had them, and only the head's own transform and bias
    learn. No encoder parameter then needs a gradient, so its backward pass is not run at all.
    """
    encoder, _ = mlm_parts(model)
    for param in encoder.parameters():
        param.requires_grad_(not frozen)


def masked_lm_loss(model: torch.nn.Module, masked: Masked, attention_mask: torch.Tensor
                   ) -> torch.Tensor:
    """Summed cross-entropy over the masked positions; the head sees only those positions."""
    encoder, head = mlm_parts(model)
    hidden = encoder(input_ids=masked.input_ids, attention_mask=attention_mask).last_hidden_state
    logits = head(hidden[masked.positions])
    return F.cross_entropy(logits.float(), masked.targets, reduction="sum")
