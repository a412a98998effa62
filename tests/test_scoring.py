"""The scoring model: a last layer cut to the first token scores as the full forward."""

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
from bertsent.scoring import ScoringEncoder, cut_to_first_token, for_scoring

SIZES = dict(vocab_size=60, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
             intermediate_size=48, max_position_embeddings=80, num_labels=3)
FAMILIES = {
    "bert": (BertConfig, BertForSequenceClassification),
    "roberta": (RobertaConfig, RobertaForSequenceClassification),
    "xlm-roberta": (XLMRobertaConfig, XLMRobertaForSequenceClassification),
    "camembert": (CamembertConfig, CamembertForSequenceClassification),
    "electra": (ElectraConfig, ElectraForSequenceClassification),
}


def build(family: str, attn: str = "sdpa") -> torch.nn.Module:
    config_class, model_class = FAMILIES[family]
    torch.manual_seed(1)
    config = config_class(**SIZES, pad_token_id=1)
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
    assert isinstance(cut.base_model.encoder, ScoringEncoder)
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
    assert model.bert.encoder is encoder and not isinstance(encoder, ScoringEncoder)
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


def test_models_it_does_not_know_score_with_the_full_forward():
    config = DistilBertConfig(vocab_size=60, dim=32, n_layers=2, n_heads=4, hidden_dim=48,
                              max_position_embeddings=80)
    distil = DistilBertForSequenceClassification(config)
    assert cut_to_first_token(distil) is distil
    scoring, _ = for_scoring(distil, "fp32", torch.device("cpu"))
    assert scoring is distil
    model = build("bert")
    cut = cut_to_first_token(model)
    assert cut_to_first_token(cut) is cut  # cut once


def test_for_scoring_cuts_in_fp32_and_bf16_and_keeps_the_trained_model():
    model = build("bert")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    inputs = batch([11, 8, 2])
    full = logits(model, inputs)
    same, autocast = for_scoring(model, "fp32", torch.device("cpu"))
    assert isinstance(same.bert.encoder, ScoringEncoder)
    with autocast():
        torch.testing.assert_close(logits(same, inputs), full, atol=1e-6, rtol=0)
    low, autocast = for_scoring(model, "bf16", torch.device("cpu"))
    assert isinstance(low.bert.encoder, ScoringEncoder)
    assert {p.dtype for p in low.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert not isinstance(model.bert.encoder, ScoringEncoder)
    with autocast():  # a null context: the weights are bf16 already
        assert low(**inputs).logits.dtype == torch.bfloat16
        torch.testing.assert_close(logits(low, inputs), full, atol=0.05, rtol=0)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_scoring_leaves_the_models_training_mode_as_it_was():
    from bertsent.engine import predict_logits

    model = build("bert").train()
    scoring, autocast = for_scoring(model, "fp32", torch.device("cpu"))
    inputs = batch([6, 3])
    loader = [{**inputs, "labels": torch.tensor([0, 1]), "index": torch.tensor([0, 1])}]
    predict_logits(scoring, loader, torch.device("cpu"), autocast, show=False)
    assert all(m.training for m in model.modules())


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_workers_only_where_a_cpu_has_threads_and_batches_for_them(two_threads):
    from bertsent.scoring import workers_for

    cpu = torch.device("cpu")
    assert workers_for(cpu, 4) == 2 and workers_for(cpu, 3) == 1
    assert workers_for(torch.device("cuda"), 100) == 1
    torch.set_num_threads(1)
    assert workers_for(cpu, 100) == 1


def test_batches_side_by_side_score_as_one_at_a_time_in_order(two_threads):
    from bertsent.engine import predict_logits
    from bertsent.tokens import EncodedDataset, eval_loader

    model = build("bert")
    gen = torch.Generator().manual_seed(3)
    ids = [torch.randint(5, 60, (int(n),), generator=gen).numpy()
           for n in torch.randint(2, 40, (37,), generator=gen)]
    loader = eval_loader(EncodedDataset(ids, [i % 3 for i in range(37)]), 4, 1, 64)
    assert len(loader) >= 4  # two workers
    side = predict_logits(model, loader, torch.device("cpu"), show=False)
    assert torch.get_num_threads() == 2  # restored after the pass
    torch.set_num_threads(1)
    alone = predict_logits(model, loader, torch.device("cpu"), show=False)
    for a, b in zip(side, alone, strict=True):
        torch.testing.assert_close(torch.as_tensor(a), torch.as_tensor(b), atol=1e-6, rtol=0)
    assert sorted(side[2].tolist()) == list(range(37))
    torch.set_num_threads(2)
    few = predict_logits(model, loader, torch.device("cpu"), max_batches=5, show=False)
    assert len(few[2]) == sum(len(b) for b in loader.batch_sampler.batches[:5])


def test_a_worker_that_fails_fails_the_pass_and_threads_come_back(two_threads):
    from bertsent.scoring import scored

    def forward(batch):
        if batch["n"] == 3:
            raise SystemExit(2)  # what errors.fail raises
        return torch.tensor(batch["n"])

    got = []
    with pytest.raises(SystemExit):
        for _, out in scored(forward, ({"n": n} for n in range(8)), workers=2):
            got.append(int(out))
    assert got == [0, 1, 2] and torch.get_num_threads() == 2
    assert [int(o) for _, o in scored(forward, ({"n": n} for n in range(3)), 2)] == [0, 1, 2]
