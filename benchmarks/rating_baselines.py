"""Baselines for IMDb star-rating prediction (eight classes), on the test reviews a run scores.

A published anchor for fine-grained IMDb ratings is hard to find, so a trained model is set
against two baselines computed here, on the same shuffled test subset that
`python -m bertsent.train --eval-samples N --seed S` reports on:

- majority: always the most common rating of the training split;
- sentiment's mode: the most common training rating of the review's *true* sentiment (it knows
  the answer to the binary question, and only has to guess the strength).

    python benchmarks/rating_baselines.py --data ../shared/data/imdb-ratings --eval-samples 2000
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

from bertsent.data import test_subset
from bertsent.datafiles import load_raw


def scores(true: np.ndarray, pred: np.ndarray, classes: list[int]) -> dict:
    return {"accuracy": float(accuracy_score(true, pred)),
            "f1_macro": float(f1_score(true, pred, labels=classes, average="macro",
                                       zero_division=0)),
            "mae": float(np.abs(true - pred).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/imdb-ratings")
    parser.add_argument("--eval-samples", type=int, default=None)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    raw = load_raw(args.data)
    train, test = raw["train"], raw["test"]
    ratings = np.asarray(train["rating"])
    sentiments = np.asarray(train["sentiment"])
    classes = sorted(np.unique(ratings).tolist())
    majority = int(np.bincount(ratings).argmax())
    mode_of = {s: int(np.bincount(ratings[sentiments == s]).argmax())
               for s in np.unique(sentiments)}
    idx = test_subset(len(test), args.eval_samples, args.seed)
    true = np.asarray(test.select(idx)["rating"])
    test_sentiment = np.asarray(test.select(idx)["sentiment"])
    rows = {
        "majority": scores(true, np.full_like(true, majority), classes),
        "sentiment's mode": scores(true, np.array([mode_of[s] for s in test_sentiment]),
                                   classes),
    }
    print(json.dumps({"test_samples": len(idx), "majority_rating": majority,
                      "mode_by_sentiment": mode_of, "baselines": rows}, indent=2))
    print("| baseline | accuracy | macro F1 | MAE (stars) |")
    print("|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['accuracy']:.3f} | {r['f1_macro']:.3f} | {r['mae']:.2f} |")


if __name__ == "__main__":
    main()
