"""Within-task pre-training on a tiny model: which texts it reads, exact resume, and a folder
that bertsent.train fine-tunes."""

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForMaskedLM

from bertsent import checkpoint as ckpt
from bertsent.datafiles import pretraining_texts
from bertsent.errors import UserError
from bertsent.pretrain import pretrain
from bertsent.runtime import seed_everything
from bertsent.train import train
from tests.conftest import make_frame, write_splits


@pytest.fixture
def imdb_like(tmp_path):
    """train, test and unsup splits; the test texts carry a word no other split has."""
    test = make_frame(40, 2)
    test["text"] = test["text"] + " secretword"
    unsup = make_frame(80, 3).assign(label=-1)
    return write_splits(tmp_path / "data", train=make_frame(120, 1), test=test, unsup=unsup)


def settings(tiny_model_dir, data, tmp_path, **extra):
    return {**dict(model=str(tiny_model_dir), data=str(data), max_length=32, batch_size=8,
                   val_samples=16, lr=5e-3, save_every=4, log_every=1, device="cpu",
                   precision="fp32", run_name="mlm", checkpoint_dir=str(tmp_path / "ckpt"),
                   runs_dir=str(tmp_path / "runs"), cache_dir=str(tmp_path / "cache")), **extra}


def test_it_reads_the_train_and_unsup_texts_never_the_test_texts(imdb_like):
    texts, sources, _ = pretraining_texts(str(imdb_like), "text")
    assert sources == ["train", "unsup"] and len(texts) == 200
    assert not [t for t in texts["text"] if "secretword" in t]
    assert texts.column_names == ["text"]  # the labels are not read


def test_an_interrupted_run_resumes_to_the_same_model(tiny_model_dir, imdb_like, tmp_path):
    base = settings(tiny_model_dir, imdb_like, tmp_path, epochs=2)
    full = pretrain({**base, "run_name": "full"})
    part = pretrain({**base, "run_name": "cut"}, stop_after_step=5)
    assert part["interrupted"] and part["step"] == 5
    rest = pretrain({**base, "run_name": "cut", "resume": "latest"})
    assert part["history"] + rest["history"] == full["history"]
    a, b = (load_file(str(tmp_path / "ckpt" / r / "final" / "model.safetensors"))
            for r in ("full", "cut"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert rest["held_out_loss"] == full["held_out_loss"]
    losses = [loss for _, loss in full["history"]]
    assert sum(losses[-5:]) < sum(losses[:5])  # it learns the tiny vocabulary


def test_the_folder_it_writes_is_fine_tuned_by_train(tiny_model_dir, imdb_like, tmp_path,
                                                     tiny_config):
    result = pretrain(settings(tiny_model_dir, imdb_like, tmp_path, max_steps=6))
    folder = tmp_path / "ckpt" / "mlm" / "final"
    meta = json.loads((folder / "bertsent-pretrain.json").read_text())
    assert meta["steps"] == 6 == result["steps"] and meta["sources"] == ["train", "unsup"]
    weights = load_file(str(folder / "model.safetensors"))
    base = load_file(str(tiny_model_dir / "model.safetensors"))
    assert torch.equal(weights["pooler.dense.weight"], base["bert.pooler.dense.weight"])  # kept
    assert not torch.equal(weights["embeddings.word_embeddings.weight"],
                           base["bert.embeddings.word_embeddings.weight"])  # trained
    tuned = train({**tiny_config, "model": str(folder), "epochs": 1, "run_name": "tuned"})
    assert tuned["steps"] == 12 and 0 <= tuned["accuracy"] <= 1


def test_head_steps_train_the_head_alone_then_everything_and_resume_exactly(
        tiny_model_dir, imdb_like, tmp_path):
    """Within --head-steps the encoder keeps the base's weights (its word embeddings too: the
    head's tied output) while the head learns; after them the encoder trains. A run stopped
    inside the head steps resumes to the uninterrupted run's model."""
    args = settings(tiny_model_dir, imdb_like, tmp_path, max_steps=8, head_steps=4)
    full = pretrain({**args, "run_name": "full"})
    part = pretrain({**args, "run_name": "cut"}, stop_after_step=3)
    inside = ckpt.load_checkpoint(tmp_path / "ckpt" / "cut" / "step-3")["model"]
    rest = pretrain({**args, "run_name": "cut", "resume": "latest"})
    assert part["history"] + rest["history"] == full["history"]

    base = load_file(str(tiny_model_dir / "model.safetensors"))
    encoder = [k for k in base if k.startswith("bert.") and not k.startswith("bert.pooler")]
    assert encoder and all(torch.equal(inside[k], base[k]) for k in encoder)
    first = pretrain({**args, "run_name": "one", "max_steps": 5, "head_steps": 0},
                     stop_after_step=1)
    moved = ckpt.load_checkpoint(tmp_path / "ckpt" / "one" / "step-1")["model"]
    assert first["interrupted"] and not all(torch.equal(moved[k], base[k]) for k in encoder)
    seed_everything(42)  # the new head as pre-training initialised it
    start = AutoModelForMaskedLM.from_pretrained(str(tiny_model_dir)).state_dict()
    head = "cls.predictions.transform.dense.weight"
    assert not torch.equal(inside[head], start[head])  # the head learned
    a, b = (load_file(str(tmp_path / "ckpt" / r / "final" / "model.safetensors"))
            for r in ("full", "cut"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["embeddings.word_embeddings.weight"],
                           base["bert.embeddings.word_embeddings.weight"])  # then it trained
    card = (tmp_path / "ckpt" / "full" / "final" / "README.md").read_text()
    assert "after 8 steps of masked-LM training (the first 4 training the new head alone)" in card


def test_bad_settings_are_one_line(tiny_model_dir, imdb_like, tmp_path):
    with pytest.raises(UserError, match="--mask-prob must be in"):
        pretrain(settings(tiny_model_dir, imdb_like, tmp_path, mask_prob=1.5))
    with pytest.raises(UserError, match="--head-steps 6 leaves none of the run's 6 steps"):
        pretrain(settings(tiny_model_dir, imdb_like, tmp_path, max_steps=6, head_steps=6))
    with pytest.raises(UserError, match="--head-steps 23 leaves none of the run's 23 steps"):
        pretrain(settings(tiny_model_dir, imdb_like, tmp_path, head_steps=23))  # one epoch
    with pytest.raises(UserError, match="leaves no texts"):
        pretrain(settings(tiny_model_dir, imdb_like, tmp_path, val_samples=500))
    with pytest.raises(UserError, match="is a file: pass the folder that holds the train"):
        pretrain(settings(tiny_model_dir, imdb_like / "train.parquet", tmp_path))
    with pytest.raises(UserError, match="is a file: pass the folder that holds config.json"):
        pretrain({**settings(tiny_model_dir, imdb_like, tmp_path),
                  "model": str(tiny_model_dir / "config.json")})


def test_without_held_out_texts_it_says_so_instead_of_nan(tiny_model_dir, imdb_like, tmp_path,
                                                          capsys):
    result = pretrain(settings(tiny_model_dir, imdb_like, tmp_path, val_samples=0, max_steps=2))
    assert result["held_out_loss"] is None
    err = capsys.readouterr().err
    assert "no held-out texts (--val-samples 0)" in err and "nan" not in err
    assert not result["model_dir"].startswith("/")  # results name no machine's folders
