"""The data and label rules of reliability round 3, one class of fault per section: what a split
is made of, unlabelled values, --num-labels, CSV values as written, macro averages over the
classes present, and one-line messages where there were tracebacks. Tiny in-process data only."""

import re
from pathlib import Path

import numpy as np
import pytest

from bertsent.data import load_raw
from bertsent.errors import UserError
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
