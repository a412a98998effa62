"""Bring-your-own-data labels: the mapping itself, the metrics for many and ordinal classes,
class weights, a data set's own validation split, and whole runs on tiny in-process data whose
label names must reach predict, evaluate and transformers.pipeline."""

import json

import numpy as np
import pyarrow as pa
import pytest
import torch
from datasets import Dataset, DatasetDict
from safetensors.torch import load_file
from sklearn.utils.class_weight import compute_class_weight
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from bertsent import checkpoint as ckpt
from bertsent import evaluate, predict
from bertsent.cli import parse_config
from bertsent.config import TrainConfig, parse_label_list
from bertsent.data import pick_splits, subset_indices
from bertsent.engine import train_step
from bertsent.errors import UserError
from bertsent.labels import LabelMap, class_weights
from bertsent.metrics import compute_metrics
from bertsent.resume import differences
from bertsent.train import Hooks, train
from tests.conftest import NEGATIVE, POSITIVE, make_classes_frame, make_frame, write_splits
from tests.test_engine import batch_of, load, split

SENTIMENT = {"negative": NEGATIVE, "positive": POSITIVE}
THREE = {"negative": NEGATIVE, "neutral": None, "positive": POSITIVE}
RATINGS = {10: POSITIVE[4:], 1: NEGATIVE[:4], 9: POSITIVE[:4], 2: NEGATIVE[4:]}


# ---------------------------------------------------------------- the mapping, no data set
@pytest.mark.parametrize("values, num_labels, names", [
    ([0, 1, 1, 0], None, ("negative", "positive")),
    ([0, 1, 1, 0], 2, ("negative", "positive")),  # --num-labels that agrees with the data
    ([2, 0, 1], None, ("0", "1", "2")),
    ([2, 0, 1], 3, ("0", "1", "2")),
])
def test_integer_ids_keep_their_meaning(values, num_labels, names):
    labels = LabelMap.from_column(pa.array(values), num_labels=num_labels)
    assert labels.by_id and labels.names == names
    assert labels.encode(pa.array(values), "train").tolist() == values


def test_other_integers_are_mapped_in_numeric_order():
    column = pa.chunked_array([[10, 1, 9, 2, 7], [3, 4, 8, 10]])
    labels = LabelMap.from_column(column)
    assert labels.names == ("1", "2", "3", "4", "7", "8", "9", "10") and not labels.by_id
    assert labels.encode(column, "train").tolist() == [7, 0, 6, 1, 4, 2, 3, 5, 7]
    assert labels.id2label[7] == "10" and labels.label2id["10"] == 7


def test_strings_are_sorted_or_put_in_the_given_order():
    column = pa.array(["positive", "negative", "positive"])
    assert LabelMap.from_column(column).encode(column, "train").tolist() == [1, 0, 1]
    given = LabelMap.from_column(column, given=["positive", "negative"])
    assert given.names == ("positive", "negative")
    assert given.encode(column, "train").tolist() == [0, 1, 0]
    assert LabelMap.from_column(pa.array(["10", "9", "2"])).names == ("2", "9", "10")
    categorical = pa.array(["b", "a", "b"]).dictionary_encode()  # pandas categoricals
    assert LabelMap.from_column(categorical).encode(categorical, "t").tolist() == [1, 0, 1]
    ratings = LabelMap.from_column(pa.array([1, 10]), given=parse_label_list([10, 1]))
    assert ratings.encode(pa.array([1, 10, 10]), "train").tolist() == [1, 0, 0]


