"""Checkpoint averaging: its arithmetic, the weights it takes from a checkpoint, and the model
folder it writes from a real (tiny) run, which evaluate scores."""

import json

import pytest
import torch
from safetensors.torch import load_file

from bertsent.average import evaluated_weights, main, mean_weights
from bertsent.checkpoint import load_checkpoint
from bertsent.train import train


def test_the_mean_is_equal_weight_and_keeps_integer_buffers_and_dtypes():
    a = {"w": torch.tensor([1.0, 2.0]), "h": torch.tensor([1.0], dtype=torch.bfloat16),
         "ids": torch.tensor([0, 1])}
    b = {"w": torch.tensor([3.0, 6.0]), "h": torch.tensor([3.0], dtype=torch.bfloat16),
         "ids": torch.tensor([0, 1])}
    c = {"w": torch.tensor([5.0, 1.0]), "h": torch.tensor([5.0], dtype=torch.bfloat16),
         "ids": torch.tensor([0, 1])}
    mean = mean_weights(iter([a, b, c]))
    assert torch.allclose(mean["w"], torch.tensor([3.0, 3.0]))
    assert mean["h"].dtype == torch.bfloat16 and mean["h"].item() == 3.0
    assert torch.equal(mean["ids"], torch.tensor([0, 1]))


def test_states_of_different_models_are_refused():
    with pytest.raises(ValueError, match="different models"):
        mean_weights([{"w": torch.zeros(2)}, {"v": torch.zeros(2)}])
    with pytest.raises(ValueError, match="ids differs"):
        mean_weights([{"ids": torch.tensor([0])}, {"ids": torch.tensor([1])}])
    with pytest.raises(ValueError, match="no checkpoints"):
        mean_weights([])


def test_a_checkpoint_evaluates_its_ema_average_where_it_kept_one():
    state = {"model": {"w": torch.zeros(2), "b": torch.ones(1)},
             "ema": {"names": ["w"], "shadow": [torch.full((2,), 7.0)]}}
    got = evaluated_weights(state)
    assert torch.equal(got["w"], torch.full((2,), 7.0)) and torch.equal(got["b"], torch.ones(1))
    assert torch.equal(evaluated_weights({"model": state["model"], "ema": None})["w"],
                       torch.zeros(2))


