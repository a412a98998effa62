"""A run folder belongs to one run and one process: the run-name rule and an advisory lock.

`checkpoints/<run-name>/` holds everything a run writes besides TensorBoard. A run name is one
path component, so no name can reach into another run's folder, and a lock file taken before
anything is written keeps a second process from training the same run at the same time.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path

from bertsent.errors import fail

LOCK_FILE = ".lock"
MAX_NAME_BYTES = 200  # file systems allow 255; temporary names add a prefix and a pid


def check_run_name(name: str) -> None:
    """One folder name: no separators, not '.' or '..', no control characters, not too long."""
    bad = (not name.strip() or name in (".", "..") or "/" in name or "\\" in name
           or (os.altsep and os.altsep in name) or any(ord(c) < 32 for c in name))
    if bad:
        fail(f"--run-name {name!r} must be one folder name (no '/', not '.' or '..'): "
             "pass a plain name such as imdb-l6")
    if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        fail(f"--run-name is {len(name.encode('utf-8', 'surrogateescape'))} bytes long: "
             f"pass a name of at most {MAX_NAME_BYTES} bytes")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class RunLock:
    """`<run folder>/.lock` holding the owner's pid and host, created atomically (O_EXCL).

    A lock whose process is gone (same host, pid not running: a `kill -9`, a crash) is stale
    and taken over; a lock held by a live process, or by another host, is refused.
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self.held = False
        self.created = False  # the folder was made for this run: removed again if left empty

    def owner(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def acquire(self) -> RunLock:
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        for _ in range(2):
            try:
                if not self.folder.is_dir():
                    self.folder.mkdir(parents=True)
                    self.created = True
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self.owner()
                if owner.get("host") == me["host"] and not _alive(int(owner.get("pid", -1))):
                    self.path.unlink(missing_ok=True)  # stale: its process is gone
                    continue
                fail(f"run {self.folder.name} is in use by process {owner.get('pid', '?')} on "
                     f"{owner.get('host', '?')} (since {owner.get('started', '?')}): wait for "
                     f"it or stop it, or pass another --run-name (if that process is gone, "
                     f"delete {self.path})")
            except OSError as exc:
                fail(f"cannot write to {self.folder} ({exc.strerror}): pass a writable "
                     "--checkpoint-dir")
            with os.fdopen(fd, "w") as fh:
                json.dump(me, fh)
            self.held = True
            return self
        fail(f"cannot take the lock {self.path}: delete it if no run is using it")

    def release(self) -> None:
        if self.held and self.owner().get("pid") == os.getpid():
            self.path.unlink(missing_ok=True)
            if self.created:
                with contextlib.suppress(OSError):  # only if the run wrote nothing
                    self.folder.rmdir()
        self.held = False
