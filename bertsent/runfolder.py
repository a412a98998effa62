"""A run folder belongs to one run and one process: the run-name rule, an advisory lock, and
the run's one TensorBoard log.

`checkpoints/<run-name>/` holds everything a run writes besides TensorBoard. A run name is one
path component, so no name can reach into another run's folder, and a lock file taken before
anything is written keeps a second process from training the same run at the same time.

The TensorBoard folder `runs/<run-name>/` lies outside the locked folder, so the run folder
holds a run id (written once, kept across resumes) and the TensorBoard folder names the id
that owns it: a second run under the same name (another --checkpoint-dir, or a fresh start
after the first one's folder was deleted) is refused instead of mixing its curves into the
first run's log.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertsent.checkpoint import STEP_PREFIX, step_checkpoints
from bertsent.errors import fail

LOCK_FILE = ".lock"
RUN_ID_FILE = "run-id"  # in checkpoints/<run>/: the run's id, written when it first starts
LOG_OWNER_FILE = "run-owner.json"  # in runs/<run>/: the id (and folder) of the run it belongs to
EVENT_FILES = "events.out.tfevents.*"


def relative_path(path: Path | str) -> str:
    """`path` relative to the working directory: what results record, so that a committed
    result file names no machine's folders yet still works from where the run was started."""
    try:
        return os.path.relpath(path)
    except ValueError:  # another drive (Windows): no relative path exists
        return str(path)


