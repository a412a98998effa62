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
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from bertsent.config import check_run_name
from bertsent.errors import UserError
from bertsent.runfolder import (
    LOCK_FILE,
    LOG_OWNER_FILE,
    RUN_ID_FILE,
    RunLock,
    claim_log_dir,
    event_files,
    publish,
    read_log_owner,
    read_run_id,
    valid_owner,
)
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


# ---------------------------------------------------------------- lock files of any shape
@pytest.mark.parametrize("content", [b"", b"garbage", b"123", b"[1, 2]", b'"pid"', b"null",
                                     b'{"pid": "abc", "host": "h"}', b'{"pid": 1.5, "host": "h"}',
                                     b'{"pid": true, "host": "h"}', b'{"pid": -4, "host": "h"}',
                                     b'{"pid": 12}', b'{"pid": 12, "host": 3}',
                                     b'\xff\xfe not text'])
def test_a_lock_that_is_not_a_lock_record_is_stale_and_taken_over(tmp_path, capsys, content):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / LOCK_FILE).write_bytes(content)
    lock = RunLock(folder).acquire()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "taking over the stale lock" in err[0] and \
        "not a lock record" in err[0], err
    record = json.loads((folder / LOCK_FILE).read_text())
    assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
    lock.release()
    assert sorted(p.name for p in folder.iterdir()) == []  # no lock, no temporary file left


def test_a_live_lock_is_left_as_it_was_and_the_lock_is_never_half_written(tmp_path,
                                                                        monkeypatch):
    folder = tmp_path / "run"
    linked = []
    real_link = os.link

    def link(src, dst, *args, **kwargs):  # what the lock path will show, at the moment it does
        linked.append(json.loads(Path(src).read_text()))
        return real_link(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "link", link)
    held = RunLock(folder).acquire()
    assert linked and all(valid_owner(r) for r in linked)  # complete before it is visible
    before = (folder / LOCK_FILE).read_bytes()
    with pytest.raises(UserError, match=f"in use by process {os.getpid()}"):
        RunLock(folder).acquire()
    assert (folder / LOCK_FILE).read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == [LOCK_FILE]
    held.release()
    assert not folder.exists()


def test_publish_never_replaces_an_existing_file_when_exclusive(tmp_path):
    assert publish(tmp_path / "f", "first", exclusive=True)
    assert not publish(tmp_path / "f", "second", exclusive=True)
    assert (tmp_path / "f").read_text() == "first"
    assert publish(tmp_path / "f", "third", exclusive=False)
    assert [p.name for p in tmp_path.iterdir()] == ["f"] and (tmp_path / "f").read_text() == \
        "third"


# ---------------------------------------------------------------- one run, one TensorBoard log
def make_log(root, name, owner_id=None, events=1, folder=None):
    """runs/<name> as a run leaves it: event files and, when owned, its owner record."""
    log = root / "runs" / name
    log.mkdir(parents=True, exist_ok=True)
    for i in range(events):
        (log / f"events.out.tfevents.{1700000000 + i}.host.{i}").write_bytes(b"x" * 10)
    if owner_id:
        (log / LOG_OWNER_FILE).write_text(json.dumps(
            {"run_id": owner_id, "checkpoint_folder": str(folder or root / "gone")}))
    return log


def make_run_folder(root, name, run_id=None):
    folder = root / "ckpt" / name
    folder.mkdir(parents=True, exist_ok=True)
    if run_id:
        (folder / RUN_ID_FILE).write_text(run_id + "\n")
    return folder


MINE, THEIRS = "a1" * 8, "b2" * 8
# (case, run folder's id, log owner's id, event files, resuming, expected: claim / refuse / clear)
LOG_CASES = [
    ("fresh, no log yet", None, None, 0, False, "claim"),
    ("fresh, empty log folder", None, None, 0, False, "claim"),
    ("fresh, another run's events", None, THEIRS, 2, False, "refuse"),
    ("fresh, events of no known run", None, None, 2, False, "refuse"),
    ("fresh, same name elsewhere", MINE, THEIRS, 1, False, "refuse"),
    ("fresh, an earlier start of this run", MINE, MINE, 2, False, "clear"),
    ("resume, another run's log", MINE, THEIRS, 1, True, "refuse"),
    ("resume, log of an older bertsent", None, None, 2, True, "adopt"),
    ("resume, own log", MINE, MINE, 2, True, "keep"),
]


