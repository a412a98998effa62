"""A run knows what it read: resume and evaluate find the run's own data from any working
folder, refuse the same names with other content, accept a moved identical folder, and local
data is reused by content, never by modification time."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from bertsent import evaluate as evaluate_mod
from bertsent.config import EvalConfig
from bertsent.datafiles import load_raw
from bertsent.errors import UserError
from bertsent.train import Hooks, train
from tests.conftest import make_frame


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def csv_data(folder: Path, flip: bool = False) -> Path:
    """train.csv and test.csv; with flip, every label the other way round (same bytes count)."""
    folder.mkdir(parents=True)
    for name, n, seed in (("train", 120, 1), ("test", 40, 2)):
        frame = make_frame(n, seed)
        if flip:
            frame["label"] = 1 - frame["label"]
        frame.to_csv(folder / f"{name}.csv", index=False)
    return folder


@pytest.fixture
def two_places(tmp_path, tiny_config, monkeypatch):
    """a/ and b/ each hold data/small under the same name; b's labels are flipped. Settings
    with every path relative, as a user types them in a/."""
    a, b = tmp_path / "a", tmp_path / "b"
    csv_data(a / "data" / "small")
    csv_data(b / "data" / "small", flip=True)
    monkeypatch.chdir(a)
    settings = {**tiny_config, "data": "data/small", "train_samples": 64, "val_samples": 16,
                "test_samples": None, "epochs": 1, "runs_dir": "runs",
                "checkpoint_dir": "ckpt", "cache_dir": "cache"}
    return a, b, settings


def test_resume_from_another_folder_trains_on_the_runs_own_data(two_places, monkeypatch):
    a, b, settings = two_places
    full = train({**settings, "run_name": "full"})
    train({**settings, "run_name": "cut"}, hooks=Hooks(stop_after_step=3))
    monkeypatch.chdir(b)  # data/small here has every label flipped
    rest = train({"resume": "latest", "run_name": "cut", "checkpoint_dir": "../a/ckpt"})
    assert rest["accuracy"] == full["accuracy"]
    assert same_weights(a / "ckpt" / "full" / "final", a / "ckpt" / "cut" / "final")
    assert (a / "runs" / "cut").is_dir() and not (b / "runs").exists()  # the log stays whole
    recorded = json.loads((a / "ckpt" / "cut" / "metrics.json").read_text())["data_identity"]
    assert recorded["location"] == os.path.join("..", "..", "data", "small")  # no machine path
    assert set(recorded["files"]) == {"train.csv", "test.csv"}


def test_data_edited_in_place_is_refused_on_resume_and_read_fresh_by_a_new_run(two_places):
    a, _, settings = two_places
    train({**settings, "run_name": "cut"}, hooks=Hooks(stop_after_step=3))
    file = a / "data" / "small" / "train.csv"
    before = load_raw("data/small", "cache")["train"]["label"]
    stat = file.stat()
    lines = file.read_text().splitlines()
    lines[1] = lines[1][:-1] + ("1" if lines[1].endswith("0") else "0")  # same size
    file.write_text("\n".join(lines) + "\n")
    os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # as cp -p, rsync -a, tar x do
    assert file.stat().st_size == stat.st_size
    with pytest.raises(UserError, match=r"train.csv in .* has changed since the checkpoint was "
                                        r"made \(same size, other content\)"):
        train({"resume": "latest", "run_name": "cut", "checkpoint_dir": "ckpt"})
    after = load_raw("data/small", "cache")["train"]["label"]  # the same cache folder
    assert after != before and sum(x != y for x, y in zip(after, before, strict=True)) == 1


def test_a_moved_identical_folder_is_the_same_data(two_places, tmp_path):
    a, _, settings = two_places
    full = train({**settings, "run_name": "full"})
    train({**settings, "run_name": "cut"}, hooks=Hooks(stop_after_step=3))
    shutil.move(a / "data" / "small", tmp_path / "moved")
    with pytest.raises(UserError, match=r"the data folder 'data/small' recorded in checkpoint "
                                        r".* is not at .*small any more: pass --data"):
        train({"resume": "latest", "run_name": "cut", "checkpoint_dir": "ckpt"})
    rest = train({"resume": "latest", "run_name": "cut", "checkpoint_dir": "ckpt",
                  "data": str(tmp_path / "moved")})
    assert rest["accuracy"] == full["accuracy"]
    assert same_weights(a / "ckpt" / "full" / "final", a / "ckpt" / "cut" / "final")


def test_other_data_under_another_name_is_refused_on_resume(two_places):
    _, b, settings = two_places
    train({**settings, "run_name": "cut"}, hooks=Hooks(stop_after_step=3))
    with pytest.raises(UserError, match=r"(test|train).csv in .*b/data/small has changed since "
                                        r"the checkpoint was made"):
        train({"resume": "latest", "run_name": "cut", "checkpoint_dir": "ckpt",
               "data": str(b / "data" / "small")})


def test_resume_with_another_runs_dir_is_refused(two_places):
    _, _, settings = two_places
    train({**settings, "run_name": "cut"}, hooks=Hooks(stop_after_step=3))
    with pytest.raises(UserError, match=r"cannot resume: .*runs_dir: 'runs' -> 'elsewhere'"):
        train({"resume": "latest", "run_name": "cut", "checkpoint_dir": "ckpt",
               "runs_dir": "elsewhere"})
    assert not Path("elsewhere").exists()


def evaluate(model: Path, **given) -> dict:
    return evaluate_mod.run(EvalConfig(model=str(model), device="cpu", cache_dir="cache",
                                       **given))


def test_evaluate_takes_the_models_own_data_from_any_folder(two_places, monkeypatch, tmp_path):
    a, b, settings = two_places
    result = train({**settings, "run_name": "run"})
    best = a / "ckpt" / "run" / "best"
    monkeypatch.chdir(b)  # data/small here has every label flipped
    scored = evaluate(Path("../a/ckpt/run/best"))
    assert scored["accuracy"] == result["accuracy"]
    assert scored["data"] == os.path.join("..", "a", "data", "small")
    flipped = evaluate(best, data="data/small")  # --data given: that data, no check
    assert flipped["accuracy"] == pytest.approx(1 - result["accuracy"])
    shutil.move(a / "data" / "small", tmp_path / "moved")
    with pytest.raises(UserError, match=r"recorded in model .* is not at .*a/data/small any "
                                        r"more: pass --data"):
        evaluate(best)


def test_evaluate_refuses_the_models_data_edited_in_place(two_places):
    a, _, settings = two_places
    train({**settings, "run_name": "run"})
    test_file = a / "data" / "small" / "test.csv"
    test_file.write_text(test_file.read_text().replace(",0\n", ",1\n", 1))
    with pytest.raises(UserError, match=r"test.csv in .* has changed since model .* was made"):
        evaluate(a / "ckpt" / "run" / "best")


def test_a_run_writes_nothing_outside_its_cache_checkpoint_and_runs_folders(
        tiny_model_dir, tmp_path):
    """A real process with an empty home: the datasets reader's copies and matplotlib's font
    cache land under --cache-dir, never under ~/.cache."""
    import subprocess
    import sys

    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    csv_data(work / "data")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "XDG_", "MPL"))}
    env.update(HOME=str(home), OMP_NUM_THREADS="1")
    out = tmp_path / "out"
    args = ["--model", str(tiny_model_dir), "--data", "data", "--max-length", "32",
            "--device", "cpu", "--precision", "fp32", "--run-name", "r",
            "--checkpoint-dir", str(out / "ckpt"), "--runs-dir", str(out / "runs"),
            "--cache-dir", str(out / "cache")]
    done = subprocess.run([sys.executable, "-m", "bertsent.train", *args], cwd=work, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert list(home.iterdir()) == []
    assert sorted(p.name for p in (out / "cache").iterdir())[:2] == ["datasets", "matplotlib"]
    assert sorted(p.name for p in work.iterdir()) == ["data"]


def test_an_older_models_missing_data_says_where_it_was_looked_for(two_places, monkeypatch,
                                                                    tmp_path):
    """A model exported before identities were recorded knows its data by the string only:
    from another folder, that string is neither a folder nor a hub dataset, and the line says
    it came from the model and where it was looked for (not 'hub connection failed')."""
    import bertsent.datafiles

    a, _, settings = two_places
    train({**settings, "run_name": "run"})
    meta_file = a / "ckpt" / "run" / "best" / "bertsent.json"
    meta = json.loads(meta_file.read_text())
    del meta["data_identity"]
    meta_file.write_text(json.dumps(meta))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setattr(bertsent.datafiles, "_load_hub", lambda data: bertsent.datafiles.fail(
        f"cannot load dataset '{data}' from the Hugging Face hub (ConnectionError): pass a "
        "local --data folder"))
    with pytest.raises(UserError, match=r"the data 'data/small' recorded in model .* is neither "
                                        r"a folder here \(looked for at .*elsewhere/data/small\)"):
        evaluate(a / "ckpt" / "run" / "best")


def test_hub_data_is_known_by_its_id_and_revision():
    from types import SimpleNamespace

    from datasets import DatasetDict

    from bertsent import dataid
    from bertsent.datafiles import _hub_revision

    cached = SimpleNamespace(cache_files=[{"filename": "/c/org___imdb/plain_text/0.0.0/"
                                                       "e6281661ce1c/imdb-train.arrow"}])
    assert _hub_revision(DatasetDict(train=cached)) == "e6281661ce1c"
    assert _hub_revision(DatasetDict(train=SimpleNamespace(cache_files=[]))) is None
    saved = dataid.hub_identity("org/imdb", "e6281661ce1c")
    dataid.check_same(saved, "the checkpoint", dataid.hub_identity("org/imdb", "e6281661ce1c"))
    dataid.check_same(saved, "the checkpoint", dataid.hub_identity("org/imdb", None))  # unknown
    with pytest.raises(UserError, match="made with revision e6281661ce1c of org/imdb, and "
                                        "0123 is what loaded"):
        dataid.check_same(saved, "the checkpoint", dataid.hub_identity("org/imdb", "0123"))
    with pytest.raises(UserError, match="made with hub dataset org/imdb, not the data folder"):
        dataid.check_same(saved, "the checkpoint",
                          dataid.folder_identity(Path("/tmp"), {}))


def test_a_checkpoint_from_before_data_identities_still_resumes(tiny_config, tmp_path):
    """Checkpoints written before the origin, the data identity and the entry point were
    recorded resume as they did: the data by its recorded string, nothing compared by content;
    the resumed run records them from then on."""
    import bertsent.checkpoint

    base = {**tiny_config, "epochs": 1, "save_every": 2}
    full = train({**base, "run_name": "full"})
    train({**base, "run_name": "old"}, hooks=Hooks(stop_after_step=4))
    folder = tmp_path / "ckpt" / "old" / "step-4"
    state = bertsent.checkpoint.load_checkpoint(folder)
    for key in ("origin", "data_identity", "entry"):
        del state[key]
    bertsent.checkpoint.save_checkpoint(folder, state)
    rest = train({**base, "run_name": "old", "resume": "latest"})
    assert rest["accuracy"] == full["accuracy"]
    assert same_weights(tmp_path / "ckpt" / "full" / "final", tmp_path / "ckpt" / "old" / "final")
    assert rest["data_identity"]["files"].keys() == {"train.parquet", "test.parquet"}
