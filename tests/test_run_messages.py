"""What a run says and records: resumable label names, messages that are true when printed,
a clean stop during start-up, and results that name no machine's paths."""

import json
import os
import re
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import bertsent.checkpoint
import bertsent.tokens
from bertsent.errors import Interrupted, UserError
from bertsent.train import Hooks, train
from tests.conftest import make_frame, write_splits


def spaced_labels(tmp_path: Path) -> Path:
    """Label names that a flag parser would strip: they must come back exactly on resume."""
    frames = {}
    for split, n, seed in (("train", 120, 1), ("test", 40, 2)):
        frame = make_frame(n, seed)
        frame["label"] = frame["label"].map({0: " not good", 1: "good "})
        frames[split] = frame
    return write_splits(tmp_path / "spaced", **frames)


def test_label_names_with_spaces_resume_exactly(tiny_config, tmp_path):
    base = {**tiny_config, "data": str(spaced_labels(tmp_path)), "train_samples": 64,
            "epochs": 1, "save_every": 2}
    full = train({**base, "run_name": "full"})
    part = train({**base, "run_name": "cut"}, hooks=Hooks(stop_after_step=3))
    rest = train({**base, "run_name": "cut", "resume": "latest"})
    assert part["history"] + rest["history"] == full["history"]
    assert rest["labels"] == full["labels"] == [" not good", "good "]
    a = load_file(str(tmp_path / "ckpt" / "full" / "final" / "model.safetensors"))
    b = load_file(str(tmp_path / "ckpt" / "cut" / "final" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    config = json.loads((tmp_path / "ckpt" / "cut" / "config.json").read_text())
    assert config["labels"] is None and config["num_labels"] is None  # what the user gave


def test_a_checkpoint_from_before_the_label_entry_still_resumes(tiny_config, tmp_path):
    """Older checkpoints kept the classes in their config only (num_labels, labels)."""
    base = {**tiny_config, "epochs": 1, "save_every": 2}
    full = train({**base, "run_name": "full"})
    train({**base, "run_name": "old"}, hooks=Hooks(stop_after_step=4))
    folder = tmp_path / "ckpt" / "old" / "step-4"
    state = bertsent.checkpoint.load_checkpoint(folder)
    del state["labels"]
    state["config"]["num_labels"] = 2  # as the earlier version wrote it back
    bertsent.checkpoint.save_checkpoint(folder, state)
    rest = train({**base, "run_name": "old", "resume": "latest"})
    assert rest["accuracy"] == full["accuracy"] and rest["labels"] == ["negative", "positive"]


def test_a_refused_resume_says_only_why(tiny_config, tmp_path, capsys):
    data = write_splits(tmp_path / "data", train=make_frame(160, 1), test=make_frame(40, 2))
    settings = {**tiny_config, "epochs": 1, "data": str(data)}
    train(settings, hooks=Hooks(stop_after_step=4))
    capsys.readouterr()
    changed = make_frame(160, 1).assign(label=lambda f: f["label"] + 5)
    changed.to_parquet(data / "train.parquet")  # the same path now holds other classes
    with pytest.raises(UserError, match="train.parquet in .* has changed since the checkpoint"):
        train({**settings, "resume": "latest"})
    assert "resuming run" not in capsys.readouterr().err
    make_frame(160, 1).to_parquet(data / "train.parquet")
    train({**settings, "resume": "latest"})
    assert "resuming run tiny in" in capsys.readouterr().err  # said once checks have passed


def test_the_stop_message_gives_the_whole_command(tiny_config, capsys):
    train({**tiny_config, "epochs": 1}, hooks=Hooks(stop_after_step=3))
    err = capsys.readouterr().err
    assert (f"continue with python -m bertsent.train --resume latest --run-name tiny "
            f"--checkpoint-dir {tiny_config['checkpoint_dir']}") in err


def test_progress_lines_never_show_a_nan_loss(tiny_config, capsys):
    train({**tiny_config, "epochs": 1, "log_every": 5, "progress_every": 1e-9})
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("step ")]
    assert len(lines) == 12 and not [line for line in lines if "nan" in line]
    assert "\ntest 40/40 (100.0%)" in err  # the final test pass has its lines too


def test_sigterm_during_tokenisation_leaves_no_temporary_file(tiny_config, tmp_path,
                                                              monkeypatch):
    real = bertsent.tokens.encode_texts
    calls = []

    def encode_then_terminate(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(bertsent.tokens, "encode_texts", encode_then_terminate)
    with pytest.raises(Interrupted, match="during start-up: nothing was saved") as stopped:
        train(tiny_config)
    assert stopped.value.signum == signal.SIGTERM
    cache = tmp_path / "cache"
    assert not [p for p in cache.iterdir() if p.name.startswith("tmp")]
    assert not (tmp_path / "ckpt" / "tiny" / ".lock").exists()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored


def test_a_signal_while_the_final_model_is_written_does_not_claim_it_exists(
        tiny_config, tmp_path, monkeypatch, capsys):
    real = bertsent.checkpoint.write_manifest

    def interrupted_in_final(folder):
        if ".tmp-final" in str(folder):
            os.kill(os.getpid(), signal.SIGINT)
        return real(folder)

    monkeypatch.setattr(bertsent.checkpoint, "write_manifest", interrupted_in_final)
    with pytest.raises(SystemExit) as stopped:
        train({**tiny_config, "epochs": 1})
    assert stopped.value.code == 130
    err = capsys.readouterr().err
    assert "stopping while the final model is written" in err and "trained model is in" not in err
    assert not (tmp_path / "ckpt" / "tiny" / "final").exists()
    monkeypatch.setattr(bertsent.checkpoint, "write_manifest", real)
    assert train({**tiny_config, "epochs": 1, "resume": "latest"})["steps"] == 12


def test_a_signal_that_native_code_rewraps_still_exits_with_its_status(
        tiny_config, tmp_path, monkeypatch, capsys):
    """safetensors turns an exception raised inside its callbacks into a ValueError: a SIGTERM
    that lands while the best weights load still exits 143 with its line, not a traceback."""
    import bertsent.train as train_module
    real = train_module.load_weights

    def load_like_native_code(model, folder):
        try:
            os.kill(os.getpid(), signal.SIGTERM)  # the handler raises here, as in a callback
        except BaseException as exc:
            raise ValueError("could not determine the shape of object type") from exc
        return real(model, folder)

    monkeypatch.setattr(train_module, "load_weights", load_like_native_code)
    with pytest.raises(SystemExit) as stopped:
        train({**tiny_config, "epochs": 1})
    assert stopped.value.code == 128 + signal.SIGTERM
    assert "stopping the final evaluation" in capsys.readouterr().err
    assert not (tmp_path / "ckpt" / "tiny" / ".lock").exists()
    assert not (tmp_path / "ckpt" / "tiny" / "metrics.json").exists()


def test_results_name_no_absolute_path(tiny_config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = {**tiny_config, "epochs": 1, "checkpoint_dir": "ckpt", "runs_dir": "runs",
                "keep_checkpoints": True}
    train(settings, hooks=Hooks(stop_after_step=4))
    train({**settings, "resume": "latest"})
    run = tmp_path / "ckpt" / "tiny"
    assert json.loads((run / "metrics.json").read_text())["best_model_dir"] == "ckpt/tiny/best"
    assert json.loads((run / "config.json").read_text())["checkpoint_dir"] == "ckpt"
    state = bertsent.checkpoint.load_checkpoint(run / "step-12")
    assert not os.path.isabs(state["config"]["checkpoint_dir"])


def test_every_entry_point_ends_a_rewrapped_signal_as_the_signal(capsys):
    """evaluate and predict run under run_cli alone: a SIGTERM that tokenizers or safetensors
    turn into their own error still exits 143 with one line."""
    from bertsent.errors import run_cli

    def entry():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
        except BaseException as exc:
            raise ValueError("a native library's own error") from exc

    assert run_cli(entry) == 128 + signal.SIGTERM
    assert capsys.readouterr().err.strip() == "interrupted (SIGTERM)"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored

    def broken():
        raise ValueError("a real bug")  # without a signal, an error stays an error

    with pytest.raises(ValueError, match="a real bug"):
        run_cli(broken)


def test_each_validation_point_prints_its_figures_and_the_best_so_far(tiny_config, capsys):
    """A plain log says what every validation point scored and whether it was exported."""
    train({**tiny_config, "epochs": 1, "eval_every": 4})
    lines = [line for line in capsys.readouterr().err.splitlines()
             if line.startswith("val step")]
    assert [line.split(":")[0] for line in lines] == ["val step 4", "val step 8", "val step 12"]
    assert re.fullmatch(r"val step 4: accuracy [\d.]+ f1 [\d.]+ loss [\d.]+, new best "
                        r"\(exported to best/\)", lines[0])
    assert all(line.endswith("new best (exported to best/)")
               or re.search(r"best accuracy [\d.]+ at step \d+$", line) for line in lines)