@pytest.mark.parametrize("build, message", [
    (lambda: LabelMap.from_column(pa.array([0, 3]), num_labels=3),
     "the train split has 2 labels (0, 3) but --num-labels is 3"),
    (lambda: LabelMap.from_column(pa.array(["a", "b", "c"]), num_labels=2),
     "has 3 labels ('a', 'b', 'c') but --num-labels is 2"),
    (lambda: LabelMap.from_column(pa.array(["pos", "neg"]), given=["pos", "x"]),
     "label 'neg' that --labels does not list (pos, x): add it to --labels"),
    (lambda: LabelMap.from_column(pa.array(["pos", "pos"])), "only one label ('pos')"),
    (lambda: LabelMap.from_column(pa.array([str(i) for i in range(1001)])),
     "1001 distinct labels, more than bertsent's limit of 1000 classes: pass --label-column"),
    (lambda: LabelMap.from_column(pa.array(["neg", "pos"])).encode(
        pa.array(["pos", "neutral", "meh", "neutral"]), "test"),
     "the test split has labels 'meh', 'neutral' that the train split does not have (neg, pos)"),
    (lambda: LabelMap.identity(2).encode(pa.array([0, 1, 5]), "test"),
     "the test split has label 5 that the train split does not have (ids 0..1"),
    (lambda: parse_label_list("a,b,a"), "lists a more than once"),
    (lambda: parse_label_list("a"), "needs at least two labels"),
    (lambda: parse_label_list("a,,b"), "empty name"),
    (lambda: parse_label_list({"a": 1}), "must be a comma-separated string or a list"),
])
def test_label_errors_name_what_is_wrong(build, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build()


def test_labels_from_cli_and_toml_take_one_path(tmp_path):
    toml = tmp_path / "run.toml"
    for text in ('labels = ["negative", "positive"]\n', 'labels = "negative, positive"\n'):
        toml.write_text(text)
        assert parse_config(["--config", str(toml)]).labels == ["negative", "positive"]
    assert parse_config(["--labels", "negative,positive"]).labels == ["negative", "positive"]
    toml.write_text("labels = [1, 10]\n")
    assert parse_config(["--config", str(toml)]).labels == ["1", "10"]
    assert TrainConfig().num_labels is None and TrainConfig().class_weights == "none"
    with pytest.raises(UserError, match="--labels lists 3 labels but --num-labels is 2"):
        parse_config(["--labels", "a,b,c", "--num-labels", "2"])


@pytest.mark.parametrize("id2label, column, by_id, ids", [
    ({0: "negative", 1: "positive"}, ["positive", "negative"], False, [1, 0]),  # by name
    ({0: "negative", 1: "positive"}, [1, 0], True, [1, 0]),  # integer ids
    ({0: "1", 1: "2", 2: "10"}, [10, 1], False, [2, 0]),  # a ratings model: by value
    ({0: "0", 1: "1", 2: "2"}, [2, 0], False, [2, 0]),  # numeric names 0..n-1: the same
])
def test_another_datasets_labels_meet_the_models_by_name(id2label, column, by_id, ids):
    labels = LabelMap.for_model(id2label, pa.array(column))
    assert labels.by_id == by_id
    assert labels.encode(pa.array(column), "test", "the model").tolist() == ids


def test_a_name_the_model_does_not_know_is_refused():
    labels = LabelMap.for_model({0: "negative", 1: "positive"}, pa.array(["neutral"]))
    with pytest.raises(UserError, match="label 'neutral' that the model does not have"):
        labels.encode(pa.array(["negative", "neutral"]), "test", "the model")


def test_balanced_class_weights_are_sklearns_and_average_one():
    ids = np.array([0, 0, 0, 0, 0, 0, 1, 1, 2])
    weights = class_weights(ids, 3, "balanced")
    assert np.allclose(weights, compute_class_weight("balanced", classes=np.arange(3), y=ids))
    assert weights[ids].mean() == pytest.approx(1.0)  # the loss keeps its scale
    assert class_weights(ids, 4, "balanced")[3] == 0.0  # a class with no samples
    assert class_weights(ids, 3, "none") is None


# ---------------------------------------------------------------- metrics
def test_binary_metrics_keep_their_keys_and_values():
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 3.0]])
    labels = np.array([0, 1, 1, 1])
    plain = compute_metrics(logits, labels, 2)
    assert compute_metrics(logits, labels, 2, ["negative", "positive"]) == plain
    assert set(plain) == {"loss", "accuracy", "f1", "precision", "recall", "samples"}


