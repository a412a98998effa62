"""Reports and pictures: an evaluation report never replaces another folder's files, stays small
and fast whatever the class count, and a successful run draws without warnings on stderr."""

from __future__ import annotations

import json
import struct
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from bertsent import evaluate
from bertsent.curves import main as curves_main
from bertsent.curves import quiet_figures
from bertsent.engine import EvalResult
from bertsent.metrics import softmax
from bertsent.report import CONFUSION_MAX_CLASSES, MAX_INCHES, write_report
from bertsent.tracking import PR_CURVE_MAX_CLASSES
from bertsent.train import train
from tests.conftest import make_classes_frame, tiny_settings, write_splits
from tests.test_bad_input import tree_digest


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    return struct.unpack(">II", path.read_bytes()[16:24])


def random_result(classes: int, n: int = 2000, seed: int = 0) -> EvalResult:
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, classes)).astype(np.float32)
    return EvalResult(metrics={}, logits=logits, labels=rng.integers(0, classes, n),
                      indices=np.arange(n), probs=softmax(logits))


def report(folder: Path, classes: int, names: list[str] | None = None) -> dict:
    result = random_result(classes)
    names = names or [f"class {i}" for i in range(classes)]
    write_report(str(folder), result, ["a review"] * len(result.labels),
                 {"labels": names, "accuracy": 0.5})
    return json.loads((folder / "metrics.json").read_text())


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


# ---------------------------------------------------------------- reports of many classes
@pytest.mark.parametrize("classes", [150, CONFUSION_MAX_CLASSES + 1])
def test_a_report_of_many_classes_is_fast_and_small_and_says_what_it_left_out(tmp_path,
                                                                              classes):
    start = time.perf_counter()
    metrics = report(tmp_path / "r", classes)
    assert time.perf_counter() - start < 30  # 150 classes once needed over 4 GB
    files = {p.relative_to(tmp_path / "r").as_posix(): p.stat().st_size
             for p in (tmp_path / "r").rglob("*") if p.is_file()}
    assert sum(files.values()) < 2_000_000, files
    assert not any(name.endswith(".png") for name in files)  # nothing readable to draw
    notes = metrics["report_notes"]
    assert any(f"confusion matrix not drawn: {classes} classes" in n for n in notes), notes
    assert any("precision-recall curves not drawn" in n for n in notes), notes
    counts = np.array(metrics["confusion_matrix"])
    assert counts.shape == (classes, classes) and counts.sum() == 2000
    tb = EventAccumulator(str(tmp_path / "r" / "tensorboard"))
    tb.Reload()
    assert not [t for t in tb.Tags()["tensors"] if "pr_curve" in t]


@pytest.mark.parametrize("classes, numbers, pr", [(5, True, True), (PR_CURVE_MAX_CLASSES + 1,
                                                                    True, False),
                                                  (45, False, False),
                                                  (CONFUSION_MAX_CLASSES, False, False)])
def test_the_confusion_picture_stays_bounded(tmp_path, classes, numbers, pr):
    metrics = report(tmp_path / "r", classes)
    width, height = png_size(tmp_path / "r" / "confusion_matrix.png")
    assert width == height <= MAX_INCHES * 120
    assert (tmp_path / "r" / "precision_recall.png").exists() == pr
    assert any("without counts" in n for n in metrics["report_notes"]) == (not numbers)


def test_tensorboard_draws_a_curve_per_class_only_while_readable(tiny_model_dir, tmp_path):
    """validate() logs the same per-class curves as the report: none above 20 classes, while
    the per-class F1 scalars stay."""
    for classes in (3, PR_CURVE_MAX_CLASSES + 1):
        cues = {f"c{i}": None for i in range(classes)}
        data = write_splits(tmp_path / f"data{classes}",
                            train=make_classes_frame(4 * classes, 1, cues),
                            test=make_classes_frame(2 * classes, 2, cues))
        cfg = {**tiny_settings(tiny_model_dir, data, tmp_path), "run_name": f"c{classes}",
               "train_samples": None, "val_samples": classes, "test_samples": None,
               "epochs": 1, "max_steps": 2, "sanity_eval_batches": 0}
        train(cfg)
        tb = EventAccumulator(str(tmp_path / "runs" / f"c{classes}"))
        tb.Reload()
        curves = [t for t in tb.Tags()["tensors"] if "pr_curve" in t]
        assert len(curves) == (0 if classes > PR_CURVE_MAX_CLASSES else 2 * classes), curves
        assert any(t.startswith("val/f1_per_class") for t in tb.Tags()["scalars"])
        report_notes = json.loads((tmp_path / "ckpt" / f"c{classes}" / "report" /
                                   "metrics.json").read_text())["report_notes"]
        assert bool(report_notes) == (classes > PR_CURVE_MAX_CLASSES)


# ---------------------------------------------------------------- no noise on stderr
NAMES = ["négatif 很差", "neutral " + "x" * 90, "😀 positive", "нейтрально", "五"]


def test_a_report_draws_without_font_or_layout_warnings(tmp_path):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        report(tmp_path / "r", len(NAMES), NAMES)
    assert [str(w.message) for w in seen] == []
    assert (tmp_path / "r" / "confusion_matrix.png").stat().st_size > 1000


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


def test_precision_recall_pictures_name_their_class_not_positive_label_one():
    import matplotlib.pyplot as plt

    from bertsent.report import pr_figure, pr_figure_per_class

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 200)
    probs = rng.dirichlet(np.ones(3), 200)
    for fig in (pr_figure_per_class(labels, probs, ["a", "b", "c"]),
                pr_figure(labels == 2, probs[:, 2], "good")):
        ax = fig.axes[0]
        assert "Positive label" not in ax.get_xlabel() + ax.get_ylabel()
        plt.close(fig)


def test_curves_of_a_pretraining_run_draw_its_held_out_loss(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    with SummaryWriter(str(tmp_path / "mlm")) as writer:
        for step in range(1, 31):
            writer.add_scalar("train/loss", 10.0 / step, step)
        for step in (10, 20, 30):
            writer.add_scalar("val/loss", 5.0 / step, step)
    drawn: list[str] = []
    save = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: (
        drawn.extend(line.get_label() for ax in fig.axes for line in ax.get_lines()),
        save(fig, *a, **k))[1])
    assert curves_main([str(tmp_path / "mlm"), "--out", str(tmp_path / "mlm.png")]) == 0
    assert "held-out loss (validation)" in drawn and len(drawn) == 3
