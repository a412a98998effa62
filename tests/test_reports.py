"""Reports and pictures: an evaluation report never replaces another folder's files, stays small
and fast whatever the class count, and a successful run draws without warnings on stderr."""

from __future__ import annotations

import json

import pytest

from bertsent import evaluate
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
