"""Whole training runs on the tiny model: outputs, checkpoints, and exact resume."""

import json
import time

import pytest
import torch
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from bertsent import checkpoint as ckpt
from bertsent.errors import UserError
from bertsent.train import Hooks, train


def weights(folder):
    return load_file(str(folder / "model.safetensors"))


def test_training_run_writes_everything(tiny_config, tmp_path):
    result = train({**tiny_config, "keep_checkpoints": True})
    run_dir = tmp_path / "ckpt" / "tiny"
    assert result["accuracy"] > 0.8 and result["val_accuracy"] > 0.8  # the tiny task is easy
    assert result["test_samples"] == 40 and result["steps"] == 24
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["accuracy"] == result["accuracy"] and saved["best_model_dir"].endswith("best")
    assert 0 <= saved["expected_calibration_error"] <= 1 and saved["train_samples"] == 96
    assert saved["test_seconds"] > 0 and saved["device_name"]
    assert saved["settings"]["max_length"] == 48 and saved["settings"]["model"] == \
        tiny_config["model"]
    report = json.loads((run_dir / "report" / "metrics.json").read_text())
    assert report["accuracy"] == result["accuracy"] and report["labels"] == ["negative",
                                                                            "positive"]
    for png in ("confusion_matrix", "precision_recall", "reliability"):
        assert (run_dir / "report" / f"{png}.png").stat().st_size > 1000
    assert json.loads((run_dir / "config.json").read_text())["lr"] == tiny_config["lr"]
    steps = sorted(ckpt.step_of(p) for p in ckpt.step_checkpoints(run_dir))
    assert steps == [20, 24]  # --keep-last 2
    assert all(ckpt.verify(run_dir / f"step-{s}") is None for s in steps)
    for name in ("best", "final"):
        assert (run_dir / name / "config.json").is_file()
        assert (run_dir / name / "tokenizer.json").is_file()
    tb = EventAccumulator(str(tmp_path / "runs" / "tiny"))
    tb.Reload()
    assert [e.step for e in tb.Scalars("train/loss")] == list(range(1, 25))
    for tag in ("train/lr", "train/grad_norm", "train/samples_per_second", "val/accuracy",
                "val/f1", "test/accuracy", "test/precision", "test/recall"):
        assert tag in tb.Tags()["scalars"], tag


def test_a_cpu_run_keeps_compiled_kernels_unless_the_user_set_how_many(tiny_config,
                                                                          monkeypatch):
    """train() raises oneDNN's kernel cache before its first matmul (runtime.py says why); a
    capacity the environment sets stands."""
    import os

    from bertsent.runtime import KERNEL_CACHE

    name = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"
    monkeypatch.setenv(name, "0")  # recorded, so the variable is restored afterwards
    monkeypatch.delenv(name)
    short = {**tiny_config, "epochs": 1, "max_steps": 1, "test": False}
    train(short)
    assert os.environ[name] == str(KERNEL_CACHE)
    monkeypatch.setenv(name, "7")
    train({**short, "run_name": "tiny-own-cache"})
    assert os.environ[name] == "7"


def test_the_same_command_gives_the_same_numbers(tiny_config, tmp_path):
    a = train({**tiny_config, "epochs": 1})
    b = train({**tiny_config, "epochs": 1, "run_name": "tiny-again"})
    assert a["history"] == b["history"] and a["accuracy"] == b["accuracy"]