def test_many_class_metrics_and_mae_on_numeric_names():
    names = ["1", "2", "9", "10"]
    labels = np.array([0, 1, 2, 3, 3, 0])
    preds = np.array([0, 0, 2, 2, 3, 3])  # errors: 2->1 (1), 10->9 (1), 1->10 (9)
    metrics = compute_metrics(np.eye(4)[preds] * 5, labels, 4, names)
    assert metrics["mae"] == pytest.approx((1 + 1 + 9) / 6)
    assert metrics["accuracy"] == pytest.approx(3 / 6)
    assert set(metrics["per_class"]) == set(names)
    assert metrics["per_class"]["2"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0,
                                         "support": 1}
    assert metrics["f1_macro"] == pytest.approx(metrics["f1"])
    assert 0 < metrics["f1_weighted"] < 1
    assert "mae" not in compute_metrics(np.eye(3)[[0, 1, 2]], np.array([0, 1, 2]), 3,
                                        ["neg", "neu", "pos"])


# ---------------------------------------------------------------- loss weights, resume, splits
def test_class_weights_change_the_loss_and_keep_accumulation_exact(tiny_model_dir):
    big = batch_of(12, 1)
    weights = torch.tensor([3.0, 0.5])
    losses, params = {}, {}
    for name, parts, w in (("plain", 1, None), ("big", 1, weights), ("accum", 3, weights)):
        model = load(tiny_model_dir, dropout=False)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        losses[name] = train_step(model, opt, split(big, parts), lr=1e-3, num_items=12,
                                  class_weights=w).loss
        params[name] = torch.cat([p.detach().flatten() for p in model.parameters()])
    model = load(tiny_model_dir, dropout=False)
    with torch.no_grad():
        logits = model(input_ids=big["input_ids"], attention_mask=big["attention_mask"]).logits
    each = torch.nn.functional.cross_entropy(logits, big["labels"], reduction="none")
    assert losses["big"] == pytest.approx((each * weights[big["labels"]]).sum().item() / 12,
                                          rel=1e-5)  # summed weighted loss / samples
    assert losses["big"] != pytest.approx(losses["plain"])
    assert losses["accum"] == pytest.approx(losses["big"], rel=1e-6)
    assert torch.allclose(params["accum"], params["big"], atol=1e-6)


def test_checkpoints_from_before_labels_still_resume():
    old = {k: v for k, v in TrainConfig(num_labels=2).to_dict().items()
           if k not in ("labels", "class_weights")}
    assert differences(old, 1, TrainConfig(num_labels=2), 1) == ([], [])
    unsafe, _ = differences(old, 1, TrainConfig(num_labels=2, class_weights="balanced"), 1)
    assert unsafe == ["class_weights: 'none' -> 'balanced'"]


def _ds(labels):
    return Dataset.from_dict({"text": ["a"] * len(labels), "label": labels})


def test_validation_files_and_hub_splits_are_found(tmp_path, monkeypatch):
    from bertsent import datafiles as data_module

    folder = tmp_path / "csv"
    folder.mkdir()
    for name in ("train", "val"):
        make_frame(6, 1).to_csv(folder / f"{name}.csv", index=False)
    raw = data_module.load_raw(str(folder))
    assert set(raw) == {"train", "validation"}
    assert pick_splits(raw, str(folder), "label").test_split == "validation"
    hub = DatasetDict(train=_ds([0, 1]), validation=_ds([1, 0]), test=_ds([-1, -1]))
    monkeypatch.setattr(data_module.datasets, "load_dataset", lambda name: hub)
    raw = data_module.load_raw("org/glue-like")
    assert set(raw) == {"train", "validation", "test"}
    assert pick_splits(raw, "org/glue-like", "label").test is raw["validation"]


def test_which_split_selects_and_which_reports():
    train, valid, test = _ds([0, 1]), _ds([1, 0, 1]), _ds([0, 1, 1, 0])
    both = pick_splits(DatasetDict(train=train, validation=valid, test=test), "d", "label")
    assert (both.test is test, both.validation is valid, both.test_split) == (True, True, "test")
    hidden = DatasetDict(train=train, validation=valid, test=_ds([-1, -1]))
    for raw, why in ((hidden, "has no labels"), (DatasetDict(train=train, validation=valid),
                                                 "is missing")):
        picked = pick_splits(raw, "d", "label")
        assert picked.test is valid and picked.validation is None
        assert picked.test_split == "validation" and why in picked.note
    with pytest.raises(UserError, match="has no labels"):
        pick_splits(DatasetDict(train=train, test=_ds([-1])), "d", "label")
    given = subset_indices(10, 4, None, 500, None, seed=0, n_val=3)
    assert sorted(given.val) == [0, 1, 2] and sorted(given.train) == list(range(10))
    assert len(subset_indices(10, 4, 6, 2, None, seed=0, n_val=3).val) == 2


