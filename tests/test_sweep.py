"""python -m bertsent.sweep on the tiny model: the space file and its refusals, a whole sweep,
pruning, failed trials, interrupting and resuming (between trials and inside one), and two
processes sharing one study."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

from safetensors.torch import load_file  # noqa: E402

from bertsent import sweeptrials as sweep_mod  # noqa: E402
from bertsent.cli import parse_overrides  # noqa: E402
from bertsent.config import TrainConfig, from_mapping  # noqa: E402
from bertsent.errors import UserError  # noqa: E402
from bertsent.sweep import main, parse_args, run  # noqa: E402
from bertsent.sweepspace import DEFAULT_SPACE, parse_space, read_space  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SPACE = "[lr]\nlow = 1e-3\nhigh = 3e-2\nlog = true\n[warmup_ratio]\nlow = 0.0\nhigh = 0.2\n"


def roots(tmp_path: Path) -> list[str]:
    """What a --resume command passes: where the study is, and this process's cache."""
    return ["--checkpoint-dir", str(tmp_path / "ckpt"), "--cache-dir", str(tmp_path / "cache")]


def tiny_flags(model: Path, data: Path, tmp_path: Path, space: str = SPACE) -> list[str]:
    """A sweep of 6-step runs (48 reviews, batches of 8) validated every 2 steps."""
    path = tmp_path / "space.toml"
    path.write_text(space)
    return ["--model", str(model), "--data", str(data), "--train-samples", "48",
            "--val-samples", "16", "--epochs", "1", "--batch-size", "8", "--eval-batch-size",
            "16", "--max-length", "48", "--head-lr-mult", "1", "--precision", "fp32",
            "--device", "cpu", "--save-every", "2", "--eval-every", "2", "--log-every", "1",
            "--sanity-eval-batches", "0", "--progress-every", "0", "--space", str(path),
            "--runs-dir", str(tmp_path / "runs"), *roots(tmp_path)]


def load(tmp_path: Path, name: str):
    return optuna.load_study(study_name=name,
                             storage=f"sqlite:///{tmp_path / 'ckpt' / name / 'study.db'}")


def counted(study) -> list:
    return [t for t in study.get_trials() if not t.user_attrs.get("surplus")]


def weights(folder: Path) -> dict:
    return load_file(str(folder / "final" / "model.safetensors"))


# ---------------------------------------------------------------- the space
@pytest.mark.parametrize("tables, message", [
    ({"learning_rate": {"low": 1e-5, "high": 1e-4}}, r"unknown setting \[learning_rate\] "
                                                     r"\(did you mean --lr\?\)"),
    ({"epoch": {"choices": [1, 2]}}, r"did you mean --epochs\?"),
    ({"lr": {"low": 1e-3, "high": 1e-4}}, r"\[lr\]: the range is empty \(low 0.001 >= high"),
    ({"lr": {"low": 1e-3, "high": 1e-3}}, "the range is empty"),
    ({"epochs": {"low": 1.0, "high": 3.0}}, r"\[epochs\] low: 'epochs' must be int, got float"),
    ({"epochs": {"choices": [1, "two"]}}, "'epochs' must be int, got str 'two'"),
    ({"truncation": {"choices": ["head", "middle"]}}, "must be one of head, tail, head"),
    ({"warmup_ratio": {"low": 0.0, "high": 1.0}}, r"high = 1.0: --warmup-ratio must be in"),
    ({"batch_size": {"choices": [8, 0]}}, "--batch-size must be positive, got 0"),
    ({"weight_decay": {"low": 0.0, "high": 0.1, "log": True}}, "log = true needs low > 0"),
    ({"lr": {"low": 1e-5, "high": 1e-4, "step": 1e-5, "log": True}}, "cannot go with log"),
    ({"seed": {"choices": [1, 2]}}, r"\[seed\] cannot be searched: seeds are --seeds"),
    ({"run_name": {"choices": ["a"]}}, "cannot be searched"),
    ({"test": {"choices": [True, False]}}, "cannot be searched: trials never read the test"),
    ({"device": {"choices": ["cpu"]}}, "a machine setting"),
    ({"checkpoint_dir": {"choices": ["x"]}}, "cannot be searched"),
    ({"lr": 1e-4}, "'lr' is a value, not a table"),
    ({"lr": {"lo": 1e-5, "high": 1e-4}}, r"unknown key 'lo' \(did you mean low\?\)"),
    ({"lr": {"low": 1e-5}}, "needs both low and high"),
    ({"lr": {"low": 1e-5, "high": 1e-4, "choices": [1e-5]}}, "choices and high, low together"),
    ({"freeze_embeddings": {"low": 0, "high": 1}}, r"no range: .* choices = \[true, false\]"),
    ({"epochs": {"choices": []}}, "non-empty list"),
    ({"epochs": {"choices": [1, 1]}}, "lists a value twice"),
    ({}, "searches nothing"),
])
def test_a_bad_space_is_refused_in_one_line(tables, message):
    with pytest.raises(UserError, match=message):
        parse_space(tables, "space file s.toml")


