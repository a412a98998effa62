"""Plain progress lines for logs that are not a terminal."""

from bertsent.tracking import PlainProgress, format_duration


def test_duration_format():
    assert format_duration(59.4) == "0:59"
    assert format_duration(61) == "1:01"
    assert format_duration(3 * 3600 + 5 * 60 + 7) == "3:05:07"


def test_a_line_every_interval_and_at_the_end(capsys):
    now = [0.0]
    progress = PlainProgress(total=100, every=30, enabled=True, clock=lambda: now[0])
    # one second a step since the start: at step 30, 70 steps are left
    for step in range(1, 101):
        now[0] += 1.0
        progress.update(step, loss=0.5, samples_per_second=8.0)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split()[1] for line in lines] == ["30/100", "60/100", "90/100", "100/100"]
    assert lines[0] == "step 30/100 (30.0%) loss 0.5000 8.0 samples/s eta 1:10"


def test_disabled_on_a_terminal_or_with_zero_interval(capsys):
    for progress in (PlainProgress(10, 30, enabled=False), PlainProgress(10, 0, enabled=True)):
        progress.update(10, 0.1, 1.0)
    assert capsys.readouterr().err == ""
