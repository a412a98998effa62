"""The data and label rules of reliability round 3, one class of fault per section: what a split
is made of, unlabelled values, --num-labels, CSV values as written, macro averages over the
classes present, and one-line messages where there were tracebacks. Tiny in-process data only."""

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from datasets import Dataset, DatasetDict

from bertsent import evaluate
from bertsent.config import EvalConfig
from bertsent.data import Splits, check_split, is_unlabelled, overlap_note, pick_splits
from bertsent.datafiles import load_raw
from bertsent.errors import UserError
from bertsent.labels import LabelMap, as_written, look_alike
from bertsent.metrics import compute_metrics
from bertsent.train import train
from tests.conftest import make_frame, tiny_settings, write_splits


def raises(message: str):
    return pytest.raises(UserError, match=re.escape(message))


def nothing_written(tmp_path: Path) -> bool:
    return not (tmp_path / "ckpt" / "tiny").exists() and not (tmp_path / "runs" / "tiny").exists()


@pytest.fixture
def settings(tiny_model_dir, tmp_path):
    """tiny_settings for a run on data written by the test (pass data=...)."""
    return tiny_settings(tiny_model_dir, tmp_path / "no-data", tmp_path)


# ---------------------------------------------------------------- 1. one file or one shard set
def _files(folder: Path, names: list[str], rows: int = 6) -> Path:
    folder.mkdir(exist_ok=True)
    for i, name in enumerate(names):
        make_frame(rows, i).to_parquet(folder / name)
    return folder


@pytest.mark.parametrize("names, message", [
    (["train.parquet", "train-00000-of-00002.parquet", "train-00001-of-00002.parquet"],
     "holds the train split both as train.parquet and as shards "
     "(train-00000-of-00002.parquet, train-00001-of-00002.parquet): keep the single file or "
     "the shards, not both"),
    (["train-00000-of-00003.parquet", "train-00002-of-00003.parquet"],
     "are not one complete set (train-00000-of-00003.parquet, train-00002-of-00003.parquet: "
     "shard 1 of 3 missing): give shards 0..2 once each, or one file"),
    (["train-00000-of-00002.parquet", "train-00001-of-00003.parquet"],
     "disagree on how many there are (train-00000-of-00002.parquet, "
     "train-00001-of-00003.parquet: -of-2, -of-3): keep one complete shard set"),
    (["train-0-of-2.parquet", "train-00000-of-00002.parquet", "train-00001-of-00002.parquet"],
     "shard 0 given twice"),
    (["train-00000-of-00002.parquet", "train-00001-of-00002.parquet",
      "train-00002-of-00002.parquet"], "shard 2 beyond 1"),
])
def test_a_split_is_one_file_or_one_complete_shard_set(tmp_path, names, message):
    data = _files(tmp_path / "d", [*names, "test.parquet"])
    with raises(message):
        load_raw(str(data))


def test_a_complete_shard_set_is_read_once_in_shard_order(tmp_path):
    names = [f"train-{i}-of-12.parquet" for i in range(12)]  # unpadded: 10 sorts before 2
    data = _files(tmp_path / "d", [*names, "test.parquet"], rows=2)
    raw = load_raw(str(data))
    expected = [t for i in range(12) for t in make_frame(2, i).text]
    assert raw["train"]["text"] == expected


def test_a_shard_duplicate_is_refused_before_a_run_writes_anything(settings, tmp_path):
    data = write_splits(tmp_path / "d", train=make_frame(240, 1), test=make_frame(60, 2))
    make_frame(240, 1).to_parquet(data / "train-00000-of-00001.parquet")  # the same rows again
    with raises("holds the train split both as train.parquet and as shards"):
        train({**settings, "data": str(data)})
    assert nothing_written(tmp_path)


# ---------------------------------------------------------------- 2. --num-labels is checked
@pytest.mark.parametrize("values, num_labels, message", [
    ([0, 1, 1], 3, "the train split has 2 labels (0, 1) but --num-labels is 3: omit "
     "--num-labels to take the number from the data, or pass --labels with every class"),
    ([3, 7, 12], 13, "the train split has 3 labels (3, 7, 12) but --num-labels is 13"),
    (["neg", "pos"], 3, "the train split has 2 labels ('neg', 'pos') but --num-labels is 3"),
])
def test_num_labels_is_checked_never_used_to_add_classes(values, num_labels, message):
    with raises(message):
        LabelMap.from_column(pa.array(values), num_labels=num_labels)


