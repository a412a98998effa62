"""Fixtures: a tiny BERT and a tiny, learnable sentiment dataset, built in-process."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pandas as pd
import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

POSITIVE = ["great", "wonderful", "superb", "loved", "brilliant", "moving", "fun", "best"]
NEGATIVE = ["awful", "boring", "terrible", "hated", "dull", "worst", "waste", "bad"]
NEUTRAL = ["the", "movie", "film", "plot", "actors", "was", "and", "a", "it", "story", "i",
           "scene", "ending", "director", "really", "quite"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + POSITIVE + NEGATIVE + NEUTRAL + \
    [".", ",", "!"]
SHARED = Path(os.environ.get("BERTSENT_SHARED", Path(__file__).resolve().parents[2] / "shared"))


def make_review(rng: random.Random, label: int) -> str:
    words = [rng.choice(NEUTRAL) for _ in range(rng.randint(2, 8))]
    cue = POSITIVE if label else NEGATIVE
    for _ in range(rng.randint(2, 4)):
        words.insert(rng.randrange(len(words) + 1), rng.choice(cue))
    return " ".join(words) + rng.choice([".", "!"])


def make_frame(n: int, seed: int) -> pd.DataFrame:
    rng = random.Random(seed)
    labels = [i % 2 for i in range(n)]
    return pd.DataFrame({"text": [make_review(rng, y) for y in labels], "label": labels})


def make_classes_frame(n: int, seed: int, classes: dict) -> pd.DataFrame:
    """n reviews cycling through the classes (label value -> its cue words, or None for a class
    of plain neutral words): learnable data with any labels, in the style of make_frame."""
    rng = random.Random(seed)
    labels = [list(classes)[i % len(classes)] for i in range(n)]
    texts = []
    for label in labels:
        words = [rng.choice(NEUTRAL) for _ in range(rng.randint(2, 8))]
        for _ in range(rng.randint(2, 4) if classes[label] else 0):
            words.insert(rng.randrange(len(words) + 1), rng.choice(classes[label]))
        texts.append(" ".join(words) + rng.choice([".", "!"]))
    return pd.DataFrame({"text": texts, "label": labels})


def write_splits(folder: Path, **frames: pd.DataFrame) -> Path:
    """A data folder with one parquet file per split (train=..., validation=..., test=...)."""
    folder.mkdir(parents=True)
    for split, frame in frames.items():
        frame.to_parquet(folder / f"{split}.parquet")
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide BERT with a 45-word vocabulary, saved like a hub model."""
    folder = tmp_path_factory.mktemp("tiny-bert")
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(VOCAB)}, do_lower_case=True)
    tokenizer.save_pretrained(folder)
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=128)
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory) -> Path:
    """train.parquet (240 rows) and test.parquet (60 rows), sorted by label like IMDb."""
    folder = tmp_path_factory.mktemp("tiny-data")
    for name, n, seed in (("train", 240, 1), ("test", 60, 2)):
        make_frame(n, seed).sort_values("label", kind="stable").to_parquet(
            folder / f"{name}.parquet")
    return folder


@pytest.fixture
def tiny_config(tiny_model_dir, tiny_data_dir, tmp_path) -> dict:
    return tiny_settings(tiny_model_dir, tiny_data_dir, tmp_path)


def tiny_settings(tiny_model_dir: Path, tiny_data_dir: Path, tmp_path: Path) -> dict:
    """Settings for a seconds-long CPU training run on the tiny model and data."""
    return dict(model=str(tiny_model_dir), data=str(tiny_data_dir), train_samples=96,
                val_samples=32, test_samples=40, epochs=2, batch_size=8, eval_batch_size=16,
                lr=1e-2, head_lr_mult=1.0, max_length=48, precision="fp32", device="cpu", seed=7,
                save_every=4, log_every=1, run_name="tiny", sanity_eval_batches=1,
                runs_dir=str(tmp_path / "runs"), checkpoint_dir=str(tmp_path / "ckpt"),
                cache_dir=str(tmp_path / "cache"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared (or $BERTSENT_SHARED): the real IMDb data and MiniLM models."""
    if not (SHARED / "models" / "minilm-l3").is_dir():
        pytest.fail(f"integration test needs the shared data at {SHARED}: set BERTSENT_SHARED "
                    "to the folder holding data/imdb and models/")
    return SHARED


@pytest.fixture
def jobs():
    """Every process started through this list (tests/test_faults.py's Job) is killed at the
    end of the test, pass or fail."""
    started: list = []
    yield started
    for job in started:
        job.stop()


def assert_resumes_exactly(base: dict, stop_after: int) -> tuple[dict, dict]:
    """Train `base` uninterrupted (run 'full') and stopped after `stop_after` steps then resumed
    (run 'cut'); assert the two have the same history and final weights, bit for bit. Returns
    the uninterrupted run's result and its final weights."""
    from safetensors.torch import load_file

    from bertsent.train import Hooks, train

    full = train({**base, "run_name": "full"})
    part = train({**base, "run_name": "cut"}, hooks=Hooks(stop_after_step=stop_after))
    rest = train({**base, "run_name": "cut", "resume": "latest"})
    assert part["history"] + rest["history"] == full["history"]
    root = Path(base["checkpoint_dir"])
    a, b = (load_file(str(root / run / "final" / "model.safetensors")) for run in ("full", "cut"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    return full, a
