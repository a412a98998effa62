"""A run's data by what it is, not by what it is called: where it was read from (resolved),
and for each file read its size and sha256; for hub data, the dataset id and revision.

The identity goes into every checkpoint, metrics.json and an exported model's bertsent.json.
A resume, and an evaluate that takes its data from the model, read the data at its recorded
location (not the string resolved again from another working folder) and refuse other
content in one line that names the file; a folder that was moved or copied whole is the same
data. The digests also key the on-disk copies, so content, never a modification time, decides
what is reused.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from bertsent.errors import fail

CHUNK = 1 << 20


def file_digest(path: str | Path) -> dict[str, Any]:
    """{"bytes", "sha256"} of one file, read once in 1 MiB chunks."""
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return {"bytes": size, "sha256": h.hexdigest()}


def folder_identity(folder: Path, files: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A local folder's identity: its resolved location and its files' digests, by name
    relative to it."""
    return {"kind": "folder", "location": str(folder.resolve()), "files": dict(sorted(
        files.items()))}


def hub_identity(data: str, revision: str | None) -> dict[str, Any]:
    return {"kind": "hub", "id": data, "revision": revision}


def content_key(identity: dict[str, Any], names: list[str]) -> str:
    """A short key of what some files hold (not where they are): the on-disk copy and the
    token cache of a split are keyed by it."""
    digests = [identity["files"][n]["sha256"] for n in names]
    return hashlib.sha256("|".join(digests).encode()).hexdigest()[:24]


def portable(identity: dict[str, Any] | None, base: Path | None = None) -> dict[str, Any] | None:
    """The identity for a file a person may commit or copy (metrics.json, bertsent.json): the
    location relative to `base` (the folder the file is in), so it names no machine's folders
    yet still resolves from that file, whatever the working folder."""
    if not identity or identity.get("kind") != "folder":
        return identity
    try:
        where = os.path.relpath(identity["location"], base or Path.cwd())
    except ValueError:  # another drive (Windows): no relative path exists
        where = identity["location"]
    return {**identity, "location": where, "relative_to": "this file's folder" if base
            else "the working folder"}


def recorded_location(identity: dict[str, Any] | None, base: Path | None = None) -> str | None:
    """Where the recorded data folder is now looked for: its location, relative to `base`
    when it was written relative to a file's folder; None for hub data or no identity."""
    if not identity or identity.get("kind") != "folder":
        return None
    location = Path(identity["location"])
    if not location.is_absolute() and base is not None:
        location = base / location
    return os.path.normpath(location)


def locate(data: str, identity: dict[str, Any], source: str, base: Path | None = None) -> str:
    """The recorded data to read when --data is not given: the hub id, or the folder where it
    was resolved when the run started (not the typed string `data` resolved again from here);
    a recorded folder that is gone is refused in one line that says where it was looked for."""
    if identity.get("kind") == "hub":
        return identity["id"]
    location = recorded_location(identity, base)
    if not Path(location).is_dir():
        fail(f"the data folder {data!r} recorded in {source} is not at {location} any more: "
             "pass --data with where it is now (its files are checked to be the same)")
    return location


def check_same(saved: dict[str, Any] | None, source: str, now: dict[str, Any]) -> None:
    """Refuse data whose content differs from what `source` was made with, naming the first
    file that changed; the same files in another folder are the same data."""
    if not saved:
        return  # made before identities were recorded: nothing to compare against
    fix = "pass --data with the data it was made with, or start a new run"
    if saved.get("kind") != now.get("kind") or (saved["kind"] == "hub"
                                                 and saved["id"] != now["id"]):
        fail(f"{source} was made with {describe(saved)}, not {describe(now)}: {fix}")
    if saved["kind"] == "hub":
        if saved.get("revision") and now.get("revision") and \
                saved["revision"] != now["revision"]:
            fail(f"{source} was made with revision {saved['revision']} of {saved['id']}, and "
                 f"{now['revision']} is what loaded: {fix}")
        return
    before, after = saved["files"], now["files"]
    for name in sorted(set(before) | set(after)):
        if name not in after:
            fail(f"{source} was made with {name}, which {now['location']} does not have: {fix}")
        if name not in before:
            fail(f"{source} was made without {name}, which {now['location']} has: {fix}")
        if before[name] != after[name]:
            fail(f"{name} in {now['location']} has changed since {source} was made "
                 f"({_what_changed(before[name], after[name])}): {fix}")


def _what_changed(before: dict[str, Any], after: dict[str, Any]) -> str:
    if before["bytes"] != after["bytes"]:
        return f"{before['bytes']} bytes then, {after['bytes']} now"
    return "same size, other content"


def describe(identity: dict[str, Any]) -> str:
    if identity.get("kind") == "hub":
        return f"hub dataset {identity['id']}"
    return f"the data folder {identity.get('location')}"
