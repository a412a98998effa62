"""A run folder belongs to one run and one process: run names are one folder, a resumed run
writes where its checkpoint is, a finished run is not rewritten, and a second process on the
same run is refused at once (real processes for that one)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys

import pytest

from bertsent.errors import UserError
from bertsent.runfolder import LOCK_FILE, RunLock, check_run_name
from bertsent.train import Hooks, train
from tests.test_bad_input import tree_digest
from tests.test_faults import base_args, start, wait_until


@pytest.mark.parametrize("name", ["base/best", "../x", "/tmp/abs", ".", "..", "a\\b", " ",
                                  "tab\tname", "x" * 201])
def test_a_run_name_is_one_folder_name(name):
    with pytest.raises(UserError, match="--run-name"):
        check_run_name(name)


def test_a_run_name_with_a_path_touches_nothing(tiny_config, tmp_path):
    train({**tiny_config, "epochs": 1})
    before = tree_digest(tmp_path / "ckpt")
    with pytest.raises(UserError, match="one folder name"):
        train({**tiny_config, "run_name": "tiny/best"})
    assert tree_digest(tmp_path / "ckpt") == before


def test_a_copied_run_resumes_in_the_copy_and_leaves_the_original_alone(tiny_config, tmp_path):
    root = tmp_path / "ckpt"
    train(tiny_config, hooks=Hooks(stop_after_step=6))
    shutil.copytree(root / "tiny", root / "copy")
    original = tree_digest(root / "tiny")
    result = train({**tiny_config, "run_name": None, "resume": str(root / "copy" / "step-6")})
    assert result["run_name"] == "copy" and (root / "copy" / "metrics.json").is_file()
    assert tree_digest(root / "tiny") == original  # nothing written into the original
    shutil.rmtree(root / "copy")
    shutil.copytree(root / "tiny", root / "other")
    result = train({**tiny_config, "run_name": "other", "resume": "latest"})
    assert result["run_name"] == "other" and tree_digest(root / "tiny") == original


def test_a_run_name_that_disagrees_with_the_checkpoint_is_refused(tiny_config, tmp_path):
    train(tiny_config, hooks=Hooks(stop_after_step=4))
    before = tree_digest(tmp_path / "ckpt")
    with pytest.raises(UserError, match="names another run"):
        train({**tiny_config, "run_name": "other",
               "resume": str(tmp_path / "ckpt" / "tiny" / "step-4")})
    assert tree_digest(tmp_path / "ckpt") == before


def test_resuming_a_finished_run_rewrites_nothing(tiny_config, tmp_path, capsys):
    first = train({**tiny_config, "epochs": 1})
    before = tree_digest(tmp_path / "ckpt")
    again = train({**tiny_config, "epochs": 1, "resume": "latest"})
    assert again["already_finished"] and again["accuracy"] == first["accuracy"]
    assert "is finished" in capsys.readouterr().err
    assert tree_digest(tmp_path / "ckpt") == before


def test_lock_is_released_and_a_stale_lock_is_taken_over(tiny_config, tmp_path):
    folder = tmp_path / "ckpt" / "tiny"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    folder.mkdir(parents=True)
    (folder / LOCK_FILE).write_text(json.dumps({"pid": int(dead.stdout), "host":
                                                socket.gethostname()}))
    train({**tiny_config, "epochs": 1})  # the lock's process is gone: taken over
    assert not (folder / LOCK_FILE).exists()  # and released at the end


def test_a_live_owner_is_named_and_a_failed_start_leaves_no_folder(tiny_config, tmp_path):
    held = RunLock(tmp_path / "ckpt" / "tiny").acquire()  # this process holds it
    with pytest.raises(UserError, match=f"in use by process {os.getpid()}"):
        train(tiny_config)
    held.release()
    assert not (tmp_path / "ckpt" / "tiny").exists()  # made for the lock, empty again
    with pytest.raises(UserError):
        train({**tiny_config, "model": str(tmp_path / "missing")})
    assert not (tmp_path / "ckpt" / "tiny").exists()


def test_a_second_process_on_the_same_run_is_refused_at_once(tiny_model_dir, tiny_data_dir,
                                                             tmp_path, jobs):
    args = base_args(tiny_model_dir, tiny_data_dir, tmp_path, "same")
    first = start(jobs, args, tmp_path)
    lock = tmp_path / "ckpt" / "same" / LOCK_FILE
    wait_until(first, "the lock is taken", lock.exists, freeze=True)  # left frozen
    second = start(jobs, args, tmp_path)
    assert second.wait() == 2
    os.kill(first.proc.pid, signal.SIGCONT)
    lines = second.err.strip().splitlines()
    assert lines == [lines[0]] and f"in use by process {first.proc.pid}" in lines[0], lines
    assert first.wait() == 0 and not lock.exists()
    assert json.loads((tmp_path / "ckpt" / "same" / "metrics.json").read_text())["steps"] == 24
