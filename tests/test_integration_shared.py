"""Integration tests on ../shared (real IMDb reviews, pre-trained MiniLM-L3): the CLI end to
end as a user runs it. They fail, with a message, when ../shared is not there."""

import json
import subprocess
import sys

import pytest
import torch

REVIEWS = [
    "This movie was absolutely fantastic! The acting was superb and the plot kept me engaged.",
    "I was really disappointed with this film. The story was boring and predictable.",
    "I loved every minute of it, a true masterpiece!",
    "Worst movie I've seen all year. A complete waste of time.",
    "The movie had some good moments, but overall it was just okay.",
    "Not bad, but not great either. The special effects were impressive though.",
]


def cli(module, *args, stdin=None):
    proc = subprocess.run([sys.executable, "-m", f"bertsent.{module}", *map(str, args)],
                          capture_output=True, text=True, timeout=600, input=stdin)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.fixture(scope="module")
def trained(shared_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("shared-run")
    out = cli("train", "--model", shared_dir / "models" / "minilm-l3", "--data",
              shared_dir / "data" / "imdb", "--train-samples", 48, "--val-samples", 16,
              "--test-samples", 32, "--max-length", 64, "--batch-size", 8,
              "--run-name", "shared", "--checkpoint-dir", tmp / "ckpt", "--runs-dir",
              tmp / "runs", "--cache-dir", tmp / "cache")
    return tmp, json.loads(out.strip().splitlines()[-1]), shared_dir


def test_shared_train_cli_prints_the_output_contract(trained):
    tmp, result, _ = trained
    for key in ("accuracy", "f1", "precision", "recall", "loss", "val_accuracy",
                "train_samples_per_second", "run_name", "best_model_dir"):
        assert key in result
    assert result["test_samples"] == 32 and result["steps"] == 6
    saved = json.loads((tmp / "ckpt" / "shared" / "metrics.json").read_text())
    assert saved["accuracy"] == result["accuracy"]


def test_shared_evaluate_reproduces_the_training_report(trained):
    tmp, result, shared = trained
    out = json.loads(cli("evaluate", "--model", result["best_model_dir"], "--data",
                         shared / "data" / "imdb", "--samples", 32, "--precision",
                         result["precision_mode"], "--cache-dir", tmp / "cache"))
    assert out["samples"] == 32 and sum(map(sum, out["confusion_matrix"])) == 32
    assert out["accuracy"] == pytest.approx(result["accuracy"])


def test_shared_predict_matches_transformers_pipeline(trained):
    from transformers import pipeline

    _, result, _ = trained
    lines = cli("predict", "--model", result["best_model_dir"], "--json", *REVIEWS)
    ours = [json.loads(x) for x in lines.strip().splitlines()]
    theirs = pipeline("text-classification", model=result["best_model_dir"], top_k=None,
                      device="cpu")(REVIEWS)
    assert [o["text"] for o in ours] == REVIEWS
    for o, t in zip(ours, theirs, strict=True):
        expected = {d["label"]: d["score"] for d in t}
        assert set(expected) == {"negative", "positive"}
        for label, p in o["probabilities"].items():
            assert p == pytest.approx(expected[label], abs=1e-6, rel=0)
        assert o["label"] == max(expected, key=expected.get)
    plain = cli("predict", "--model", result["best_model_dir"], stdin="\n".join(REVIEWS[:2]))
    assert len(plain.strip().splitlines()) == 2
    assert torch.__version__
