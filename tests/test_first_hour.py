"""A user's first hour with their own data: small datasets, recorded settings reused, file
predictions aligned row by row, model selection and early stopping, the model card, disk."""

import json
import os

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from bertsent import checkpoint as ckpt
from bertsent import evaluate, predict
from bertsent.card import base_model_facts, model_card
from bertsent.cli import build_parser, parse_config
from bertsent.config import TrainConfig
from bertsent.errors import UserError
from bertsent.train import Hooks, train
from tests.conftest import make_frame


def own_csv(tmp_path, n_train=60, n_test=30):
    """A user's CSV: other column names, string labels, a few rows."""
    folder = tmp_path / "mine"
    folder.mkdir()
    for split, n, seed in (("train", n_train, 1), ("test", n_test, 2)):
        frame = make_frame(n, seed).rename(columns={"text": "review"})
        frame["sentiment"] = frame.pop("label").map({0: "bad", 1: "good"})
        frame.to_csv(folder / f"{split}.csv", index=False)
    return folder


def own_settings(tiny_config, tmp_path, **extra):
    settings = {**tiny_config, "data": str(own_csv(tmp_path)), "text_column": "review",
                "label_column": "sentiment", "train_samples": None, "val_samples": None,
                "test_samples": None, "epochs": 2, **extra}
    return settings


# ---------------------------------------------------------------- small datasets
def test_the_default_validation_size_adapts_to_the_data():
    cfg = TrainConfig()
    assert cfg.val_size(25_000) == 500 and cfg.val_size(200) == 20 and cfg.val_size(5) == 1
    assert cfg.val_size(200, carved=False) == 500  # the data's own validation split
    assert TrainConfig(val_samples=50).val_size(200) == 50


def test_a_sixty_row_csv_trains_with_the_defaults(tiny_config, tmp_path):
    result = train(own_settings(tiny_config, tmp_path))
    assert result["val_samples"] == 6 and result["train_samples"] == 54
    assert result["labels"] == ["bad", "good"] and result["test_samples"] == 30


# ---------------------------------------------------------------- recorded settings reused
@pytest.fixture
def trained_on_csv(tiny_config, tmp_path):
    settings = own_settings(tiny_config, tmp_path)
    result = train(settings)
    return settings, result, tmp_path / "ckpt" / "tiny" / "best"