def test_num_labels_that_agrees_keeps_the_mapping():
    assert LabelMap.from_column(pa.array([3, 7, 12]), num_labels=3).names == ("3", "7", "12")
    assert LabelMap.from_column(pa.array([1, 0]), num_labels=2) == LabelMap.identity(2)


# ---------------------------------------------------------------- 3. unlabelled values
def _split(labels, name="train"):
    return check_split(Dataset.from_dict({"text": [f"t{i}" for i in range(len(labels))],
                                          "label": labels}), name, "text", "label")


@pytest.mark.parametrize("labels, message", [
    (["pos", None, "neg", None], "the train split has 2 missing labels in 'label': drop those "
     "rows"),
    (["pos", "", "neg", "  ", "\u200b"], "the train split has 3 blank labels in 'label' "
     "(empty, or nothing but spaces or invisible characters): drop those rows"),
    ([1, None, 0], "the train split has 1 missing labels"),
])
def test_missing_and_blank_labels_are_refused(labels, message):
    with raises(message):
        _split(labels)


def test_categorical_labels_are_checked_and_read_as_their_values(tmp_path):
    frame = make_frame(4, 1).assign(label=pd.Categorical(["1", "0", " ", "1"]))
    data = write_splits(tmp_path / "d", train=frame, test=frame)
    with raises("the train split has 1 blank labels"):
        check_split(load_raw(str(data))["train"], "train", "text", "label")
    ok = write_splits(tmp_path / "ok", train=frame.assign(label=pd.Categorical(list("1001"))),
                      test=frame)
    labels = check_split(load_raw(str(ok))["train"], "train", "text", "label")["label"]
    assert labels == [1, 0, 0, 1]  # "0"/"1" categories: the integers, as from any format


def test_minus_one_is_no_label_unless_listed():
    column = pa.array([0, 1, -1, 1, -1])
    with raises("the train split has 2 rows labelled -1, the datasets mark of a row without a "
                "label: drop those rows, or, if -1 is a class (a -1/0/1 scale), pass --labels "
                "with every class, e.g. --labels -1,0,1"):
        LabelMap.from_column(column)
    with raises("the train split has 2 rows labelled -1"):  # --labels without -1
        LabelMap.from_column(column, given=["0", "1"])
    scale = LabelMap.from_column(column, given=["-1", "0", "1"])
    assert scale.encode(column, "train").tolist() == [1, 2, 0, 2, 0]
    with raises("the test split has 1 row labelled -1, the datasets mark of a row without a "
                "label: drop those rows, or, if -1 is a class, train with --labels listing it"):
        LabelMap.identity(2).encode(pa.array([0, -1, 1]), "test")
    with raises("the validation split has 1 row labelled -1"):
        LabelMap.from_column(pa.array([3, 7])).encode(pa.array([3, -1]), "validation")
    model = LabelMap.for_model({0: "negative", 1: "positive"}, pa.array([0, -1]))
    with raises("the test split has 1 row labelled -1, the datasets mark of a row without a "
                "label: drop those rows"):
        model.encode(pa.array([0, -1]), "test", "the model")
    scale_model = LabelMap.for_model({0: "-1", 1: "0", 2: "1"}, pa.array([-1, 1]))
    assert scale_model.encode(pa.array([-1, 1]), "test", "the model").tolist() == [0, 2]


@pytest.mark.parametrize("values, given", [
    ([0, 0, 0], None), ([1, 1], None), (["pos", "pos"], None), ([0, 0], ["0", "1"]),
    (["pos"], ["neg", "pos"]),
])
def test_a_training_split_needs_two_classes_whatever_the_labels(values, given):
    with raises("the train split has only one label"):
        LabelMap.from_column(pa.array(values), given=given)


def test_a_single_class_test_split_is_fine():
    assert LabelMap.identity(2).encode(pa.array([1, 1]), "test").tolist() == [1, 1]
    names = LabelMap.from_column(pa.array(["neg", "pos"]))
    assert names.encode(pa.array(["pos"]), "test").tolist() == [1]


def test_hidden_test_labels_still_switch_to_validation_also_from_csv(tmp_path):
    folder = tmp_path / "csv"
    folder.mkdir()
    make_frame(20, 1).to_csv(folder / "train.csv", index=False)
    make_frame(10, 3).to_csv(folder / "validation.csv", index=False)
    make_frame(10, 2).assign(label=-1).to_csv(folder / "test.csv", index=False)
    raw = load_raw(str(folder))
    assert is_unlabelled(raw["test"], "label")  # "-1" as written: the integer -1
    assert pick_splits(raw, str(folder), "label").test_split == "validation"
    assert not is_unlabelled(Dataset.from_dict({"label": [-1, 0]}), "label")