@pytest.mark.parametrize("stop_after, accum", [(5, 1), (12, 1), (7, 2)])
def test_interrupted_and_resumed_run_equals_uninterrupted(tiny_config, tmp_path, stop_after,
                                                          accum):
    base = {**tiny_config, "grad_accum": accum, "save_every": 3}
    full = train({**base, "run_name": "full"})
    part = train({**base, "run_name": "cut"}, hooks=Hooks(stop_after_step=stop_after))
    assert part["interrupted"] and part["step"] == stop_after
    # A resume is a new process in practice. In one process, two TensorBoard event files of
    # the same second are ordered by the writer's counter read as text ('10' < '9').
    time.sleep(1.05)
    rest = train({**base, "run_name": "cut", "resume": "latest"})
    assert part["history"] + rest["history"] == full["history"]  # the same losses, every step
    root = tmp_path / "ckpt"
    a, b = weights(root / "full" / "final"), weights(root / "cut" / "final")
    assert all(torch.equal(a[k], b[k]) for k in a)  # bit for bit
    assert rest["accuracy"] == full["accuracy"]
    tb = EventAccumulator(str(tmp_path / "runs" / "cut"))
    tb.Reload()
    steps = [e.step for e in tb.Scalars("train/loss")]
    assert steps == sorted(set(steps)) == list(range(1, full["steps"] + 1))


def test_resume_refuses_other_settings(tiny_config, capsys):
    train({**tiny_config, "epochs": 1}, hooks=Hooks(stop_after_step=4))
    with pytest.raises(UserError, match="max_length: 48 -> 32"):
        train({**tiny_config, "epochs": 1, "max_length": 32, "resume": "latest"})
    with pytest.raises(UserError, match="--resume-force"):
        train({**tiny_config, "epochs": 1, "eval_batch_size": 4, "resume": "latest"})
    result = train({**tiny_config, "epochs": 1, "eval_batch_size": 4, "resume": "latest",
                    "resume_force": True})
    assert result["steps"] == 12
    assert "note: resuming with other settings than the checkpoint's (eval_batch_size: 16 -> 4)" \
        in capsys.readouterr().err


def test_existing_run_is_not_overwritten(tiny_config, tmp_path):
    train({**tiny_config, "epochs": 1})
    before = sorted(p.name for p in (tmp_path / "ckpt" / "tiny").iterdir())
    with pytest.raises(UserError, match="already exists"):
        train({**tiny_config, "epochs": 1})
    assert sorted(p.name for p in (tmp_path / "ckpt" / "tiny").iterdir()) == before


def test_checkpoint_round_trip(tmp_path):
    state = {"model": {"w": torch.randn(3, 3)}, "progress": {"step": 3}, "rng": ckpt.rng_state()}
    folder = ckpt.save_checkpoint(tmp_path / "step-3", state)
    assert ckpt.verify(folder) is None
    loaded = ckpt.load_checkpoint(folder)
    assert torch.equal(loaded["model"]["w"], state["model"]["w"])
    torch.manual_seed(1)
    ckpt.set_rng_state(loaded["rng"])
    assert torch.equal(torch.rand(3), (ckpt.set_rng_state(state["rng"]), torch.rand(3))[1])