@pytest.mark.parametrize("case", LOG_CASES, ids=[c[0] for c in LOG_CASES])
def test_a_tensorboard_log_belongs_to_one_run(tmp_path, capsys, case):
    _, run_id, owner, events, resuming, expect = case
    folder = make_run_folder(tmp_path, "r", run_id)
    log = tmp_path / "runs" / "r"
    if case[0] != "fresh, no log yet":
        make_log(tmp_path, "r", owner, events, folder if owner == run_id else None)
    before = tree_digest(tmp_path)
    if expect == "refuse":
        with pytest.raises(UserError, match="another run.*: pass another "
                           + ("--runs-dir" if resuming else "--run-name or --runs-dir")):
            claim_log_dir(log, folder, resuming)
        assert tree_digest(tmp_path) == before  # a refused run touches nothing
        return
    got = claim_log_dir(log, folder, resuming)
    assert got == read_run_id(folder) == read_log_owner(log)["run_id"]
    assert run_id is None or got == run_id  # an id, once written, is kept
    left = event_files(log)
    err = capsys.readouterr().err
    assert len(left) == (0 if expect in ("claim", "clear") else events)
    assert ("removed 2 TensorBoard event file(s)" in err) == (expect == "clear")


def test_a_copy_of_a_run_does_not_share_the_original_log(tmp_path):
    """The same run id in two folders that both exist: the copy gets a log of its own."""
    original = make_run_folder(tmp_path, "r", MINE)
    copy = make_run_folder(tmp_path / "elsewhere", "r", MINE)
    log = make_log(tmp_path, "r", MINE, 1, original)
    with pytest.raises(UserError, match="another run"):
        claim_log_dir(log, copy, resuming=True)
    shutil.rmtree(original)  # now it was moved, not copied: the log follows it
    assert claim_log_dir(log, copy, resuming=True) == MINE
    assert read_log_owner(log)["checkpoint_folder"] == str(copy.absolute())


def test_the_same_run_name_under_another_checkpoint_dir_is_refused(tiny_config, tmp_path):
    train({**tiny_config, "epochs": 1})
    before = tree_digest(tmp_path / "runs"), tree_digest(tmp_path / "ckpt")
    with pytest.raises(UserError, match=r"runs/tiny is the TensorBoard log of another run"):
        train({**tiny_config, "epochs": 1, "checkpoint_dir": str(tmp_path / "ckpt2")})
    assert (tree_digest(tmp_path / "runs"), tree_digest(tmp_path / "ckpt")) == before
    assert not (tmp_path / "ckpt2" / "tiny").exists()


def test_a_start_stopped_before_its_first_checkpoint_restarts_with_one_log(tiny_config,
                                                                         tmp_path, capsys):
    """As after a kill -9 before the first checkpoint was sealed: nothing to resume, so a fresh
    start; the earlier start's events go, and TensorBoard shows one run's curves."""
    train({**tiny_config, "log_every": 1}, hooks=Hooks(stop_after_step=3))
    for step in (tmp_path / "ckpt" / "tiny").glob("step-*"):
        shutil.rmtree(step)  # never sealed
    old = event_files(tmp_path / "runs" / "tiny")
    assert old and read_run_id(tmp_path / "ckpt" / "tiny")
    capsys.readouterr()
    train(tiny_config)
    assert "removed 1 TensorBoard event file(s)" in capsys.readouterr().err
    assert not any(p.exists() for p in old)
    tb = EventAccumulator(str(tmp_path / "runs" / "tiny"), purge_orphaned_data=False)
    tb.Reload()
    assert [e.step for e in tb.Scalars("train/loss")] == list(range(1, 25))  # each step once
