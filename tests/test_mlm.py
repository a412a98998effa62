"""Within-task pre-training pieces: the masking rule and the loss on masked positions only."""

import torch
from transformers import BertConfig, BertForMaskedLM

from bertsent.mlm import mask_seed, mask_tokens, masked_lm_loss

CLS, SEP, PAD, MASK, VOCAB = 2, 3, 0, 4, 50


def batch(rows: int = 64, length: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, VOCAB, (rows, length), generator=g)
    mask = torch.ones_like(ids)
    lengths = torch.randint(10, length + 1, (rows,), generator=g)
    for r, n in enumerate(lengths.tolist()):
        ids[r, 0], ids[r, n - 1] = CLS, SEP
        ids[r, n:], mask[r, n:] = PAD, 0
    return ids, mask


def masked(ids, mask, seed=1):
    return mask_tokens(ids, mask, special_ids=[CLS, SEP, PAD], mask_id=MASK, vocab_size=VOCAB,
                       seed=seed)


def test_fifteen_percent_of_real_tokens_never_special_or_padding():
    ids, mask = batch()
    m = masked(ids, mask)
    real = mask.bool() & (ids != CLS) & (ids != SEP)
    assert not (m.positions & ~real).any()
    assert abs(m.positions.sum().item() / real.sum().item() - 0.15) < 0.02
    assert torch.equal(m.targets, ids[m.positions])
    assert torch.equal(m.input_ids[~m.positions], ids[~m.positions])  # the rest untouched
    replaced = m.input_ids[m.positions]
    share_mask = (replaced == MASK).float().mean().item()
    share_same = (replaced == ids[m.positions]).float().mean().item()
    assert abs(share_mask - 0.8) < 0.05 and 0.05 < share_same < 0.16  # 10% kept (+ chance)


def test_the_masks_are_a_function_of_seed_epoch_and_batch():
    ids, mask = batch()
    a, b = masked(ids, mask, mask_seed(7, 0, 3)), masked(ids, mask, mask_seed(7, 0, 3))
    c = masked(ids, mask, mask_seed(7, 0, 4))
    assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.positions, b.positions)
    assert not torch.equal(a.positions, c.positions)


def test_a_batch_too_short_for_fifteen_percent_still_masks_one_token():
    ids = torch.tensor([[CLS, 7, SEP]])
    m = masked(ids, torch.ones_like(ids), seed=3)
    assert m.positions.sum() == 1 and m.positions[0, 1]


def test_the_loss_on_masked_positions_equals_the_full_vocabulary_loss():
    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2,
                                       num_attention_heads=2, intermediate_size=64))
    model.eval()
    ids, mask = batch(8, 24)
    m = masked(ids, mask)
    labels = torch.full_like(ids, -100)
    labels[m.positions] = ids[m.positions]
    full = model(input_ids=m.input_ids, attention_mask=mask, labels=labels).loss
    ours = masked_lm_loss(model, m, mask) / m.positions.sum()
    assert torch.allclose(ours, full, atol=1e-5)