def test_damaged_newest_checkpoint_falls_back(tmp_path):
    for step in (1, 2, 3):
        ckpt.save_checkpoint(tmp_path / "run" / f"step-{step}", {"step": step})
    data = (tmp_path / "run" / "step-3" / ckpt.STATE_FILE).read_bytes()
    (tmp_path / "run" / "step-3" / ckpt.STATE_FILE).write_bytes(data[: len(data) // 2])
    (tmp_path / "run" / "step-2" / ckpt.MANIFEST).unlink()
    folder, notes = ckpt.find_latest(tmp_path, "run")
    assert folder.name == "step-1"
    assert "truncated" in notes[0] and "no manifest" in notes[1]
    with pytest.raises(UserError, match="unusable"):
        ckpt.load_checkpoint(tmp_path / "run" / "step-3")


def test_logged_train_loss_is_the_mean_since_the_last_log_also_across_a_resume(tiny_config,
                                                                               tmp_path):
    base = {**tiny_config, "log_every": 5, "save_every": 7}
    full = train({**base, "run_name": "full"})
    losses = [loss for _, loss in full["history"]]
    windows = [(0, 5), (5, 10), (10, 15), (15, 20), (20, 24)]

    def logged(name):
        tb = EventAccumulator(str(tmp_path / "runs" / name))
        tb.Reload()
        return [(e.step, e.value) for e in tb.Scalars("train/loss")]

    assert [s for s, _ in logged("full")] == [5, 10, 15, 20, 24]
    for (step, value), (a, b) in zip(logged("full"), windows, strict=True):
        assert value == pytest.approx(sum(losses[a:b]) / (b - a), rel=1e-6), step
    train({**base, "run_name": "cut"}, hooks=Hooks(stop_after_step=7))  # mid-window
    train({**base, "run_name": "cut", "resume": "latest"})
    assert logged("cut") == logged("full")


def test_curves_are_drawn_from_the_tensorboard_log(tiny_config, tmp_path, capsys):
    from bertsent.curves import ACCURACY, LOSS, main, read_scalars

    train({**tiny_config, "log_every": 4, "eval_every": 6})
    series = read_scalars(str(tmp_path / "runs" / "tiny"), (LOSS, ACCURACY))
    assert [s for s, _ in series[LOSS]] == [4, 8, 12, 16, 20, 24]
    assert [s for s, _ in series[ACCURACY]] == [6, 12, 18, 24]
    out = tmp_path / "curves.png"
    assert main([str(tmp_path / "runs" / "tiny"), "--out", str(out)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert main([str(tmp_path), "--out", str(tmp_path / "other.png")]) == 2  # not a run log
    assert "error: " in capsys.readouterr().err


def test_a_model_with_non_finite_weights_is_never_exported(tiny_model_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from bertsent.config import TrainConfig
    from bertsent.export import save_model

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        model.classifier.weight[0, 0] = float("nan")
    with pytest.raises(UserError, match="non-finite weights .*classifier.weight"):
        save_model(tmp_path / "final", model, AutoTokenizer.from_pretrained(tiny_model_dir),
                   TrainConfig().to_dict(), {}, ["negative", "positive"])
    assert not (tmp_path / "final").exists()


def test_a_run_without_its_test_pass_is_scored_the_same_later_by_evaluate(tiny_config, tmp_path):
    """--no-test leaves the test split unread; evaluate on the exported best model, with the
    run's --test-samples and --seed, gives the figures the test pass would have."""
    from bertsent import evaluate as evaluate_mod
    from bertsent.config import EvalConfig

    tested = train({**tiny_config, "epochs": 1, "run_name": "tested"})
    skipped = train({**tiny_config, "epochs": 1, "run_name": "skipped", "test": False})
    assert skipped["tested"] is False and "accuracy" not in skipped
    assert skipped["best_val_metric"] == tested["best_val_metric"]
    assert not (tmp_path / "ckpt" / "skipped" / "report").exists()
    later = evaluate_mod.run(EvalConfig(model=str(tmp_path / "ckpt" / "skipped" / "best"),
                                        samples=tiny_config["test_samples"],
                                        seed=tiny_config["seed"], device="cpu",
                                        cache_dir=tiny_config["cache_dir"]))
    for key in ("accuracy", "f1", "precision", "recall"):
        assert later[key] == tested[key]
    assert later["loss"] == pytest.approx(tested["loss"], abs=1e-6)


def test_a_validation_only_run_prints_the_evaluate_command_of_its_test_pass():
    """A bf16 run's test pass scores in bf16, on --test-samples reviews drawn with its seed:
    the command it prints for later says so, where evaluate's defaults differ."""
    from pathlib import Path

    from bertsent.config import TrainConfig
    from bertsent.summary import evaluate_command

    best = Path("checkpoints/my run/best")
    plain = evaluate_command(TrainConfig(), "fp32", best)
    assert plain == "python -m bertsent.evaluate --model 'checkpoints/my run/best'"
    cfg = TrainConfig(test_samples=500, seed=3, eval_batch_size=32, eval_tokens=2048)
    assert evaluate_command(cfg, "bf16", best) == (
        "python -m bertsent.evaluate --model 'checkpoints/my run/best' --samples 500 --seed 3 "
        "--precision bf16 --batch-size 32 --batch-tokens 2048")
