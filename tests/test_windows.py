"""Long reviews at inference (evaluate --windows) and scoring the run's own selection reviews
(evaluate --split selection)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bertsent import evaluate as evaluate_mod
from bertsent.config import EvalConfig
from bertsent.engine import EvalResult
from bertsent.train import train
from bertsent.windows import average, per_review, spans
from tests.conftest import make_frame, write_splits


def test_the_first_view_is_the_trained_one_and_the_others_cover_the_review():
    ids = list(range(100))
    views = spans(ids, 10, "head+tail", 4)
    assert views[0] == ids[:2] + ids[-8:]  # head+tail, as trained
    assert [v[0] for v in views[1:]] == [0, 45, 90] and all(len(v) == 10 for v in views)
    assert spans(ids, 10, "head+tail", 1) == [views[0]]
    assert spans(ids[:10], 10, "head+tail", 4) == [ids[:10]]  # fits: one view
    assert spans(ids, 10, "head", 2) == [ids[:10], ids[45:55]]


def test_a_reviews_probabilities_are_the_mean_of_its_windows():
    probs = np.array([[0.9, 0.1], [0.5, 0.5], [0.2, 0.8]], np.float32)
    owner = np.array([0, 0, 1])
    assert np.allclose(average(probs, owner, 2), [[0.7, 0.3], [0.2, 0.8]])
    result = EvalResult({}, np.log(probs), np.array([0, 0, 1]), np.array([2, 0, 1]), probs)
    scored = per_review(result, owner, np.array([0, 1]), 2, ["negative", "positive"])
    # indices put the windows back in order: window 2 (review 1) came first
    assert np.allclose(scored.probs, [[0.35, 0.65], [0.9, 0.1]], atol=1e-6)
    assert scored.metrics["accuracy"] == 0.0  # both reviews lean the wrong way


def evaluate(folder, **given) -> dict:
    return evaluate_mod.run(EvalConfig(model=str(folder), device="cpu", **given))


@pytest.mark.parametrize("own", [False, True], ids=["carved", "own validation split"])
def test_selection_scores_the_reviews_the_run_chose_its_model_on(tiny_config, tmp_path, own):
    data = tiny_config["data"]
    if own:
        data = str(write_splits(tmp_path / "d", train=make_frame(120, 1),
                                validation=make_frame(60, 3), test=make_frame(40, 2)))
    train({**tiny_config, "data": data, "epochs": 1})
    best = tmp_path / "ckpt" / "tiny" / "best"
    val = json.loads((best / "bertsent.json").read_text())["metrics"]["val"]
    scored = evaluate(best, split="selection", cache_dir=tiny_config["cache_dir"])
    assert scored["samples"] == val["samples"] == tiny_config["val_samples"]
    assert scored["accuracy"] == val["accuracy"]
    assert scored["loss"] == pytest.approx(val["loss"], abs=1e-5)


def test_windows_score_long_reviews_whole_and_one_window_is_todays_evaluation(tiny_config,
                                                                              tmp_path):
    train({**tiny_config, "epochs": 1, "max_length": 8})  # most tiny reviews are longer
    best = tmp_path / "ckpt" / "tiny" / "best"
    plain = evaluate(best, samples=40, cache_dir=tiny_config["cache_dir"])
    one = evaluate(best, samples=40, windows=1, cache_dir=tiny_config["cache_dir"])
    three = evaluate(best, samples=40, windows=3, cache_dir=tiny_config["cache_dir"])
    assert one["accuracy"] == plain["accuracy"] and one["loss"] == plain["loss"]
    assert three["samples"] == 40 and three["windows"] == 3
    assert three["loss"] != plain["loss"]  # more of each review was read