def test_averaging_a_tiny_runs_checkpoints_writes_a_model_evaluate_scores(tiny_config,
                                                                         tmp_path, capsys):
    train({**tiny_config, "ema": 0.9, "keep_checkpoints": True, "keep_last": 3})
    run = tmp_path / "ckpt" / "tiny"
    steps = sorted(p.name for p in run.glob("step-*"))
    assert steps == ["step-16", "step-20", "step-24"]

    # one checkpoint: exactly the weights the run exported at that (its last) step
    assert main(["--run", str(run), "--last", "1", "--out-dir", str(tmp_path / "one")]) == 0
    final, one = load_file(str(run / "final" / "model.safetensors")), load_file(
        str(tmp_path / "one" / "model.safetensors"))
    assert final.keys() == one.keys()
    assert all(torch.equal(final[k], one[k]) for k in final)

    # two: the mean of the two checkpoints' averaged weights
    assert main(["--run", str(run), "--last", "2"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["averaged_steps"] == [20, 24]
    two = load_file(str(run / "average-2" / "model.safetensors"))
    states = [evaluated_weights(load_checkpoint(run / s)) for s in ("step-20", "step-24")]
    name = "classifier.weight"
    assert torch.allclose(two[name], (states[0][name] + states[1][name]) / 2)
    assert not torch.equal(two[name], final[name])
    meta = json.loads((run / "average-2" / "bertsent.json").read_text())
    assert meta["metrics"] == {"averaged_steps": [20, 24]}

    # it is a model folder like best/: evaluate scores it on the reviews the run chose on
    from bertsent.evaluate import main as evaluate
    assert evaluate(["--model", str(run / "average-2"), "--split", "selection"]) == 0
    scored = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert scored["samples"] == tiny_config["val_samples"] and 0 <= scored["accuracy"] <= 1

    # a second average replaces the first; a trained model's folder is never overwritten
    assert main(["--run", str(run), "--last", "2"]) == 0
    assert main(["--run", str(run), "--last", "2", "--out-dir", str(run / "best")]) == 2
    assert "not an earlier average" in capsys.readouterr().err
    assert main(["--run", str(run), "--last", "4"]) == 2
    assert "holds 3 complete step checkpoint(s) and --last asks for 4: pass --last 3" in \
        capsys.readouterr().err


def test_a_run_without_step_checkpoints_or_a_missing_folder_fails_in_one_line(
        tiny_config, tmp_path, capsys):
    train({**tiny_config, "epochs": 1})
    capsys.readouterr()
    assert main(["--run", str(tmp_path / "ckpt" / "tiny")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--keep-checkpoints --keep-last 4" in err
    assert main(["--run", str(tmp_path / "nowhere")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert main([]) == 2
    assert "--run is required" in capsys.readouterr().err
    assert main(["--run", str(tmp_path), "--last", "0"]) == 2
    assert "--last must be positive" in capsys.readouterr().err


def soup_runs(tiny_config, seeds=(7, 7)) -> list:
    """Two tiny runs from the same base on the same reviews, with other learning rates (or
    seeds): the best/ folders a soup averages."""
    folders = []
    for i, (lr, seed) in enumerate(zip((1e-2, 5e-3), seeds, strict=True)):
        train({**tiny_config, "epochs": 1, "lr": lr, "seed": seed, "run_name": f"r{i}"})
        folders.append(f"{tiny_config['checkpoint_dir']}/r{i}/best")
    return folders


def test_a_soup_is_the_mean_of_the_models_and_evaluate_scores_it_on_their_reviews(
        tiny_config, tmp_path, capsys):
    a, b = soup_runs(tiny_config)
    capsys.readouterr()
    out = tmp_path / "soup"
    assert main(["--models", f"{a},{b}", "--out-dir", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(printed["souped_models"]) == 2 and "--split selection" in printed["evaluate"]
    wa, wb, ws = (load_file(f"{f}/model.safetensors") for f in (a, b, out))
    assert ws.keys() == wa.keys()
    assert all(torch.allclose(ws[k], (wa[k].double() + wb[k].double()).div(2).to(ws[k].dtype))
               for k in ws if ws[k].is_floating_point())
    assert not torch.equal(ws["classifier.weight"], wa["classifier.weight"])
    meta = json.loads((out / "bertsent.json").read_text())
    assert list(meta["metrics"]) == ["souped_models"]

    # the soup chose on the reviews both runs chose on: evaluate draws them again
    from bertsent.evaluate import main as evaluate
    scores = []
    for folder in (a, out):
        assert evaluate(["--model", str(folder), "--split", "selection"]) == 0
        scores.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
    assert scores[0]["samples"] == scores[1]["samples"] == tiny_config["val_samples"]

    # a second soup replaces the first (an earlier average); a trained model's folder never
    assert main(["--models", f"{b},{a}", "--out-dir", str(out)]) == 0
    assert main(["--models", f"{a},{b}", "--out-dir", str(b)]) == 2
    assert "not an earlier average" in capsys.readouterr().err


def test_models_that_chose_on_other_reviews_or_are_not_models_are_refused_in_one_line(
        tiny_config, tmp_path, capsys):
    a, b = soup_runs(tiny_config, seeds=(7, 8))
    capsys.readouterr()
    out = str(tmp_path / "soup")
    cases = [
        (["--models", f"{a},{b}", "--out-dir", out], "chose on other reviews than"),
        (["--models", f"{a},{a}/", "--out-dir", out], "more than once"),
        (["--models", a, "--out-dir", out], "lists 1 model: list two or more"),
        (["--models", f"{a},{b}"], "--models needs --out-dir"),
        (["--models", f"{a},{tmp_path}", "--out-dir", out], "is not a model folder"),
        (["--models", f"{a},,{b}", "--out-dir", out], "empty entry"),
        (["--models", f"{a},{b}", "--run", "x", "--out-dir", out], "pass one of them"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert message in err and err.count("\n") == 0, (argv, err)
    assert not (tmp_path / "soup").exists()


def test_a_model_exported_before_data_identities_is_compared_by_its_data_name():
    from types import SimpleNamespace

    from bertsent.soup import selection_of
    config = {"data": "../shared/data/imdb", "seed": 42, "val_samples": 2000}
    files = {"train.parquet": {"bytes": 1, "sha256": "ab"}}
    new = SimpleNamespace(meta={"config": config, "data_identity": {"kind": "folder",
                                                                    "files": files}})
    old = SimpleNamespace(meta={"config": config, "data_identity": None})
    assert selection_of(new)["data"] == files and selection_of(old)["data"] == config["data"]
    assert selection_of(new, named=True) == selection_of(old)
    moved = SimpleNamespace(meta={"config": {**config, "data": "/elsewhere/imdb"},
                                  "data_identity": new.meta["data_identity"]})
    assert selection_of(moved) == selection_of(new)  # the same files, named otherwise
    reseeded = SimpleNamespace(meta={"config": {**config, "seed": 1}, "data_identity": None})
    assert selection_of(reseeded) != selection_of(old)