# ---------------------------------------------------------------- whole runs on tiny data
def _run(tiny_config, tmp_path, data, **extra):
    return train({**tiny_config, "data": str(data), **extra})


def _tb(tmp_path, run):
    tb = EventAccumulator(str(tmp_path / "runs" / run))
    tb.Reload()
    return tb


def test_string_labels_train_exactly_like_integer_labels(tiny_config, tmp_path):
    frames = {s: make_frame(n, seed) for s, n, seed in (("train", 240, 1), ("test", 60, 2))}
    named = {s: f.assign(sentiment=f.label.map({0: "negative", 1: "positive"}))
             .drop(columns="label") for s, f in frames.items()}
    ints = _run(tiny_config, tmp_path, write_splits(tmp_path / "ints", **frames),
                run_name="ints", keep_checkpoints=True)
    strings = _run(tiny_config, tmp_path, write_splits(tmp_path / "strings", **named),
                   run_name="strings", label_column="sentiment", keep_checkpoints=True)
    assert strings["history"] == ints["history"] and strings["accuracy"] == ints["accuracy"]
    root = tmp_path / "ckpt"
    a, b = load_file(root / "ints" / "final" / "model.safetensors"), \
        load_file(root / "strings" / "final" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the class map travels as the checkpoint's own entry: strings by name, integers as ids
    entry = {name: ckpt.load_checkpoint(ckpt.step_checkpoints(root / name)[-1])["labels"]
             for name in ("strings", "ints")}
    assert entry["strings"] == {"names": ["negative", "positive"], "by_id": False}
    assert entry["ints"] == {"names": ["negative", "positive"], "by_id": True}
    exported = json.loads((root / "strings" / "best" / "config.json").read_text())
    assert exported["id2label"] == {"0": "negative", "1": "positive"}


@pytest.fixture(scope="module")
def three_class_run(tiny_model_dir, tmp_path_factory):
    """A finished run on three string classes, one of them plain neutral words."""
    from tests.conftest import tiny_settings

    tmp = tmp_path_factory.mktemp("three")
    data = write_splits(tmp / "data", train=make_classes_frame(240, 1, THREE),
                        test=make_classes_frame(60, 2, THREE))
    result = train({**tiny_settings(tiny_model_dir, data, tmp), "run_name": "three",
                    "epochs": 3})
    return tmp, data, result


def test_three_classes_end_to_end(three_class_run):
    tmp, data, result = three_class_run
    names = ["negative", "neutral", "positive"]
    assert result["labels"] == names and result["test_split"] == "test"
    assert result["accuracy"] > 0.5  # chance is 1/3; the neutral class has no cue words
    saved = json.loads((tmp / "ckpt" / "three" / "metrics.json").read_text())
    for key in ("accuracy", "f1_macro", "f1_weighted", "per_class", "labels"):
        assert key in saved, key
    assert set(saved["per_class"]) == set(names) and "mae" not in saved
    tags = _tb(tmp, "three").Tags()
    for name in names:
        assert f"val/pr_curve/{name}" in tags["tensors"] and \
            f"val/f1_per_class/{name}" in tags["scalars"]
    best = tmp / "ckpt" / "three" / "best"
    assert json.loads((best / "config.json").read_text())["id2label"] == \
        {str(i): n for i, n in enumerate(names)}
    assert "3-class text classification" in (best / "README.md").read_text()


def test_three_class_names_reach_predict_and_pipeline(three_class_run, capsys):
    from transformers import pipeline

    tmp, _, _ = three_class_run
    best = str(tmp / "ckpt" / "three" / "best")
    texts = ["great wonderful superb film", "the movie was the plot", "awful boring waste"]
    assert predict.main(["--model", best, "--json", *texts]) == 0
    ours = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    theirs = pipeline("text-classification", model=best, top_k=None, device="cpu")(texts)
    for o, t in zip(ours, theirs, strict=True):
        assert set(o["probabilities"]) == {d["label"] for d in t} == \
            {"negative", "neutral", "positive"}
        for d in t:  # fp32 (predict's default): the same probabilities, batched or not
            assert o["probabilities"][d["label"]] == pytest.approx(d["score"], abs=1e-6, rel=0)
        assert o["label"] == max(t, key=lambda d: d["score"])["label"]
    assert ours[0]["label"] == "positive" and ours[2]["label"] == "negative"


def test_three_class_evaluation_report(three_class_run, capsys):
    tmp, data, result = three_class_run
    report_dir = tmp / "report"
    assert evaluate.main(["--model", str(tmp / "ckpt" / "three" / "best"), "--data", str(data),
                          "--samples", "40", "--seed", "7", "--precision", "fp32",
                          "--cache-dir", str(tmp / "cache"), "--report-dir",
                          str(report_dir)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["accuracy"] == pytest.approx(result["accuracy"])
    assert out["labels"] == ["negative", "neutral", "positive"]
    assert len(out["confusion_matrix"]) == 3 and set(out["per_class"]) == set(out["labels"])
    saved = json.loads((report_dir / "metrics.json").read_text())
    assert {"f1_macro", "f1_weighted", "per_class", "expected_calibration_error"} <= set(saved)
    for picture in ("confusion_matrix.png", "precision_recall.png"):
        assert (report_dir / picture).stat().st_size > 0


def test_ratings_like_integers_get_names_and_mae(tiny_config, tmp_path, capsys):
    data = write_splits(tmp_path / "ratings", train=make_classes_frame(240, 1, RATINGS),
                        test=make_classes_frame(60, 2, RATINGS))
    result = _run(tiny_config, tmp_path, data, epochs=3)
    assert result["labels"] == ["1", "2", "9", "10"] and "mae" in result
    best = tmp_path / "ckpt" / "tiny" / "best"
    assert evaluate.main(["--model", str(best), "--data", str(data), "--samples", "40",
                          "--seed", "7", "--cache-dir", str(tmp_path / "cache")]) == 0
    out = json.loads(capsys.readouterr().out)
    values = np.array([1, 2, 9, 10])
    cm = np.array(out["confusion_matrix"])
    expected = (cm * np.abs(values[:, None] - values[None, :])).sum() / cm.sum()
    assert out["mae"] == pytest.approx(expected) and out["mae"] == pytest.approx(result["mae"])


def test_labels_flag_sets_order_and_names(tiny_config, tmp_path, capsys):
    data = write_splits(tmp_path / "d", train=make_classes_frame(240, 1, SENTIMENT),
                        test=make_classes_frame(60, 2, SENTIMENT))
    result = _run(tiny_config, tmp_path, data, labels="positive,negative")
    assert result["labels"] == ["positive", "negative"] and result["accuracy"] > 0.8
    best = tmp_path / "ckpt" / "tiny" / "best"
    assert json.loads((best / "config.json").read_text())["id2label"] == \
        {"0": "positive", "1": "negative"}
    assert predict.main(["--model", str(best), "great superb loved it"]) == 0
    assert capsys.readouterr().out.startswith("positive ")


def test_num_labels_is_checked_against_the_data(tiny_config, tmp_path):
    data = write_splits(tmp_path / "d", train=make_classes_frame(240, 1, THREE),
                        test=make_classes_frame(60, 2, THREE))
    with pytest.raises(UserError, match="has 3 labels .* but --num-labels is 2"):
        _run(tiny_config, tmp_path, data, num_labels=2)
    assert _run(tiny_config, tmp_path, data, num_labels=3, epochs=1)["labels"] == \
        ["negative", "neutral", "positive"]


def test_a_test_label_train_never_had_is_named(tiny_config, tmp_path):
    test = make_classes_frame(60, 2, THREE)
    data = write_splits(tmp_path / "d", train=make_classes_frame(240, 1, SENTIMENT), test=test)
    with pytest.raises(UserError, match="test split has label 'neutral' that the train split"):
        _run(tiny_config, tmp_path, data)


def test_the_datas_own_validation_split_selects_the_model(tiny_config, tmp_path):
    data = write_splits(tmp_path / "d", train=make_frame(96, 1), validation=make_frame(20, 3),
                        test=make_frame(60, 2))
    result = _run(tiny_config, tmp_path, data, train_samples=96,  # all of train: none carved
                  val_samples=None)  # the default: all of a smaller own split
    assert result["test_split"] == "test" and result["steps"] == 24
    assert [e.value for e in _tb(tmp_path, "tiny").Scalars("val/samples")][-1] == 20
    saved = json.loads((tmp_path / "ckpt" / "tiny" / "metrics.json").read_text())
    assert saved["test_split"] == "test"


@pytest.mark.parametrize("test", ["unlabelled", "missing"])
def test_without_a_labelled_test_split_validation_is_reported(tiny_config, tmp_path, capsys,
                                                              test):
    splits = {"train": make_frame(240, 1), "validation": make_frame(50, 3)}
    if test == "unlabelled":
        splits["test"] = make_frame(60, 2).assign(label=-1)
    result = _run(tiny_config, tmp_path, write_splits(tmp_path / "d", **splits))
    assert result["test_split"] == "validation" and result["test_samples"] == 40
    assert result["accuracy"] > 0.8
    saved = json.loads((tmp_path / "ckpt" / "tiny" / "metrics.json").read_text())
    assert saved["test_split"] == "validation"
    notes = [line for line in capsys.readouterr().err.splitlines() if "reporting on" in line]
    assert len(notes) == 1 and ("has no labels" if test == "unlabelled" else "is missing") \
        in notes[0]


def test_evaluate_scores_string_names_with_an_integer_label_model(tiny_config, tmp_path,
                                                                   capsys):
    result = train(tiny_config)
    # tiny_data_dir's test split, row for row, with the names in a 'sentiment' column
    test = make_frame(60, 2).sort_values("label", kind="stable").reset_index(drop=True)
    named = {s: f.assign(sentiment=f.label.map({0: "negative", 1: "positive"}))
             .drop(columns="label") for s, f in (("train", make_frame(20, 1)), ("test", test))}
    data = write_splits(tmp_path / "named", **named)
    common = ["--model", result["best_model_dir"], "--samples", "40", "--seed", "7",
              "--cache-dir", str(tmp_path / "cache")]
    assert evaluate.main([*common, "--data", tiny_config["data"]]) == 0
    by_id = json.loads(capsys.readouterr().out)
    assert evaluate.main([*common, "--data", str(data), "--label-column", "sentiment"]) == 0
    by_name = json.loads(capsys.readouterr().out)
    assert by_name["accuracy"] == by_id["accuracy"] == pytest.approx(result["accuracy"])
    assert by_name["confusion_matrix"] == by_id["confusion_matrix"]


def test_balanced_class_weights_train_an_imbalanced_set(tiny_config, tmp_path):
    frame = make_frame(640, 1)
    skewed = frame[(frame.label == 1) | (frame.index % 8 == 0)]  # 1 negative per 4 positives
    data = write_splits(tmp_path / "d", train=skewed, test=make_frame(60, 2))
    settings = {"lr": 3e-3, "train_samples": 160}
    plain = _run(tiny_config, tmp_path, data, run_name="plain", **settings)
    weighted = _run(tiny_config, tmp_path, data, run_name="weighted", class_weights="balanced",
                    **settings)
    assert weighted["history"] != plain["history"]
    assert weighted["accuracy"] > 0.8  # on balanced test data
    saved = json.loads((tmp_path / "ckpt" / "weighted" / "config.json").read_text())
    assert saved["class_weights"] == "balanced"


def test_mapped_labels_resume_exactly(tiny_config, tmp_path):
    data = write_splits(tmp_path / "d", train=make_classes_frame(240, 1, RATINGS),
                        test=make_classes_frame(60, 2, RATINGS))
    base = {**tiny_config, "data": str(data), "class_weights": "balanced", "save_every": 3,
            "keep_checkpoints": True}
    full = train({**base, "run_name": "full"})
    part = train({**base, "run_name": "cut"}, hooks=Hooks(stop_after_step=7))
    rest = train({**base, "run_name": "cut", "resume": "latest"})
    assert part["history"] + rest["history"] == full["history"]
    assert rest["labels"] == full["labels"] == ["1", "2", "9", "10"]
    with pytest.raises(UserError, match="labels: None -> \\['10'"):
        train({**base, "run_name": "cut", "resume": "latest", "labels": "10,9,2,1"})
