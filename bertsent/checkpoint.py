"""Crash-safe checkpoints: written to a temporary sibling, fsynced, sealed by a manifest of
sizes and sha256 sums written last, then renamed into place. A folder without a valid manifest
is incomplete and never resumed from."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bertsent.errors import fail

STATE_FILE = "state.pt"
MANIFEST = "manifest.json"
STEP_PREFIX = "step-"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(folder: Path) -> None:
    """Fsync every file, then write the manifest (itself fsynced): the folder's seal."""
    entries = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST):
        with open(path, "rb+") as fh:
            os.fsync(fh.fileno())
        entries[str(path.relative_to(folder))] = {"size": path.stat().st_size,
                                                 "sha256": _sha256(path)}
    delay = float(os.environ.get("BERTSENT_TEST_SLOW_SAVE", "0"))  # test hook: widen the window
    if delay:
        time.sleep(delay)
    tmp = folder / (MANIFEST + ".tmp")
    with open(tmp, "w") as fh:
        json.dump({"files": entries, "written": time.time()}, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, folder / MANIFEST)
    _fsync_dir(folder)


def verify(folder: Path) -> str | None:
    """None when the folder is complete and intact, else the reason it is not."""
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return "no manifest (the write did not finish)"
    try:
        entries = json.loads(manifest.read_text())["files"]
    except (OSError, ValueError, KeyError):
        return "unreadable manifest"
    for name, meta in entries.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != meta["size"]:
            return f"{name} is truncated ({path.stat().st_size} of {meta['size']} bytes)"
        if _sha256(path) != meta["sha256"]:
            return f"{name} is corrupt (checksum mismatch)"
    return None


