"""--sparse-embeddings: row-sparse word-embedding gradients and lazy AdamW on their rows."""

from __future__ import annotations

import copy

import pytest
import torch

from bertsent.sparse import SparseRowsAdamW, clip_grad_norm, use_sparse_embeddings


class Tiny(torch.nn.Module):
    def __init__(self, sparse: bool) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(6, 4, sparse=sparse)
        self.out = torch.nn.Linear(4, 1)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.out(self.embed(ids)).sum()


def groups(model: Tiny) -> list[dict]:
    return [{"params": [model.embed.weight, model.out.weight], "weight_decay": 0.1},
            {"params": [model.out.bias], "weight_decay": 0.0}]


@pytest.mark.parametrize("max_norm", [float("inf"), 0.05])
def test_clip_counts_sparse_rows_like_their_dense_gradient(max_norm):
    sparse, dense = Tiny(sparse=True), Tiny(sparse=False)
    for model in (sparse, dense):
        for ids in ([1, 2, 2, 3], [3, 5]):  # two micro-batches, a row used three times
            model(torch.tensor(ids)).backward()
    got = clip_grad_norm(sparse.parameters(), max_norm)
    want = torch.nn.utils.clip_grad_norm_(list(dense.parameters()), max_norm)
    assert torch.allclose(got, want, rtol=1e-6)
    assert torch.allclose(sparse.embed.weight.grad.to_dense(), dense.embed.weight.grad,
                          atol=1e-7)
    assert torch.allclose(sparse.out.weight.grad, dense.out.weight.grad, atol=1e-7)


def test_lazy_adamw_equals_adamw_where_every_row_is_used():
    sparse, dense = Tiny(sparse=True), Tiny(sparse=False)
    opt_s = SparseRowsAdamW(groups(sparse), lr=0.1)
    opt_d = torch.optim.AdamW(groups(dense), lr=0.1)
    for step in range(3):
        ids = torch.tensor([5, 4, 3, 2, 1, 0, step % 6])  # every row, one twice
        for model, opt in ((sparse, opt_s), (dense, opt_d)):
            model(ids).backward()
            opt.step()
            opt.zero_grad()
    for a, b in zip(sparse.parameters(), dense.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    state_s, state_d = opt_s.state[sparse.embed.weight], opt_d.state[dense.embed.weight]
    assert float(state_s["step"]) == float(state_d["step"]) == 3
    for key in ("exp_avg", "exp_avg_sq"):
        assert torch.allclose(state_s[key], state_d[key], atol=1e-7)


def test_lazy_adamw_leaves_unused_rows_and_their_moments_alone():
    model = Tiny(sparse=True)
    opt = SparseRowsAdamW(groups(model), lr=0.1)
    for ids in ([0, 1, 2, 3, 4, 5], [1, 2]):
        before = model.embed.weight.detach().clone()
        moments = [t.clone() for t in opt.state[model.embed.weight].values()]
        model(torch.tensor(ids)).backward()
        opt.step()
        opt.zero_grad()
    weight, state = model.embed.weight.detach(), opt.state[model.embed.weight]
    unused = [0, 3, 4, 5]
    assert torch.equal(weight[unused], before[unused])  # no decay, no momentum
    assert torch.equal(state["exp_avg"][unused], moments[1][unused])
    assert not torch.equal(weight[[1, 2]], before[[1, 2]])


def test_optimizer_state_round_trips_through_state_dict():
    model = Tiny(sparse=True)
    opt = SparseRowsAdamW(groups(model), lr=0.1)
    model(torch.tensor([1, 4])).backward()
    opt.step()
    again = SparseRowsAdamW(groups(model), lr=0.1)
    again.load_state_dict(copy.deepcopy(opt.state_dict()))
    for key in ("step", "exp_avg", "exp_avg_sq"):
        assert torch.equal(again.state[model.embed.weight][key],
                           opt.state[model.embed.weight][key])


def test_tied_output_embeddings_refuse_sparse_gradients(tiny_model_dir):
    from transformers import BertConfig, BertForMaskedLM, BertForSequenceClassification

    classifier = BertForSequenceClassification.from_pretrained(tiny_model_dir)
    use_sparse_embeddings(classifier)
    assert classifier.get_input_embeddings().sparse
    tied = BertForMaskedLM(BertConfig(vocab_size=40, hidden_size=8, num_hidden_layers=1,
                                      num_attention_heads=2, intermediate_size=16))
    with pytest.raises(ValueError, match="tied"):
        use_sparse_embeddings(tied)


def test_a_sparse_run_learns_resumes_exactly_and_differs_from_dense(tiny_config):
    from bertsent.train import train
    from tests.conftest import assert_resumes_exactly

    full, _ = assert_resumes_exactly({**tiny_config, "sparse_embeddings": True,
                                      "save_every": 3}, stop_after=7)
    assert full["accuracy"] > 0.9  # the tiny task is learnt
    dense = train({**tiny_config, "run_name": "dense"})
    assert dense["history"][0] == full["history"][0]  # the same start
    assert dense["history"] != full["history"]  # later, unused rows differ (lazy moments)


@pytest.mark.parametrize("other", ["freeze_embeddings", "compile"])
def test_sparse_embeddings_with_frozen_ones_or_compile_fail_in_one_line(tiny_config, other):
    from bertsent.config import TrainConfig
    from bertsent.errors import UserError

    flag = "--" + other.replace("_", "-")
    with pytest.raises(UserError, match=f"--sparse-embeddings .* {flag}.*: pass one of them"):
        TrainConfig(**{**tiny_config, "sparse_embeddings": True, other: True}).checked()