def test_unlabelled_rows_stop_a_run_before_it_writes(settings, tmp_path):
    train_frame = make_frame(240, 1)
    train_frame.loc[[3, 8], "label"] = -1
    data = write_splits(tmp_path / "d", train=train_frame, test=make_frame(60, 2))
    with raises("the train split has 2 rows labelled -1"):
        train({**settings, "data": str(data)})
    one_class = write_splits(tmp_path / "one", train=make_frame(240, 1).assign(label=0),
                             test=make_frame(60, 2))
    with raises("the train split has only one label (0)"):
        train({**settings, "data": str(one_class), "labels": "0,1"})
    assert nothing_written(tmp_path)


def test_a_minus_one_to_one_scale_trains_when_listed(settings, tmp_path):
    frame = make_frame(240, 1)
    frame["label"] = [(-1, 0, 1)[i % 3] for i in range(len(frame))]
    data = write_splits(tmp_path / "d", train=frame, test=frame.iloc[:30])
    result = train({**settings, "data": str(data), "labels": "-1,0,1", "epochs": 1,
                    "test_samples": None})
    assert result["labels"] == ["-1", "0", "1"] and result["test_samples"] == 30


# ---------------------------------------------------------------- 4. macro averages
def test_macro_averages_count_only_classes_that_occur():
    names = [str(r) for r in (1, 2, 3, 4, 7, 8, 9, 10)]
    labels = np.array([0, 1, 6, 7, 0, 7])  # 4 of the 8 rating classes
    perfect = compute_metrics(np.eye(8)[labels] * 5, labels, 8, names)
    assert perfect["f1"] == perfect["f1_macro"] == perfect["f1_weighted"] == 1.0
    assert perfect["precision"] == perfect["recall"] == 1.0
    assert list(perfect["per_class"]) == names  # every class by name ...
    assert perfect["per_class"]["3"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0,
                                         "support": 0}  # ... with support 0 where none
    preds = np.array([0, 1, 6, 7, 0, 2])  # a wrong "3": it occurs in the predictions
    wrong = compute_metrics(np.eye(8)[preds] * 5, labels, 8, names)
    f1s = [v["f1"] for k, v in wrong["per_class"].items() if k in ("1", "2", "3", "9", "10")]
    assert wrong["f1_macro"] == pytest.approx(np.mean(f1s))


def test_binary_metrics_and_numeric_binary_names_have_no_mae():
    from sklearn.metrics import f1_score

    logits = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 3.0]])
    labels = np.array([0, 1, 1, 1])
    metrics = compute_metrics(logits, labels, 2, ["1", "10"])
    assert set(metrics) == {"loss", "accuracy", "f1", "precision", "recall", "samples"}
    assert metrics["f1"] == pytest.approx(f1_score(labels, logits.argmax(1)))
    assert "mae" in compute_metrics(np.eye(3), np.arange(3), 3, ["1", "5", "10"])


# ---------------------------------------------------------------- 5. CSV values as written
@pytest.mark.parametrize("values, integers", [
    (["-1", "0", "7", "10"], [-1, 0, 7, 10]),
    (["01", "1", "2"], None), (["+1", "0"], None), (["1.0", "0"], None), ([" 1", "0"], None),
    (["-0", "1"], None), (["99999999999999999999", "1"], None), (["pos", "1"], None),
])
def test_labels_are_integers_only_when_that_is_lossless(values, integers):
    column = as_written(pa.array(values))
    assert (column.to_pylist() if pa.types.is_integer(column.type) else None) == integers


