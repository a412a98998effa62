"""Progress meters: a tqdm bar on a terminal, plain lines with an ETA in logs."""

import numpy as np
import torch

from bertsent.engine import predict_logits
from bertsent.tracking import Meter, format_duration


def test_duration_format():
    assert format_duration(59.4) == "0:59"
    assert format_duration(61) == "1:01"
    assert format_duration(3 * 3600 + 5 * 60 + 7) == "3:05:07"


def test_a_line_every_interval_and_at_the_end(capsys):
    now = [0.0]
    meter = Meter(total=100, desc="step", every=30, terminal=False, clock=lambda: now[0])
    # one second a step since the start: at step 30, 70 steps are left
    for step in range(1, 101):
        now[0] += 1.0
        meter.update(step, "loss 0.5000", "8.0 samples/s")
    meter.close()
    lines = capsys.readouterr().err.splitlines()
    assert [line.split()[1] for line in lines] == ["30/100", "60/100", "90/100", "100/100"]
    assert lines[0] == "step 30/100 (30.0%) loss 0.5000 8.0 samples/s eta 1:10"


def test_the_eta_counts_from_where_a_resumed_run_started(capsys):
    now = [0.0]
    meter = Meter(total=100, desc="step", every=10, terminal=False, initial=50,
                  clock=lambda: now[0])
    now[0] = 10.0
    meter.update(60, "loss 0.1000")  # 10 steps in 10 s: 40 left
    assert capsys.readouterr().err.strip() == "step 60/100 (60.0%) loss 0.1000 eta 0:40"


def test_disabled_on_a_terminal_or_with_zero_interval_or_on_other_ranks(capsys):
    for meter in (Meter(10, "step", every=30, terminal=True, enabled=False),
                  Meter(10, "step", every=0, terminal=False),
                  Meter(10, "step", every=30, terminal=False, enabled=False)):
        meter.update(10, "loss 0.1000")
        meter.close()
    assert capsys.readouterr().err == ""


class _Loader(list):
    """Batches with a batch_sampler, as the evaluation DataLoader has."""

    def __init__(self, batches):
        super().__init__(batches)
        self.batch_sampler = type("S", (), {"batches": [list(b["index"]) for b in batches]})


def test_an_evaluation_pass_prints_plain_progress_lines(capsys):
    batches = _Loader([{"input_ids": torch.ones(4, 3, dtype=torch.long),
                        "attention_mask": torch.ones(4, 3, dtype=torch.long),
                        "labels": torch.zeros(4, dtype=torch.long),
                        "index": torch.arange(i * 4, i * 4 + 4)} for i in range(3)])

    class Model(torch.nn.Module):
        def forward(self, input_ids, attention_mask):
            return type("Out", (), {"logits": torch.zeros(len(input_ids), 2)})

    logits, labels, indices = predict_logits(Model(), batches, torch.device("cpu"),
                                             desc="test", progress_every=1e-9)
    assert np.array_equal(indices, np.arange(12)) and logits.shape == (12, 2)
    lines = capsys.readouterr().err.splitlines()  # stderr is not a terminal under pytest
    assert lines[-1].startswith("test 12/12 (100.0%)") and "reviews/s eta" in lines[-1]


def test_the_line_after_a_logged_point_shows_a_rolling_mean_not_one_step(capsys):
    """TensorBoard's window restarts at each logged point; the shown loss does not, so the
    first line after a validation pass is not one step's loss (0.85 among 0.1s)."""
    from types import SimpleNamespace

    from bertsent.progress import Progress
    from bertsent.tracking import RunLogger, StepMeter

    progress = Progress()
    with StepMeter(RunLogger(None), 20, 0, log_every=10, progress_every=1e-9,
                   enabled=True) as meter:
        meter.meter.plain = True  # as in a log, whatever pytest's stderr is
        for step in range(1, 12):
            progress.step = step
            loss = 0.85 if step == 11 else 0.1
            meter.step(progress, SimpleNamespace(loss=loss, skipped=False, grad_norm=1.0), 1e-3,
                       False)
    shown = [float(line.split("loss ")[1].split()[0])
             for line in capsys.readouterr().err.splitlines()]
    assert shown[9] == 0.1
    assert shown[10] == round((9 * 0.1 + 0.85) / 10, 4)  # steps 2..11, not step 11 alone
