"""The written-out training attention: the same numbers as SDPA, used only where it should be."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification
from transformers.masking_utils import bidirectional_mask_function, causal_mask_function

import bertsent.attention as attention
from bertsent.config import TrainConfig
from bertsent.resume import as_written, differences
from bertsent.train import train


def pair(tiny_model_dir, mode: str):
    """Two copies of the tiny model with the same weights: SDPA, and `mode`."""
    load = lambda: AutoModelForSequenceClassification.from_pretrained(  # noqa: E731
        tiny_model_dir, attn_implementation="sdpa", hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0)
    sdpa, other = load(), load()
    attention.use_attention(other, mode)
    return sdpa, other


def padded_batch() -> dict[str, torch.Tensor]:
    ids = torch.randint(5, 40, (3, 12), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[0, 7:] = 0
    mask[2, 3:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def counted(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = attention.written_out
    monkeypatch.setattr(attention, "written_out",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def test_written_out_attention_equals_sdpa_forward_and_backward_in_fp32(tiny_model_dir):
    sdpa, matmul = pair(tiny_model_dir, "matmul")
    assert matmul.config._attn_implementation == "bertsent_matmul"
    assert sdpa.config._attn_implementation == "sdpa"  # the two copies share no config
    batch = padded_batch()
    a, b = sdpa(**batch).logits, matmul(**batch).logits
    assert torch.allclose(a, b, atol=1e-6)
    a.square().sum().backward()
    b.square().sum().backward()
    for (name, p), q in zip(sdpa.named_parameters(), matmul.parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad, atol=1e-5), name


def test_auto_writes_attention_out_only_for_low_precision_cpu_training(tiny_model_dir,
                                                                         monkeypatch):
    calls = counted(monkeypatch)
    _, model = pair(tiny_model_dir, "auto")
    batch = padded_batch()
    model(**batch).logits.sum().backward()  # fp32: SDPA
    assert calls == []
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        model(**batch)  # no backward follows: SDPA's faster forward
    assert calls == []
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(**batch).logits
    assert len(calls) == model.config.num_hidden_layers
    logits.float().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all()
               for p in model.parameters() if p.requires_grad)


def test_bf16_written_out_attention_stays_close_to_sdpa(tiny_model_dir):
    sdpa, auto = pair(tiny_model_dir, "auto")
    batch = padded_batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a, b = sdpa(**batch).logits.float(), auto(**batch).logits.float()
    assert (a - b).abs().max() < 0.05  # bf16 activations both ways; not bitwise the same


def test_sdpa_mode_leaves_the_model_alone(tiny_model_dir):
    _, model = pair(tiny_model_dir, "sdpa")
    assert model.config._attn_implementation == "sdpa"
    eager = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir,
                                                               attn_implementation="eager")
    attention.use_attention(eager, "auto")  # not an SDPA model: left as it chose
    assert eager.config._attn_implementation == "eager"


def test_padding_masks_become_a_keys_bias_and_other_masks_stay_whole():
    keys = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]], dtype=torch.bool)
    cut = attention.key_padding_mask(2, 4, 4, mask_function=bidirectional_mask_function,
                                     attention_mask=keys, allow_is_bidirectional_skip=False)
    assert cut.shape == (2, 1, 1, 4) and torch.equal(cut[:, 0, 0], keys)
    causal = attention.key_padding_mask(2, 4, 4, mask_function=causal_mask_function,
                                        attention_mask=keys, allow_is_causal_skip=False)
    assert causal.shape == (2, 1, 4, 4)  # rows differ: kept whole, and applied whole
    q = torch.randn(2, 2, 4, 8, dtype=torch.float64)
    out = attention.written_out(q, q, q, causal, 8 ** -0.5, 0.0, training=False)
    ref = torch.nn.functional.scaled_dot_product_attention(q, q, q, attn_mask=causal)
    assert torch.allclose(out, ref.transpose(1, 2), atol=1e-9)


@pytest.mark.parametrize("mode", ["matmul", "sdpa"])
def test_a_bf16_run_trains_with_either_attention_and_exports_a_plain_model(tiny_config, mode,
                                                                          monkeypatch):
    calls = counted(monkeypatch)
    out = train({**tiny_config, "precision": "bf16", "attention": mode, "epochs": 1})
    assert 0.0 <= out["accuracy"] <= 1.0 and out["steps"] == 12
    assert (len(calls) > 0) == (mode == "matmul")
    best = Path(tiny_config["checkpoint_dir"]) / "tiny" / "best"
    config = json.loads((best / "config.json").read_text())
    assert not any("attn" in key for key in config)  # transformers.pipeline loads it as is


def test_a_checkpoint_older_than_the_setting_resumes_with_the_sdpa_it_ran():
    old = {k: v for k, v in TrainConfig().to_dict().items() if k != "attention"}
    assert as_written(old, TrainConfig)["attention"] == "sdpa"
    assert as_written({**old, "attention": "auto"}, TrainConfig)["attention"] == "auto"
    unsafe, safe = differences(as_written(old, TrainConfig), 1, TrainConfig(), 1)
    assert unsafe == [] and safe == ["attention: 'sdpa' -> 'auto'"]  # needs --resume-force