def test_csv_labels_and_texts_are_read_as_written(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    pd.DataFrame({"text": ["5", "007", "great film"], "label": ["01", "1", "2"]}).to_csv(
        folder / "train.csv", index=False)
    (folder / "test.csv").write_text("text,label\nNA,1\n")
    raw = load_raw(str(folder))
    train_split = check_split(raw["train"], "train", "text", "label")
    assert train_split["text"] == ["5", "007", "great film"]
    labels = LabelMap.from_column(train_split.data.column("label"))
    assert labels.names == ("01", "1", "2")  # three classes, as written
    assert check_split(raw["test"], "test", "text", "label")["text"] == ["NA"]


def test_csv_zero_one_is_the_same_as_parquet_zero_one(tmp_path):
    frame = make_frame(12, 1)
    maps = {}
    for fmt in ("csv", "parquet"):
        folder = tmp_path / fmt
        folder.mkdir()
        for split in ("train", "test"):
            getattr(frame, f"to_{fmt}")(folder / f"{split}.{fmt}", **(
                {"index": False} if fmt == "csv" else {}))
        ds = check_split(load_raw(str(folder))["train"], "train", "text", "label")
        labels = LabelMap.from_column(ds.data.column("label"))
        maps[fmt] = (labels, labels.encode(ds.data.column("label"), "train").tolist())
    assert maps["csv"] == maps["parquet"]
    assert maps["csv"][0] == LabelMap.identity(2)  # negative/positive, by id


def csv_with_labels(folder: Path, classes: list[str]) -> Path:
    """train.csv (96 rows) and test.csv (30) whose labels cycle through `classes`."""
    folder.mkdir()
    for split, n, seed in (("train", 96, 1), ("test", 30, 2)):
        frame = make_frame(n, seed)
        frame["label"] = [classes[i % len(classes)] for i in range(n)]
        frame.to_csv(folder / f"{split}.csv", index=False)
    return folder


def test_a_csv_run_keeps_01_and_1_apart(settings, tmp_path):
    classes = ["01", "1", "2"]
    folder = csv_with_labels(tmp_path / "d", classes)
    result = train({**settings, "data": str(folder), "epochs": 1, "train_samples": 64,
                    "test_samples": None})
    assert result["labels"] == classes
    model = json.loads((tmp_path / "ckpt" / "tiny" / "final" / "config.json").read_text())
    assert [model["id2label"][str(i)] for i in range(3)] == classes


# ---------------------------------------------------------------- 6. one line, not a traceback
def test_integer_and_string_labels_across_splits_are_one_line():
    with raises("the test split has string labels ('negative', 'positive') but the train split "
                "has integer labels (ids 0..1): write the labels the same way in every split"):
        LabelMap.identity(2).encode(pa.array(["negative", "positive"]), "test")
    with raises("the test split has integer labels (0, 1) but the train split has names "
                "(negative, positive): write the labels the same way in every split"):
        LabelMap.from_column(pa.array(["negative", "positive"])).encode(pa.array([1, 0]), "test")


def test_mixed_label_types_across_splits_stop_a_run(settings, tmp_path):
    test = make_frame(60, 2)
    data = write_splits(tmp_path / "d", train=make_frame(240, 1),
                        test=test.assign(label=test.label.map({0: "negative", 1: "positive"})))
    with raises("the test split has string labels ('negative', 'positive') but the train split "
                "has integer labels"):
        train({**settings, "data": str(data)})
    assert nothing_written(tmp_path)


@pytest.mark.parametrize("columns, message", [
    ({"label_column": "text"}, "--text-column and --label-column both name 'text': pass "
     "--label-column with the column that holds the labels"),
    ({"text_column": "sentiment", "label_column": "text"}, "that the train split does not have"),
])
def test_label_column_naming_the_texts_is_one_line(settings, tmp_path, columns, message):
    named = {s: f.assign(sentiment=f.label.map({0: "negative", 1: "positive"}))
             .drop(columns="label") for s, f in (("train", make_frame(40, 1)),
                                                 ("test", make_frame(20, 2)))}
    data = write_splits(tmp_path / "d", **named)
    with pytest.raises(UserError) as caught:
        train({**settings, "data": str(data), **columns})
    assert message in str(caught.value) and len(str(caught.value)) < 600
    assert nothing_written(tmp_path)


def test_evaluate_with_the_text_column_as_labels_is_one_line(tmp_path, tiny_model_dir):
    data = write_splits(tmp_path / "d", train=make_frame(8, 1), test=make_frame(8, 2))
    cfg = EvalConfig(model=str(tiny_model_dir), data=str(data), label_column="text",
                              max_length=48, cache_dir=str(tmp_path / "cache"))
    with raises("--text-column and --label-column both name 'text'"):
        evaluate.run(cfg)


def test_mixed_numbers_and_strings_in_jsonl_name_the_file(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "train.jsonl").write_text('{"text": "good", "label": 1}\n'
                                        '{"text": "bad", "label": "neg"}\n')
    (folder / "test.jsonl").write_text('{"text": "good", "label": 1}\n')
    raw = load_raw(str(folder))
    with raises("column 'label' of the train split (train.jsonl) mixes numbers and strings: "
                "write every value of it the same way"):
        check_split(raw["train"], "train", "text", "label")


@pytest.mark.parametrize("fmt, split", [("parquet", "test"), ("jsonl", "validation"),
                                        ("csv", "test"), ("parquet", "train")])
def test_an_empty_split_file_is_empty_not_unreadable(tmp_path, fmt, split):
    folder = tmp_path / "d"
    folder.mkdir()
    frames = {"train": make_frame(6, 1), "test": make_frame(4, 2), split: make_frame(4, 3)
              .iloc[:0]}
    for name, frame in frames.items():
        if fmt == "parquet":
            frame.to_parquet(folder / f"{name}.parquet")
        elif fmt == "csv":
            frame.to_csv(folder / f"{name}.csv", index=False)
        else:
            frame.to_json(folder / f"{name}.jsonl", orient="records", lines=True)
    with raises(f"the {split} split is empty ({split}.{fmt} in {folder} has no rows): give it "
                "at least one row"):
        load_raw(str(folder))


# ---------------------------------------------------------------- 7. short messages
def test_messages_quote_a_few_short_values():
    reviews = pa.array([make_frame(1, i).text[0] * 40 for i in range(8)])
    with pytest.raises(UserError) as caught:
        LabelMap.from_column(pa.array(["neg", "pos"])).encode(reviews, "test")
    message = str(caught.value)
    assert len(message) < 350 and "…" in message and "and 3 more" in message
    with raises("has 1001 distinct labels, more than bertsent's limit of 1000 classes: pass "
                "--label-column with the column that holds the classes"):
        LabelMap.from_column(pa.array([f"r{i}" for i in range(1001)]))


def test_pick_splits_is_unchanged_for_hub_style_hidden_tests():
    ds = Dataset.from_dict
    raw = DatasetDict(train=ds({"text": ["a", "b"], "label": [0, 1]}),
                      validation=ds({"text": ["c"], "label": [1]}),
                      test=ds({"text": ["d", "e"], "label": [-1, -1]}))
    assert pick_splits(raw, "d", "label").test_split == "validation"


@pytest.mark.parametrize("names, groups", [
    (("01", "1", "2"), [["01", "1"]]),
    ((" pos", "POS", "neg", "pos"), [[" pos", "POS", "pos"]]),
    (("1", "1.0", "+1", "10"), [["1", "1.0", "+1"]]),
    (("negative", "positive"), []),
    (("1", "10", "nan", "NaN"), [["nan", "NaN"]]),
    (("1e3", "1000", "inf"), [["1e3", "1000"]]),
])
def test_look_alike_labels_are_grouped_by_what_they_read_as(names, groups):
    assert look_alike(names) == groups


def test_a_run_on_look_alike_labels_says_so_once_and_keeps_them_apart(settings, tmp_path,
                                                                       capsys):
    classes = ["pos", "POS", "neg"]
    folder = csv_with_labels(tmp_path / "d", classes)
    result = train({**settings, "data": str(folder), "epochs": 1, "train_samples": 32,
                    "test_samples": 8})
    assert sorted(result["labels"]) == sorted(classes)  # as written: three classes
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if "differ only in spaces" in line]
    assert notes == ["note: labels that differ only in spaces, case or number format are "
                     "separate classes, as written: 'POS', 'pos'; if each group is one class, "
                     "make its labels the same in the data"]
    train({**settings, "data": str(folder), "epochs": 1, "train_samples": 32,
           "test_samples": 8, "labels": classes, "run_name": "listed"})
    assert "differ only in spaces" not in capsys.readouterr().err  # listed on purpose


def test_test_reviews_that_stand_in_train_are_counted_word_for_word():
    train_ds = Dataset.from_dict({"text": ["great", "awful", "fine film"], "label": [1, 0, 1]})
    test_ds = Dataset.from_dict({"text": ["great", "Great", "great ", "fine film", "new"],
                                 "label": [1, 1, 1, 1, 0]})
    note = overlap_note(Splits(train_ds, test_ds, None, "test"))
    assert note == ("note: 2 of the 5 test reviews also stand word for word in the train split: "
                    "a score on them is not a score on unseen text")
    assert overlap_note(Splits(train_ds, test_ds.select([1, 2, 4]), None, "test")) is None