def atomic_folder(final: Path, write: Any) -> Path:
    """Call write(tmp_folder), seal it with a manifest, and move it to `final` in one rename.

    An existing `final` is replaced only after the new folder is complete.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{final.name}-{os.getpid()}"
    for stale in final.parent.glob(f".tmp-{final.name}-*"):  # ours, or a killed writer's
        shutil.rmtree(stale, ignore_errors=True)
    try:
        tmp.mkdir()
        write(tmp)
        write_manifest(tmp)
        old = final.parent / f".old-{final.name}-{os.getpid()}"
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        _fsync_dir(final.parent)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def rng_state() -> dict[str, Any]:
    """Every random generator a training step touches, in a weights_only-loadable form."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(tuple(state["python"][:1]) + (tuple(state["python"][1]),)
                    + tuple(state["python"][2:]))
    np_state = state["numpy"]
    np.random.set_state((np_state[0], np_state[1].numpy(), *np_state[2:]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class GlobalRNG:
    """The process's random generators as a checkpoint entry, like any object with a state."""

    def state_dict(self) -> dict[str, Any]:
        return rng_state()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        set_rng_state(state)


# One checkpoint dict holds everything needed to continue. Its live entries (model, optimizer,
# scaler, weight average, progress, RNG) are objects saved through state_dict() and restored
# through load_state_dict(), by the same two functions; its facts (config, labels, world_size)
# describe the run and are read before it is rebuilt (resume.py, the class map).
def capture(live: dict[str, Any], facts: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint dict: each live object's state (None for one the run does not use)."""
    return {**{k: None if v is None else v.state_dict() for k, v in live.items()}, **facts}


def restore(live: dict[str, Any], saved: dict[str, Any]) -> None:
    """The inverse of capture() for the live entries (an entry a checkpoint lacks is left as
    built: a scaler or weight average that run did not use)."""
    for key, target in live.items():
        if target is not None and saved.get(key) is not None:
            target.load_state_dict(saved[key])


def save_checkpoint(folder: Path, state: dict[str, Any]) -> Path:
    """One dict holding everything needed to continue, written atomically."""
    def write(tmp: Path) -> None:
        torch.save(state, tmp / STATE_FILE)
        # test hook: the disk fills up while step N's checkpoint is written
        if os.environ.get("BERTSENT_TEST_FAIL_SAVE_AT_STEP") == str(step_of(Path(folder))):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp / STATE_FILE))

    return atomic_folder(folder, write)


def step_of(folder: Path) -> int:
    try:
        return int(folder.name[len(STEP_PREFIX):])
    except ValueError:
        return -1


def step_checkpoints(run_dir: Path) -> list[Path]:
    """Step checkpoints of a run, oldest first (complete or not)."""
    if not run_dir.is_dir():
        return []
    found = [p for p in run_dir.iterdir() if p.is_dir() and p.name.startswith(STEP_PREFIX)
             and step_of(p) >= 0]
    return sorted(found, key=step_of)


def find_latest(checkpoint_root: Path, run_name: str | None) -> tuple[Path, list[str]]:
    """Newest complete checkpoint (of `run_name`, or of any run), and notes on those skipped."""
    root = Path(checkpoint_root)
    runs = [root / run_name] if run_name else [p for p in root.iterdir() if p.is_dir()] \
        if root.is_dir() else []
    candidates = [c for r in runs for c in step_checkpoints(r)]
    candidates.sort(key=lambda p: (p.stat().st_mtime if run_name is None else 0, step_of(p)))
    notes = []
    for folder in reversed(candidates):
        reason = verify(folder)
        if reason is None:
            return folder, notes
        notes.append(f"skipping incomplete checkpoint {folder}: {reason}")
    where = f"{root / run_name}" if run_name else str(root)
    fail(f"no complete checkpoint under {where} to resume from: start without --resume "
         "or pass --checkpoint-dir/--run-name of an earlier run")


def load_checkpoint(folder: Path) -> dict[str, Any]:
    folder = Path(folder)
    if not folder.is_dir():
        fail(f"checkpoint {folder} does not exist: pass --resume latest or an existing "
             "step-N folder")
    reason = verify(folder)
    if reason is not None:
        fail(f"checkpoint {folder} is unusable ({reason}): pass --resume latest to fall back "
             "to the newest complete one")
    try:
        return torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        fail(f"checkpoint {folder} cannot be loaded ({type(exc).__name__}): pass another one")


def store_once(first: Path, second: Path) -> int:
    """Files of the sealed folder `second` that equal `first`'s (same size and sha256 in their
    manifests) become hard links to them, so identical exports (best/ and final/ of a run whose
    best point is its last step) take the disk once. Returns the bytes saved."""
    try:
        ours, theirs = (json.loads((f / MANIFEST).read_text())["files"] for f in (first, second))
    except (OSError, ValueError, KeyError):
        return 0
    saved = 0
    for name, meta in theirs.items():
        src, dst = first / name, second / name
        if ours.get(name) != meta or not src.is_file() or os.path.samefile(src, dst):
            continue
        tmp = dst.with_name(f".{dst.name}.link-{os.getpid()}")
        try:
            os.link(src, tmp)
            os.replace(tmp, dst)
            saved += meta["size"]
        except OSError:  # a file system without hard links: keep the copy
            tmp.unlink(missing_ok=True)
    return saved


def remove_step_checkpoints(run_dir: Path) -> int:
    """Delete a finished run's step checkpoints (a finished run is never resumed)."""
    found = step_checkpoints(run_dir)
    for folder in found:
        shutil.rmtree(folder, ignore_errors=True)
    return len(found)


def prune(run_dir: Path, keep_last: int) -> None:
    """Remove all but the newest `keep_last` complete step checkpoints (and stale temp dirs)."""
    complete = [p for p in step_checkpoints(run_dir) if (p / MANIFEST).is_file()]
    for old in complete[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in run_dir.glob(".tmp-*"):  # left by a killed writer; ours are already renamed
        if not stale.name.endswith(f"-{os.getpid()}"):
            shutil.rmtree(stale, ignore_errors=True)