def test_a_space_file_reads_ranges_and_choices(tmp_path):
    path = tmp_path / "space.toml"
    path.write_text("[lr]\nlow = 1e-5\nhigh = 3e-4\nlog = true\n[batch-size]\nlow = 8\n"
                    "high = 32\nstep = 8\n[dropout]\nchoices = [0, 0.1]\n")
    space = read_space(path)
    assert space["lr"].table() == {"low": 1e-5, "high": 3e-4, "log": True}
    assert space["batch_size"].table() == {"low": 8, "high": 32, "step": 8}
    assert space["dropout"].choices == (0.0, 0.1)  # a float setting's choices are floats
    with pytest.raises(UserError, match="does not exist"):
        read_space(tmp_path / "nope.toml")


def test_the_default_space_is_shipped_and_documented():
    assert set(read_space(DEFAULT_SPACE)) == {"lr", "epochs", "batch_size", "warmup_ratio"}
    assert "configs/sweep/default.toml" in (ROOT / "docs" / "sweep.md").read_text()


# ---------------------------------------------------------------- flags
@pytest.mark.parametrize("argv, message", [
    (["--no-test"], "--test is the sweep's to set"),
    (["--resume-force"], "--resume-force is the sweep's to set"),
    (["--resume"], "--resume needs --run-name"),
    (["--val-samples", "0"], "--val-samples 0 leaves nothing to score"),
    (["--trials", "0"], "--trials must be at least 1"),
    (["--run-name", "a/b"], "must be one folder name"),
    (["--lr", "-1"], "--lr must be positive"),
])
def test_bad_flags_are_refused_before_anything_runs(argv, message, tmp_path):
    with pytest.raises(UserError, match=message):
        parse_args(argv + roots(tmp_path))
    assert not (tmp_path / "ckpt").exists()