def test_evaluate_reuses_the_columns_and_data_the_model_was_trained_on(trained_on_csv, capsys):
    settings, result, best = trained_on_csv
    capsys.readouterr()
    assert evaluate.main(["--model", str(best), "--cache-dir", settings["cache_dir"]]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["accuracy"] == pytest.approx(result["accuracy"]) and out["labels"] == ["bad", "good"]
    assert evaluate.main(["--model", str(best), "--label-column", "nope"]) == 2  # flags win
    assert "no column 'nope'" in capsys.readouterr().err


def test_predictions_on_a_csv_line_up_with_its_rows(trained_on_csv, tmp_path, capsys):
    settings, _, best = trained_on_csv
    source = pd.read_csv(os.path.join(settings["data"], "test.csv"), dtype=str,
                         keep_default_na=False).head(6)
    source.loc[2, "review"] = "   "  # a blank review keeps its row
    source.to_csv(tmp_path / "in.csv", index=False)
    for suffix in ("csv", "jsonl", "parquet"):
        out = tmp_path / f"out.{suffix}"
        assert predict.main(["--model", str(best), "--file", str(tmp_path / "in.csv"),
                             "--out", str(out)]) == 0  # the review column: recorded
        rows = (pd.read_csv(out, dtype=str, keep_default_na=False) if suffix == "csv" else
                pd.DataFrame([json.loads(line) for line in out.read_text().splitlines()])
                if suffix == "jsonl" else
                pd.read_parquet(out))
        assert list(rows["review"]) == list(source["review"])  # every row, in order
        assert list(rows["sentiment"]) == list(source["sentiment"])
        labels = [None if label is None or label != label else label  # NaN: no label
                  for label in rows["predicted_label"]]
        assert labels[2] in ("", None) and all(label in ("bad", "good") for i, label in
                                               enumerate(labels) if i != 2)
    assert "1 blank text gets no label" in capsys.readouterr().err
    assert predict.main(["--model", str(best), "--file", str(tmp_path / "in.csv"),
                         "--out", str(tmp_path / "out.csv")]) == 2  # never replaced
    assert "already exists" in capsys.readouterr().err


def test_plain_text_files_and_arguments_keep_blank_lines_in_place(trained_on_csv, tmp_path,
                                                                  capsys):
    _, _, best = trained_on_csv
    (tmp_path / "in.txt").write_text("great fun\n\nawful dull\n")
    capsys.readouterr()
    assert predict.main(["--model", str(best), "--file", str(tmp_path / "in.txt"),
                         "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["text"] for line in lines] == ["great fun", "", "awful dull"]
    assert lines[1]["label"] is None and lines[0]["label"] in ("bad", "good")


def test_a_text_with_line_breaks_is_one_printed_row(trained_on_csv, tmp_path, capsys):
    _, _, best = trained_on_csv
    pd.DataFrame({"review": ["great fun", "line one\nline two\r\nthree", "awful"]}).to_csv(
        tmp_path / "in.csv", index=False)
    capsys.readouterr()
    assert predict.main(["--model", str(best), "--file", str(tmp_path / "in.csv")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[1].endswith("line one line two three")


# ---------------------------------------------------------------- selection and patience
def test_select_metric_loss_with_patience_stops_early_and_resumes_exactly(tiny_config, tmp_path):
    base = {**tiny_config, "epochs": 6, "eval_every": 2, "select_metric": "loss",
            "patience": 2, "lr": 3e-2, "save_every": 2, "keep_checkpoints": True}
    full = train({**base, "run_name": "full"})
    assert full["stopped_early"] and full["steps"] < 72 and full["select_metric"] == "loss"
    history = [loss for _, loss in full["history"]]
    assert len(history) == full["steps"]
    part = train({**base, "run_name": "cut"}, hooks=Hooks(stop_after_step=5))
    rest = train({**base, "run_name": "cut", "resume": "latest"})
    assert part["history"] + rest["history"] == full["history"]
    a = load_file(str(tmp_path / "ckpt" / "full" / "final" / "model.safetensors"))
    b = load_file(str(tmp_path / "ckpt" / "cut" / "final" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert rest["best_step"] == full["best_step"] and rest["accuracy"] == full["accuracy"]
    meta = json.loads((tmp_path / "ckpt" / "full" / "best" / "bertsent.json").read_text())
    assert meta["metrics"]["step"] == full["best_step"]
    assert meta["metrics"]["val"]["loss"] == pytest.approx(full["best_val_metric"])


def test_f1_macro_needs_more_than_two_classes(tiny_config):
    with pytest.raises(UserError, match="f1_macro needs more than two classes"):
        train({**tiny_config, "select_metric": "f1_macro"})


# ---------------------------------------------------------------- names and flags
def test_the_old_flag_name_and_trainer_names_are_understood(tmp_path, capsys):
    assert parse_config(["--eval-samples", "9"]).test_samples == 9
    (tmp_path / "old.toml").write_text("eval_samples = 7\n")
    assert parse_config(["--config", str(tmp_path / "old.toml")]).test_samples == 7
    with pytest.raises(SystemExit):
        parse_config(["--learning-rate", "1e-4"])
    assert "did you mean --lr?" in capsys.readouterr().err
    (tmp_path / "trainer.toml").write_text("num_train_epochs = 2\n")
    with pytest.raises(UserError, match="did you mean --epochs"):
        parse_config(["--config", str(tmp_path / "trainer.toml")])
    text = build_parser().format_help()
    assert "(default: all) (default: None)" not in text and "{head,tail,head+tail}" in text


def test_a_train_flag_given_to_evaluate_points_to_its_name_there(capsys):
    for flag, hint in (("--test-samples", "--samples"), ("--eval-samples", "--samples"),
                       ("--per-device-eval-batch-size", "--batch-size")):
        with pytest.raises(SystemExit) as refused:
            evaluate.main(["--model", "m", flag, "5"])
        assert refused.value.code == 2
        assert f"(did you mean {hint}?)" in capsys.readouterr().err


def test_a_checkpoint_with_the_old_setting_name_resumes(tiny_config):
    base = {**tiny_config, "epochs": 1}
    train(base, hooks=Hooks(stop_after_step=4))
    folder = ckpt.step_checkpoints(__import__("pathlib").Path(tiny_config["checkpoint_dir"])
                                   / "tiny")[-1]
    state = ckpt.load_checkpoint(folder)
    state["config"]["eval_samples"] = state["config"].pop("test_samples")
    ckpt.save_checkpoint(folder, state)
    assert train({**base, "resume": "latest"})["test_samples"] == 40  # no --resume-force asked


# ---------------------------------------------------------------- the card
def test_the_card_names_its_base_model_license_and_test_figures(tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    (base / "README.md").write_text("---\nlicense: apache-2.0\n---\n# A model\n"
                                    "model = AutoModel.from_pretrained('org/small-bert')\n")
    assert base_model_facts(str(base)) == {"hub_id": "org/small-bert", "license": "apache-2.0"}
    config = {**TrainConfig(model=str(base), data=str(tmp_path / "my-reviews"),
                            run_name="r1").to_dict()}
    test = {"accuracy": 0.91, "f1": 0.9, "test_samples": 123, "test_split": "test",
            "precision_mode": "fp32", "device_name": "a CPU"}
    card = model_card(config, {"step": 7, "val": {"accuracy": 0.9}}, ["bad", "good"], test)
    header = card.split("---")[1]
    for line in ("license: apache-2.0", "base_model: org/small-bert",
                 "pipeline_tag: text-classification", "model-index:", "value: 0.91"):
        assert line in header, line
    assert "truncation=True" in card and "123 reviews" in card and "my-reviews" in card
    assert str(tmp_path) not in card.replace(str(base), "")  # the data by name, not its path


def test_a_finished_run_is_tidy_and_its_reported_card_has_the_test_figures(tiny_config,
                                                                           tmp_path, capsys):
    result = train({**tiny_config, "epochs": 1})  # one validation point, at the last step
    run = tmp_path / "ckpt" / "tiny"
    assert not ckpt.step_checkpoints(run)  # removed once finished
    assert result["best_step"] == result["steps"]  # best/ and final/ hold the same weights
    best, final = run / "best" / "model.safetensors", run / "final" / "model.safetensors"
    assert os.path.samefile(best, final)  # stored once
    assert ckpt.verify(run / "best") is None and ckpt.verify(run / "final") is None
    card = (run / "best" / "README.md").read_text()
    assert f"value: {round(result['accuracy'], 4)}" in card and "model-index" in card
    assert "takes " in capsys.readouterr().err  # the run's size on disk
