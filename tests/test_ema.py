"""The weight average: its arithmetic, its swap in and out, and its checkpoint round trip."""

import pytest
import torch

from bertsent.ema import WeightAverage


def tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))


def test_the_average_follows_the_documented_rule():
    model = tiny()
    start = [p.detach().clone() for p in model.parameters()]
    ema = WeightAverage(model, decay=0.9)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model)  # first update: decay capped at 2/11
    d = 2 / 11
    for avg, s in zip(ema.shadow, start, strict=True):
        assert torch.allclose(avg, d * s + (1 - d) * (s + 1))
    for _ in range(200):
        ema.update(model)
    for avg, s in zip(ema.shadow, start, strict=True):
        assert torch.allclose(avg, s + 1, atol=1e-6)  # converges to constant weights


def test_applied_swaps_the_average_in_and_the_weights_back_bit_for_bit():
    model = tiny()
    ema = WeightAverage(model, decay=0.5)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    ema.update(model)
    trained = [p.detach().clone() for p in model.parameters()]
    with ema.applied(model):
        for p, avg in zip(model.parameters(), ema.shadow, strict=True):
            assert torch.equal(p, avg)
    for p, t in zip(model.parameters(), trained, strict=True):
        assert torch.equal(p, t)


def test_state_round_trip_and_a_foreign_state_is_refused():
    model = tiny()
    ema = WeightAverage(model, decay=0.99)
    ema.update(model)
    again = WeightAverage(tiny(), decay=0.5)
    again.load_state_dict(ema.state_dict())
    assert again.decay == 0.99 and again.updates == 1
    assert all(torch.equal(a, b) for a, b in zip(again.shadow, ema.shadow, strict=True))
    with pytest.raises(ValueError, match="another model"):
        WeightAverage(torch.nn.Linear(3, 1), 0.9).load_state_dict(ema.state_dict())


def test_a_run_with_ema_resumes_exactly_and_exports_the_average(tiny_config, tmp_path):
    from bertsent import checkpoint as ckpt
    from tests.conftest import assert_resumes_exactly

    base = {**tiny_config, "ema": 0.9, "save_every": 3, "keep_checkpoints": True}
    _, a = assert_resumes_exactly(base, stop_after=7)  # the average resumed bit for bit
    state = ckpt.load_checkpoint(ckpt.step_checkpoints(tmp_path / "ckpt" / "full")[-1])
    shadow = dict(zip(state["ema"]["names"], state["ema"]["shadow"], strict=True))
    name = "classifier.weight"
    assert torch.equal(a[name], shadow[name])  # final/ holds the average...
    assert not torch.equal(a[name], state["model"][name])  # ...not the last step's weights
