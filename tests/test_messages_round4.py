"""What a run says when it is used the wrong way: presets, resuming the other entry point's
run, a report folder among the runs, sizes above a split, and flags given to the wrong entry
point. Each is one line that names the problem and the fix."""

from __future__ import annotations

import json

import pytest

from bertsent import evaluate as evaluate_mod
from bertsent import predict as predict_mod
from bertsent.cli import build_parser, parse_overrides
from bertsent.config import AverageConfig, EvalConfig, PredictConfig, PretrainConfig
from bertsent.errors import UserError
from bertsent.pretrain import pretrain
from bertsent.train import Hooks, train
from tests.conftest import make_frame, write_splits
from tests.test_pretrain import settings as mlm_settings


@pytest.mark.parametrize("cls,prog", [(EvalConfig, "bertsent.evaluate"),
                                      (PredictConfig, "bertsent.predict"),
                                      (PretrainConfig, "bertsent.pretrain"),
                                      (AverageConfig, "bertsent.average")])
def test_only_train_offers_and_takes_the_training_presets(cls, prog):
    assert "imdb-full" not in build_parser(cls, prog).format_help()
    with pytest.raises(UserError, match=f"imdb-full is a bertsent.train preset .* not {prog}'s"):
        parse_overrides(["--config", "imdb-full"], cls, prog)
    assert "imdb-full" in build_parser().format_help()


def test_train_and_pretrain_refuse_each_others_runs(tiny_model_dir, tiny_config, tmp_path):
    data = write_splits(tmp_path / "mlm-data", train=make_frame(120, 1), test=make_frame(40, 2))
    base = mlm_settings(tiny_model_dir, data, tmp_path, max_steps=6)
    pretrain({**base, "run_name": "mlm"}, stop_after_step=2)
    with pytest.raises(UserError, match=r"is a bertsent.pretrain run, not a bertsent.train one: "
                                        r"resume it with python -m bertsent.pretrain"):
        train({**tiny_config, "run_name": "mlm", "resume": "latest"})
    train({**tiny_config, "epochs": 1, "run_name": "cls"}, hooks=Hooks(stop_after_step=2))
    with pytest.raises(UserError, match="is a bertsent.train run, not a bertsent.pretrain one"):
        pretrain({**base, "run_name": "cls", "resume": "latest"})
    train({**tiny_config, "epochs": 1, "run_name": "cls", "resume": "latest"})  # finished
    with pytest.raises(UserError, match="is a bertsent.train run"):  # not its scores as ours
        pretrain({**base, "run_name": "cls", "resume": "latest"})


def test_an_evaluation_report_among_the_runs_is_no_finished_run(tiny_config, tmp_path):
    train({**tiny_config, "epochs": 1, "run_name": "real"})
    report = tmp_path / "ckpt" / "report-only"
    evaluate_mod.run(EvalConfig(model=str(tmp_path / "ckpt" / "real" / "best"), device="cpu",
                                cache_dir=str(tmp_path / "cache"), report_dir=str(report)))
    assert (report / "metrics.json").is_file()
    with pytest.raises(UserError, match="no complete checkpoint"):
        train({**tiny_config, "run_name": "report-only", "resume": "latest"})
    with pytest.raises(UserError, match="already exists"):  # nor written over
        train({**tiny_config, "run_name": "report-only"})


def test_val_samples_above_the_datas_own_validation_split_is_refused(tiny_config, tmp_path):
    data = write_splits(tmp_path / "v", train=make_frame(120, 1),
                        validation=make_frame(20, 3), test=make_frame(40, 2))
    with pytest.raises(UserError, match=r"--val-samples 32 is larger than the validation split "
                                        r"\(20 rows\)"):
        train({**tiny_config, "data": str(data), "val_samples": 32})


def test_max_steps_beyond_the_epochs_gets_a_note(tiny_config, capsys):
    result = train({**tiny_config, "epochs": 1, "max_steps": 50})
    assert result["steps"] == 12
    assert ("note: --max-steps 50 is more than 1 epoch of 12 steps hold: the run takes 12 steps "
            "(pass --epochs 5 for 50)") in capsys.readouterr().err


def test_metrics_json_names_every_setting_a_result_depends_on(tiny_config, tmp_path):
    train({**tiny_config, "epochs": 1, "ema": 0.9, "eval_every": 6, "patience": 3,
           "class_weights": "balanced"})
    saved = json.loads((tmp_path / "ckpt" / "tiny" / "metrics.json").read_text())["settings"]
    assert (saved["ema"], saved["eval_every"], saved["patience"], saved["class_weights"]) == \
        (0.9, 6, 3, "balanced")


def test_a_finished_pretraining_run_removes_its_step_checkpoints(tiny_model_dir, tmp_path):
    data = write_splits(tmp_path / "mlm-data", train=make_frame(120, 1), test=make_frame(40, 2))
    pretrain(mlm_settings(tiny_model_dir, data, tmp_path, max_steps=6))
    assert sorted(p.name for p in (tmp_path / "ckpt" / "mlm").iterdir()
                  if p.name.startswith("step-")) == []
    kept = mlm_settings(tiny_model_dir, data, tmp_path, max_steps=6, run_name="kept",
                        keep_checkpoints=True)
    pretrain(kept)
    assert [p.name for p in (tmp_path / "ckpt" / "kept").iterdir()
            if p.name.startswith("step-")]


@pytest.mark.parametrize("entry,args,hint", [
    ("train", ["--ema-decay", "0.9"], "did you mean --ema?"),
    ("train", ["--head-steps", "3"], "--head-steps is a bertsent.pretrain setting"),
    ("train", ["--mask-prob", "0.2"], "--mask-prob is a bertsent.pretrain setting"),
    ("pretrain", ["--label-column", "y"], "--label-column is a bertsent.train setting"),
])
def test_a_flag_of_another_entry_point_points_at_it(entry, args, hint, capsys):
    from bertsent import pretrain as pretrain_mod
    from bertsent import train as train_mod

    main = {"train": train_mod.main, "pretrain": pretrain_mod.main}[entry]
    with pytest.raises(SystemExit) as done:
        main(args)
    assert done.value.code == 2
    assert hint in capsys.readouterr().err


def test_predict_help_lists_no_preset(capsys):
    with pytest.raises(SystemExit):
        predict_mod.main(["--help"])
    assert "imdb-full" not in capsys.readouterr().out
