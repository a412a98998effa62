"""Inference passes: the scoring model (cut, bf16 weights) and batches side by side."""

import pytest
import torch
from transformers import DistilBertConfig, DistilBertForSequenceClassification

from bertsent.firsttoken import FirstTokenEncoder
from bertsent.scoring import for_scoring
from tests.test_firsttoken import batch, build, logits


def test_models_it_does_not_know_score_with_the_full_forward():
    config = DistilBertConfig(vocab_size=60, dim=32, n_layers=2, n_heads=4, hidden_dim=48,
                              max_position_embeddings=80)
    distil = DistilBertForSequenceClassification(config)
    scoring, _ = for_scoring(distil, "fp32", torch.device("cpu"))
    assert scoring is distil


def test_for_scoring_cuts_in_fp32_and_bf16_and_keeps_the_trained_model():
    model = build("bert")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    inputs = batch([11, 8, 2])
    full = logits(model, inputs)
    same, autocast = for_scoring(model, "fp32", torch.device("cpu"))
    assert isinstance(same.bert.encoder, FirstTokenEncoder)
    with autocast():
        torch.testing.assert_close(logits(same, inputs), full, atol=1e-6, rtol=0)
    low, autocast = for_scoring(model, "bf16", torch.device("cpu"))
    assert isinstance(low.bert.encoder, FirstTokenEncoder)
    assert {p.dtype for p in low.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert not isinstance(model.bert.encoder, FirstTokenEncoder)
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