def unwritable(folder: Path) -> OSError | None:
    """Create the folder and write a file in it: None when that works, else why not. The one
    probe behind every output check and the tokenisation cache (which falls back to memory)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        return exc
    return None


def check_output_folder(path: str, flag: str, new: bool = False) -> None:
    """A folder the run will write into: refused now if it is a file or cannot be written.

    new: the folder must be new or empty, because what is written there would replace files
    of the same name (an evaluation report over a run's own metrics.json)."""
    folder = Path(path).expanduser()
    if folder.exists() and not folder.is_dir():
        fail(f"{flag} {path} is a file: pass a folder path")
    if new and folder.is_dir():
        try:
            held = sorted(p.name for p in folder.iterdir())
        except OSError as exc:
            fail(f"cannot read {path} ({exc.strerror}): pass a new or empty {flag}")
        if held:
            fail(f"{flag} {path} already holds files ({', '.join(held[:3])}"
                 f"{', ...' if len(held) > 3 else ''}): pass a new or empty folder")
    problem = unwritable(folder)
    if problem is not None:
        fail(f"cannot write to {path} ({problem.strerror}): pass a writable {flag}")


def publish(path: Path, text: str, exclusive: bool) -> bool:
    """Write `text` to a temporary file, then make it `path` in one step, so no reader ever sees
    it half-written. exclusive: `os.link`, which fails if `path` exists (False is returned);
    otherwise `os.replace`. File systems without hard links fall back to O_EXCL."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if not exclusive:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                raise
            try:  # no hard links here: exclusive create, visible briefly while written
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def valid_owner(data: Any) -> bool:
    """A lock record: a dict with a positive int pid and a str host (anything else is stale)."""
    return (isinstance(data, dict) and type(data.get("pid")) is int and data["pid"] > 0
            and isinstance(data.get("host"), str))


class RunLock:
    """`<run folder>/.lock` holding the owner's pid and host, published atomically.

    The record is written to a temporary file and hard-linked to the lock path, which fails
    if a lock exists: a lock is never seen half-written. A lock whose process is gone (same
    host, pid not running: a `kill -9`, a crash) or whose content is not a lock record (an
    empty or damaged file) is stale and taken over with one line on stderr; a lock held by a
    live process, or by another host, is refused.
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self.held = False
        self.created = False  # the folder was made for this run: removed again if left empty

    def read(self) -> tuple[bytes | None, dict]:
        """(raw content or None if there is no lock, the owner record or {} if not valid)."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None, {}
        except OSError as exc:
            fail(f"cannot read the lock {self.path} ({exc.strerror}): delete it if no run is "
                 "using it")
        try:
            data = json.loads(raw)
        except ValueError:
            return raw, {}
        return raw, data if valid_owner(data) else {}

    def owner(self) -> dict:
        return self.read()[1]

    def acquire(self) -> RunLock:
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        for _ in range(3):
            try:
                if not self.folder.is_dir():
                    self.folder.mkdir(parents=True)
                    self.created = True
                if publish(self.path, json.dumps(me), exclusive=True):
                    self.held = True
                    return self
            except OSError as exc:
                fail(f"cannot write to {self.folder} ({exc.strerror}): pass a writable "
                     "--checkpoint-dir")
            raw, owner = self.read()
            if raw is None:
                continue  # released between our attempt and our look
            if not owner:
                why = "its content is not a lock record (pid and host)"
            elif owner["host"] == me["host"] and not _alive(owner["pid"]):
                why = f"its process {owner['pid']} is gone"
            else:
                fail(f"run {self.folder.name} is in use by process {owner['pid']} on "
                     f"{owner['host']} (since {owner.get('started', '?')}): wait for it or "
                     f"stop it, or pass another --run-name (if that process is gone, delete "
                     f"{self.path})")
            if self._remove_if_unchanged(raw):
                print(f"taking over the stale lock {self.path}: {why}", file=sys.stderr)
        fail(f"cannot take the lock {self.path}: delete it if no run is using it")

    def _remove_if_unchanged(self, raw: bytes) -> bool:
        """Remove the lock only if it still holds `raw`: a process that took the stale lock
        over in the meantime keeps its own (moved aside, compared, and put back)."""
        aside = self.path.with_name(f".{LOCK_FILE}.stale.{os.getpid()}")
        try:
            os.replace(self.path, aside)
        except FileNotFoundError:
            return False
        try:
            if aside.read_bytes() != raw:
                with contextlib.suppress(OSError):
                    os.link(aside, self.path)  # fails only if a third process took it
                return False
            return True
        finally:
            aside.unlink(missing_ok=True)

    def release(self) -> None:
        if self.held and self.owner().get("pid") == os.getpid():
            self.path.unlink(missing_ok=True)
            if self.created:
                with contextlib.suppress(OSError):  # only if the run wrote nothing
                    self.folder.rmdir()
        self.held = False


# ---------------------------------------------------------------- the run's TensorBoard log
def read_run_id(run_folder: Path) -> str | None:
    """The run id in checkpoints/<run>/, or None (a new run, or one an older bertsent wrote)."""
    try:
        text = (Path(run_folder) / RUN_ID_FILE).read_text().strip()
    except (OSError, ValueError):
        return None
    return text if re.fullmatch(r"[0-9a-f]{8,64}", text) else None


def read_log_owner(log_dir: Path) -> dict | None:
    """The record in runs/<run>/ naming the run that owns the log: None if there is no such
    file (a new folder, or one an older bertsent wrote), {} if it is there but not a record."""
    try:
        data = json.loads((Path(log_dir) / LOG_OWNER_FILE).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and isinstance(data.get("run_id"), str) else {}


def event_files(log_dir: Path) -> list[Path]:
    log_dir = Path(log_dir)
    return sorted(log_dir.rglob(EVENT_FILES)) if log_dir.is_dir() else []


def _same_folder(a: str, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == str(b.absolute())


def claim_log_dir(log_dir: Path, run_folder: Path, resuming: bool, _retry: bool = True) -> str:
    """Make runs/<run> the log of the run in `run_folder` (checkpoints/<run>), or refuse.

    Fresh start: a log with no events is claimed; one owned by this run id (an earlier start
    that never sealed a checkpoint, so nothing could be resumed) loses its old events, with a
    line on stderr; events of another run, or events with no owner, are refused. Resume: a log
    of another run is refused; one without an owner (an older bertsent's) is adopted. A copy
    of this run in another folder that still exists counts as another run. Nothing is written
    unless the log is claimed. Returns the run id.
    """
    log_dir, run_folder = Path(log_dir), Path(run_folder)
    run_id = read_run_id(run_folder)
    new_id = run_id is None
    run_id = run_id or secrets.token_hex(8)
    found = read_log_owner(log_dir)
    owner = found or None  # a damaged record names no run: as if there were none
    events = event_files(log_dir)
    fix = ("pass another --runs-dir (a resumed run keeps its name)" if resuming else
           "pass another --run-name or --runs-dir")
    if owner is not None:
        theirs = str(owner.get("checkpoint_folder", "?"))
        copy = owner["run_id"] == run_id and theirs != "?" and \
            not _same_folder(theirs, run_folder) and read_run_id(Path(theirs)) == run_id
        if owner["run_id"] != run_id or copy:
            fail(f"{log_dir} is the TensorBoard log of another run (checkpoints in {theirs}): "
                 f"{fix}")
    elif events and not resuming:
        fail(f"{log_dir} holds TensorBoard events of another run (no {LOG_OWNER_FILE} names "
             f"this run): {fix}, or delete {log_dir} if that run is gone")
    if owner is not None and events and not resuming:  # ours, from a start with no checkpoint
        for path in events:
            path.unlink(missing_ok=True)
        print(f"removed {len(events)} TensorBoard event file(s) from {log_dir}: an earlier start "
              f"of run {run_folder.name} stopped before its first checkpoint, so there was "
              "nothing to resume and its curves would mix with this one's", file=sys.stderr)
    record = json.dumps({"run_id": run_id, "checkpoint_folder": str(run_folder.absolute())})
    log_dir.mkdir(parents=True, exist_ok=True)
    if found is None:  # no owner file: claim it, unless another process just did
        if not publish(log_dir / LOG_OWNER_FILE, record, exclusive=True):
            if _retry:
                return claim_log_dir(log_dir, run_folder, resuming, _retry=False)
            fail(f"cannot claim {log_dir} for run {run_folder.name}: {fix}")
    elif owner is None or not _same_folder(str(owner.get("checkpoint_folder", "")), run_folder):
        publish(log_dir / LOG_OWNER_FILE, record, exclusive=False)  # damaged, or the run moved
    if new_id:
        publish(run_folder / RUN_ID_FILE, run_id + "\n", exclusive=False)
    return run_id


# ---------------------------------------------------------------- the run folder's layout
METRICS = "metrics.json"  # written last, by a finished run


@dataclass(frozen=True)
class RunPaths:
    """Where a run's outputs go, composed once: `checkpoints/<run>/` (step checkpoints, best/
    and final/ models, config.json, metrics.json, report/) and `runs/<run>/` (TensorBoard)."""

    folder: Path
    log_dir: Path

    @classmethod
    def of(cls, checkpoint_dir: str, runs_dir: str, run_name: str) -> RunPaths:
        return cls(folder=Path(checkpoint_dir) / run_name, log_dir=Path(runs_dir) / run_name)

    @property
    def best(self) -> Path:
        return self.folder / "best"

    @property
    def final(self) -> Path:
        return self.folder / "final"

    @property
    def metrics(self) -> Path:
        return self.folder / METRICS

    @property
    def config(self) -> Path:
        return self.folder / "config.json"

    @property
    def report(self) -> Path:
        return self.folder / "report"

    def step(self, step: int) -> Path:
        return self.folder / f"{STEP_PREFIX}{step}"


def is_finished(folder: Path) -> bool:
    """A run is finished once it has written its metrics.json (the last thing it writes) beside
    the config.json it wrote at its start: an evaluation report's metrics.json alone (evaluate
    --report-dir checkpoints/<name>) is no finished run."""
    return (Path(folder) / METRICS).is_file() and (Path(folder) / "config.json").is_file()


def prepare(paths: RunPaths, resuming: bool, main: bool) -> None:
    """Refuse to start over an existing run, check both folders can be written, and claim the
    TensorBoard folder for this run (rank 0; nothing is written if anything is refused)."""
    if not resuming and (step_checkpoints(paths.folder) or (paths.folder / METRICS).exists()):
        fail(f"run {paths.folder.name} already exists in {paths.folder.parent}: pass --resume "
             "latest to continue it, or a new --run-name")
    check_output_folder(str(paths.folder), "--checkpoint-dir")
    check_output_folder(str(paths.log_dir), "--runs-dir")
    if main:
        claim_log_dir(paths.log_dir, paths.folder, resuming)


def disk_usage(folder: Path) -> int:
    """Bytes the folder takes, each file counted once however many hard links it has."""
    seen, total = set(), 0
    for path in Path(folder).rglob("*"):
        try:
            stat = path.lstat()
        except OSError:
            continue
        if path.is_file() and (stat.st_dev, stat.st_ino) not in seen:
            seen.add((stat.st_dev, stat.st_ino))
            total += stat.st_size
    return total


def format_size(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"