def test_help_and_one_line_errors(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "--space" in out and "--seeds" in out and "--no-test" not in out


def test_an_unknown_flag_gets_did_you_mean(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--learning-rate", "1e-4"])
    assert done.value.code == 2
    assert "did you mean --lr?" in capsys.readouterr().err


def test_missing_optuna_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(UserError, match=r"pip install -e '\.\[sweep\]'"):
        run(parse_args(["--run-name", "s", *roots(tmp_path)]))


def test_joining_a_sweep_with_other_settings_is_refused(tmp_path):
    sweep_mod.open_study(parse_args(["--run-name", "s", "--max-length", "48", *roots(tmp_path)]))
    with pytest.raises(UserError, match=r"started with other settings \(max_length: 48 -> 64\)"):
        sweep_mod.open_study(parse_args(["--run-name", "s", "--max-length", "64",
                                         *roots(tmp_path)]))
    joined = parse_args(["--resume", "--run-name", "s", *roots(tmp_path)])
    sweep_mod.open_study(joined)  # no settings given: the stored ones
    assert joined.definition["fixed"] == {"max_length": 48}
    with pytest.raises(UserError, match="there is no sweep other"):
        sweep_mod.open_study(parse_args(["--resume", "--run-name", "other", *roots(tmp_path)]))
    assert not (tmp_path / "ckpt" / "other").exists()


# ---------------------------------------------------------------- whole sweeps
def test_a_three_trial_sweep_writes_trials_table_and_best_toml(tiny_model_dir, tiny_data_dir,
                                                               tmp_path, capsys):
    argv = tiny_flags(tiny_model_dir, tiny_data_dir, tmp_path)
    assert main([*argv, "--trials", "3", "--run-name", "s"]) == 0
    folder = tmp_path / "ckpt" / "s"
    study = load(tmp_path, "s")
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    for t in study.trials:
        run_folder = folder / f"trial-{t.number}"
        assert (run_folder / "best").is_dir() and not list(run_folder.glob("step-*"))
        assert '"tested": false' in (run_folder / "metrics.json").read_text()
        assert (tmp_path / "runs" / "s" / f"trial-{t.number}").is_dir()  # one TensorBoard
        assert t.value == t.user_attrs["values"][0]
    table = (folder / "trials.md").read_text()
    assert table.count("| COMPLETE |") == 3 and "**best**" in table
    assert "| trial | lr | warmup_ratio | val accuracy | state | minutes | note |" in table
    assert (folder / "history.png").is_file() and (folder / "importance.png").is_file()
    err = capsys.readouterr().err
    assert "trial 2 finished: accuracy" in err and "[3/3 done]" in err
    # best.toml trains: the fixed settings and the best trial's, nothing the sweep set
    best = folder / "best.toml"
    values = parse_overrides(["--config", str(best), "--run-name", "again"])
    assert values["lr"] == study.best_trial.params["lr"] and values["max_length"] == 48
    assert not {"checkpoint_dir", "runs_dir", "test", "resume", "seed"} & set(
        parse_overrides(["--config", str(best)]))
    assert from_mapping(values).checked().model == str(tiny_model_dir)
    # --resume with nothing left: the table again, nothing run
    assert main(["--resume", "--run-name", "s", *roots(tmp_path)]) == 0
    assert len(load(tmp_path, "s").trials) == 3
    assert "# Sweep s: 3 of 3 trials done" in capsys.readouterr().out


def test_a_clearly_worse_trial_is_pruned(tiny_model_dir, tiny_data_dir, tmp_path):
    space = "[lr]\nlow = 1e-4\nhigh = 1.0\nlog = true\n"
    argv = [*tiny_flags(tiny_model_dir, tiny_data_dir, tmp_path, space), "--epochs", "2",
            "--select-metric", "loss", "--prune-after", "1", "--trials", "2", "--run-name", "p"]
    sw = parse_args(argv)
    study = sweep_mod.open_study(sw)
    study.enqueue_trial({"lr": 3e-3})  # validation loss about 0.69
    study.enqueue_trial({"lr": 1.0})  # diverges (loss above 10): pruned at its first judged point
    assert run(sw) == 0
    good, bad = load(tmp_path, "p").trials
    assert (good.state.name, bad.state.name) == ("COMPLETE", "PRUNED")
    assert bad.user_attrs["pruned_at"] == 4  # n_warmup_steps = 2 x eval_every: not at step 2
    assert sorted(bad.intermediate_values) == [2, 4]


def test_a_failed_trial_is_recorded_and_the_study_goes_on(tiny_model_dir, tiny_data_dir,
                                                          tmp_path):
    space = "[max_length]\nchoices = [48, 4096]\n"
    sw = parse_args([*tiny_flags(tiny_model_dir, tiny_data_dir, tmp_path, space),
                     "--trials", "4", "--run-name", "f"])
    study = sweep_mod.open_study(sw)
    for length in (4096, 48, 4096, 4096):  # the tiny model has 128 positions
        study.enqueue_trial({"max_length": length})
    with pytest.raises(UserError, match="two trials in a row failed the same way"):
        run(sw)
    trials = load(tmp_path, "f").trials
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE", "FAIL", "FAIL"]
    assert "--max-length" in trials[0].user_attrs["reason"]


def test_resume_between_and_inside_trials_equals_an_uninterrupted_sweep(
        tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    argv = tiny_flags(tiny_model_dir, tiny_data_dir, tmp_path)
    assert run(parse_args([*argv, "--trials", "2", "--run-name", "whole"])) == 0
    # stopped between trials: one trial done
    assert run(parse_args([*argv, "--trials", "1", "--run-name", "cut"])) == 0
    # inside one: trial 1 stops at step 3 as SIGTERM would, after a checkpoint
    resume = ["--resume", "--run-name", "cut", *roots(tmp_path)]
    assert run(parse_args([*resume, "--trials", "2"]), stop_after_step=3) == 143
    assert "continue with python -m bertsent.sweep --resume --run-name cut" in \
        capsys.readouterr().err
    cut = load(tmp_path, "cut")
    assert [t.state.name for t in cut.trials] == ["COMPLETE", "RUNNING"]
    assert list((tmp_path / "ckpt" / "cut" / "trial-1").glob("step-*"))
    assert run(parse_args(resume)) == 0
    whole, cut = load(tmp_path, "whole"), load(tmp_path, "cut")
    assert [t.state.name for t in cut.trials] == ["COMPLETE", "COMPLETE"]  # nothing counted twice
    for a, b in zip(whole.trials, cut.trials, strict=True):
        assert (a.number, a.params, a.value) == (b.number, b.params, b.value)
        wa, wb = (weights(tmp_path / "ckpt" / name / f"trial-{a.number}")
                  for name in ("whole", "cut"))
        assert all((wa[k] == wb[k]).all() for k in wa)
    assert "continuing trial 1" in capsys.readouterr().err


def test_a_trial_stopped_before_its_first_checkpoint_starts_again(
        tiny_model_dir, tiny_data_dir, tmp_path, monkeypatch):
    import bertsent.train

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    argv = [*tiny_flags(tiny_model_dir, tiny_data_dir, tmp_path), "--trials", "1"]
    with monkeypatch.context() as patch:
        patch.setattr(bertsent.train, "train", ctrl_c)
        with pytest.raises(KeyboardInterrupt):
            run(parse_args([*argv, "--run-name", "k"]))
    (params,) = [t.params for t in load(tmp_path, "k").trials]
    assert run(parse_args(["--resume", "--run-name", "k", *roots(tmp_path)])) == 0
    (trial,) = load(tmp_path, "k").trials
    assert (trial.number, trial.state.name, trial.params) == (0, "COMPLETE", params)


def test_seeds_score_a_configuration_by_their_mean(tiny_model_dir, tiny_data_dir, tmp_path):
    argv = tiny_flags(tiny_model_dir, tiny_data_dir, tmp_path, "[lr]\nchoices = [1e-2]\n")
    assert run(parse_args([*argv, "--trials", "1", "--seeds", "2", "--run-name", "m"])) == 0
    (trial,) = load(tmp_path, "m").trials
    assert len(trial.user_attrs["values"]) == 2
    assert trial.value == pytest.approx(sum(trial.user_attrs["values"]) / 2)
    assert {p.name for p in (tmp_path / "ckpt" / "m").glob("trial-*")} == {
        "trial-0-seed-42", "trial-0-seed-43"}


def test_processes_that_ask_at_once_do_not_overshoot_the_total(tmp_path, monkeypatch):
    sw = parse_args(["--run-name", "race", "--trials", "1", *roots(tmp_path)])
    study = sweep_mod.open_study(sw)
    ctx = sweep_mod.Context(sw, optuna, study, read_space(DEFAULT_SPACE),
                            sweep_mod.fixed_config(sw.definition))
    ask = study.ask

    def another_process_asks_first():
        ask()  # trial 0: the other process's, RUNNING (its claim lives in that process)
        monkeypatch.setattr(study, "ask", ask)
        return ask()

    monkeypatch.setattr(study, "ask", another_process_asks_first)
    sweep_mod.claim(ctx, 0).held = False  # held elsewhere: this process must not resume it
    assert sweep_mod.next_trial(ctx) is None
    assert [(t.number, t.state.name, t.user_attrs.get("surplus")) for t in study.trials] == [
        (0, "RUNNING", None), (1, "FAIL", True)]
    assert [t.number for t in ctx.counted()] == [0]


def test_two_processes_share_one_study_without_running_a_trial_twice(
        tiny_model_dir, tiny_data_dir, tmp_path):
    argv = [sys.executable, "-m", "bertsent.sweep",
            *tiny_flags(tiny_model_dir, tiny_data_dir, tmp_path), "--trials", "4",
            "--run-name", "two", "--prune-after", "0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    trials = counted(load(tmp_path, "two"))
    assert len(trials) == 4 and len({t.number for t in trials}) == 4
    assert all(t.state.name == "COMPLETE" for t in trials)
    runs = sorted(p.name for p in (tmp_path / "ckpt" / "two").glob("trial-*"))
    assert runs == sorted(f"trial-{t.number}" for t in trials)


def test_sigterm_stops_the_trial_at_a_checkpoint_and_prints_how_to_continue(
        tiny_model_dir, tiny_data_dir, tmp_path):
    argv = [sys.executable, "-m", "bertsent.sweep",
            *tiny_flags(tiny_model_dir, tiny_data_dir, tmp_path), "--epochs", "200",
            "--trials", "2", "--run-name", "sig"]
    proc = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:  # signalled once trial 0 is training
        if line.startswith("val step 2:"):
            proc.send_signal(signal.SIGTERM)
            break
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 143, err
    assert "continue with python -m bertsent.sweep --resume --run-name sig" in err
    (trial,) = load(tmp_path, "sig").trials
    assert trial.state.name == "RUNNING"
    assert list((tmp_path / "ckpt" / "sig" / "trial-0").glob("step-*"))


def test_none_is_a_choice_for_a_setting_that_may_be_unset():
    from bertsent.sweepspace import parse_space

    space = parse_space({"ema": {"choices": ["none", 0.99]}}, "space")
    assert space["ema"].choices == (None, 0.99)
    with pytest.raises(UserError, match="'lr' must be float"):
        parse_space({"lr": {"choices": ["none", 1e-4]}}, "space")


def test_defaults_first_makes_trial_0_the_run_without_the_sweep(tiny_model_dir, tiny_data_dir,
                                                                  tmp_path):
    space = "[lr]\nlow = 1e-5\nhigh = 1e-3\nlog = true\n[epochs]\nchoices = [2, 1]\n"
    argv = tiny_flags(tiny_model_dir, tiny_data_dir, tmp_path, space)
    assert main([*argv, "--trials", "2", "--run-name", "d", "--defaults-first"]) == 0
    first = load(tmp_path, "d").trials[0]
    # the fixed part (--epochs 1) over bertsent.train's default for what is not given (lr)
    assert first.params == {"lr": TrainConfig.lr, "epochs": 1}


def test_defaults_first_outside_the_space_is_refused(tmp_path):
    from bertsent.sweeptrials import unswept_values

    definition = {"fixed": {}, "space": {"lr": {"low": 1e-3, "high": 1e-2}}}
    with pytest.raises(UserError, match=r"--defaults-first: lr 0.0001 .* is outside the space"):
        unswept_values(definition)
