"""Reports and pictures: an evaluation report never replaces another folder's files, stays small
and fast whatever the class count, and a successful run draws without warnings on stderr."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from torch.utils.tensorboard import SummaryWriter

from bertsent import evaluate
from bertsent.curves import main as curves_main
from bertsent.curves import quiet_figures
from tests.test_bad_input import tree_digest


# ---------------------------------------------------------------- evaluate --report-dir
@pytest.mark.parametrize("held", ["metrics.json", "tensorboard/events.out.tfevents.1.h.1"])
def test_a_report_dir_that_holds_files_is_refused_before_the_evaluation(tiny_model_dir,
                                                                        tiny_data_dir, tmp_path,
                                                                        capsys, monkeypatch,
                                                                        held):
    """e.g. a run's own checkpoints/<run>/report: its metrics.json is never replaced."""
    folder = tmp_path / "ckpt" / "run" / "report"
    (folder / held).parent.mkdir(parents=True)
    (folder / held).write_text('{"accuracy": 0.9}')
    before = tree_digest(tmp_path / "ckpt")

    def never(*args, **kwargs):
        raise AssertionError("the evaluation ran before the report folder was checked")

    monkeypatch.setattr(evaluate, "evaluate", never)
    code = evaluate.main(["--model", str(tiny_model_dir), "--data", str(tiny_data_dir),
                          "--report-dir", str(folder), "--cache-dir", str(tmp_path / "c")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "already holds files" in err[0] and \
        "pass a new or empty folder" in err[0], err
    assert tree_digest(tmp_path / "ckpt") == before


def test_a_new_or_empty_report_dir_is_written(tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    for folder in (tmp_path / "new" / "report", tmp_path / "empty"):
        if folder.name == "empty":
            folder.mkdir()
        code = evaluate.main(["--model", str(tiny_model_dir), "--data", str(tiny_data_dir),
                              "--samples", "8", "--max-length", "48", "--device", "cpu",
                              "--report-dir", str(folder), "--cache-dir", str(tmp_path / "c")])
        out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert code == 0 and out["report_dir"] == str(folder)
        assert json.loads((folder / "metrics.json").read_text())["samples"] == 8


# ---------------------------------------------------------------- no noise on stderr
def test_quiet_figures_keeps_errors_and_other_warnings():
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with quiet_figures():
            warnings.warn("Glyph 24456 (\\N{CJK}) missing from font(s) DejaVu Sans.",
                          UserWarning, stacklevel=1)
            warnings.warn("the data has a problem", UserWarning, stacklevel=1)
    assert [str(w.message) for w in seen] == ["the data has a problem"]
    with pytest.raises(ValueError), quiet_figures():
        raise ValueError("a real error")


# ---------------------------------------------------------------- bertsent.curves --out
@pytest.fixture
def log_dir(tmp_path) -> Path:
    """A TensorBoard folder like a training run's: loss every step, accuracy at the end."""
    folder = tmp_path / "runs" / "很差-run"
    writer = SummaryWriter(str(folder))
    for step in range(1, 31):
        writer.add_scalar("train/loss", 1.0 / step, step)
    writer.add_scalar("val/accuracy", 0.8, 30)
    writer.close()
    return folder


def test_curves_out_is_the_file_written(log_dir, tmp_path, capsys):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert curves_main([str(log_dir), "--out", str(tmp_path / "curves")]) == 0
    printed = capsys.readouterr()
    assert printed.out.strip() == str(tmp_path / "curves.png")  # the suffix is added, and said
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert printed.err == "" and [str(w.message) for w in seen] == []  # the CJK title is quiet
    assert curves_main([str(log_dir), "--out", str(tmp_path / "c.svg")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "c.svg")


@pytest.mark.parametrize("out, message", [("{tmp}", "is a folder: pass a .png file path"),
                                          ("{tmp}/new/", "is a folder"),
                                          ("{tmp}/curves.v2", "cannot write .v2 files")])
def test_curves_out_that_is_a_folder_or_no_picture_is_refused(log_dir, tmp_path, capsys, out,
                                                              message):
    before = sorted(p.name for p in tmp_path.iterdir())
    assert curves_main([str(log_dir), "--out", out.format(tmp=tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == before
