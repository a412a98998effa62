"""The last layer cut to the first token: it scores as the full forward and trains with its
gradients."""

import pytest
import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    CamembertConfig,
    CamembertForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    ElectraConfig,
    ElectraForSequenceClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
    XLMRobertaConfig,
    XLMRobertaForSequenceClassification,
)

from bertsent.attention import use_attention
from bertsent.firsttoken import FirstTokenEncoder, cut_to_first_token

SIZES = dict(vocab_size=60, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
             intermediate_size=48, max_position_embeddings=80, num_labels=3)
FAMILIES = {
    "bert": (BertConfig, BertForSequenceClassification),
    "roberta": (RobertaConfig, RobertaForSequenceClassification),
    "xlm-roberta": (XLMRobertaConfig, XLMRobertaForSequenceClassification),
    "camembert": (CamembertConfig, CamembertForSequenceClassification),
    "electra": (ElectraConfig, ElectraForSequenceClassification),
}


def build(family: str, attn: str = "sdpa", **dropouts: float) -> torch.nn.Module:
    config_class, model_class = FAMILIES[family]
    torch.manual_seed(1)
    config = config_class(**SIZES, pad_token_id=1, **dropouts)
    config._attn_implementation = attn
    return model_class(config).eval()


def batch(lengths: list[int], seed: int = 0) -> dict[str, torch.Tensor]:
    """Right-padded rows of random ids (pad 1), the first row the longest."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.full((len(lengths), max(lengths)), 1)
    mask = torch.zeros_like(ids)
    for row, n in enumerate(lengths):
        ids[row, :n] = torch.randint(5, 60, (n,), generator=gen)
        ids[row, 0] = 2
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask}


def logits(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.inference_mode():
        return model(**inputs).logits.float()


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("lengths", [[17, 9, 3, 1], [12, 12]])
def test_the_cut_scores_as_the_full_forward_in_fp32(family, lengths):
    model = build(family)
    cut = cut_to_first_token(model)
    assert isinstance(cut.base_model.encoder, FirstTokenEncoder)
    inputs = batch(lengths)
    torch.testing.assert_close(logits(cut, inputs), logits(model, inputs), atol=1e-6, rtol=0)


@pytest.mark.parametrize("attn", ["eager", "bertsent_auto"])
def test_the_cut_follows_the_models_attention_mask(attn):
    model = build("bert")
    if attn == "bertsent_auto":
        use_attention(model, "auto")  # masks of batch x 1 x 1 x keys
    else:
        model.config._attn_implementation = "eager"  # additive float masks
    inputs = batch([15, 6, 2])
    torch.testing.assert_close(logits(cut_to_first_token(model), inputs), logits(model, inputs),
                               atol=1e-6, rtol=0)


def test_the_cut_shares_the_weights_and_leaves_the_model_whole():
    model = build("bert")
    encoder = model.bert.encoder
    cut = cut_to_first_token(model)
    assert model.bert.encoder is encoder and not isinstance(encoder, FirstTokenEncoder)
    assert cut.bert.encoder.layer is encoder.layer
    ours, theirs = dict(model.named_parameters()), dict(cut.named_parameters())
    assert theirs.keys() == ours.keys()  # the same names: a state dict loads into either
    assert all(theirs[k] is v for k, v in ours.items())
    with torch.inference_mode():
        assert model.bert(**batch([7, 4])).last_hidden_state.shape == (2, 7, 32)
        assert cut.bert(**batch([7, 4])).last_hidden_state.shape == (2, 1, 32)
    with torch.no_grad():  # trained weights move: the cut scores with them
        model.classifier.bias.add_(1.0)
    inputs = batch([9, 5])
    torch.testing.assert_close(logits(cut, inputs), logits(model, inputs), atol=1e-6, rtol=0)


def test_the_layers_get_one_mask_row_per_review():
    model = build("bert")
    cut = cut_to_first_token(model)
    shapes = []
    cut.bert.encoder.layer[0].register_forward_pre_hook(
        lambda module, args: shapes.append(tuple(args[1].shape)))
    logits(cut, batch([10, 4, 3]))
    assert shapes == [(3, 1, 1, 10)]


def test_models_it_does_not_know_are_not_cut():
    config = DistilBertConfig(vocab_size=60, dim=32, n_layers=2, n_heads=4, hidden_dim=48,
                              max_position_embeddings=80)
    distil = DistilBertForSequenceClassification(config)
    assert cut_to_first_token(distil) is distil
    model = build("bert")
    cut = cut_to_first_token(model)
    assert cut_to_first_token(cut) is cut  # cut once




def gradients(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    labels = torch.arange(len(inputs["input_ids"])) % SIZES["num_labels"]
    torch.nn.functional.cross_entropy(model(**inputs).logits, labels).backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


NO_DROPOUT = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("attention", ["sdpa", "matmul"])
def test_the_cut_trains_with_the_full_models_gradients_in_fp32(family, attention):
    model = build(family, **NO_DROPOUT).train()
    use_attention(model, attention)
    inputs = batch([17, 9, 3, 1])
    full = gradients(model, inputs)
    cut = gradients(cut_to_first_token(model), inputs)
    assert cut.keys() == full.keys()  # every weight of the last layer still learns
    for name, grad in full.items():
        torch.testing.assert_close(cut[name], grad, atol=1e-6, rtol=1e-5, msg=name)


def test_the_last_layer_runs_the_models_training_attention_with_its_dropout(monkeypatch):
    import bertsent.attention as attention

    calls = []
    real = attention.written_out
    monkeypatch.setattr(attention, "written_out", lambda q, k, v, mask, scaling, dropout,
                        training: calls.append((q.shape[2], dropout, training)) or
                        real(q, k, v, mask, scaling, dropout, training))
    model = build("bert", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.25).train()
    use_attention(model, "matmul")  # written out wherever a backward follows
    cut = cut_to_first_token(model)
    gradients(cut, batch([12, 5]))
    assert calls == [(12, 0.25, True)] * 2 + [(1, 0.25, True)]  # the last layer: one query
    calls.clear()
    cut.eval()
    with torch.inference_mode():  # no backward follows: SDPA, no dropout
        first, second = cut(**batch([12, 5])).logits, cut(**batch([12, 5])).logits
    assert calls == [] and torch.equal(first, second)


def test_a_run_trains_the_same_weights_with_the_last_layer_cut_or_whole(tiny_config, tmp_path,
                                                                        monkeypatch):
    from safetensors.torch import load_file

    from bertsent import firsttoken, train

    cuts = []
    monkeypatch.setattr(train, "cut_to_first_token",
                        lambda model: cuts.append(1) or firsttoken.cut_to_first_token(model))
    base = {**tiny_config, "epochs": 1, "dropout": 0.0}  # fp32
    whole = train.train({**base, "run_name": "whole", "cut_last_layer": False})
    assert cuts == []
    cut = train.train({**base, "run_name": "cut"})  # the default
    assert cuts == [1]
    assert [s for s, _ in cut["history"]] == [s for s, _ in whole["history"]] == \
        list(range(1, 13))
    torch.testing.assert_close([loss for _, loss in cut["history"]],
                               [loss for _, loss in whole["history"]], atol=1e-5, rtol=1e-5)
    a, b = (load_file(str(tmp_path / "ckpt" / run / "final" / "model.safetensors"))
            for run in ("whole", "cut"))
    assert a.keys() == b.keys()  # the same checkpoint either way
    for name in a:
        torch.testing.assert_close(b[name], a[name], atol=1e-5, rtol=1e-4, msg=name)


def test_a_checkpoint_older_than_the_setting_resumes_with_the_whole_layer_it_ran():
    from bertsent.config import TrainConfig
    from bertsent.resume import as_written, differences

    old = {k: v for k, v in TrainConfig().to_dict().items() if k != "cut_last_layer"}
    assert as_written(old, TrainConfig)["cut_last_layer"] is False
    unsafe, safe = differences(as_written(old, TrainConfig), 1, TrainConfig(), 1)
    assert unsafe == [] and safe == ["cut_last_layer: False -> True"]  # needs --resume-force
