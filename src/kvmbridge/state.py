"""What kvmbridge wrote (state.json) and the backup sets it keeps, under the target root."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .errors import KvmbridgeError
from .root import Root

STATE = "/var/lib/kvmbridge/state.json"
LOCK = "/var/lib/kvmbridge/lock"
BACKUPS = "/var/backups/kvmbridge"


@dataclass(frozen=True)
class State:
    """`files` maps each path kvmbridge wrote to the sha256 it wrote."""

    files: dict[str, str] = field(default_factory=dict)
    backup: str | None = None
    profile: str | None = None
    hostname: str | None = None

    def to_bytes(self) -> bytes:
        body = {
            "version": 1,
            "profile": self.profile,
            "hostname": self.hostname,
            "backup": self.backup,
            "files": dict(sorted(self.files.items())),
        }
        return (json.dumps(body, indent=2) + "\n").encode()


def read_state(root: Root) -> State:
    on_disk = root.read(STATE)
    if on_disk.kind == "missing":
        return State()
    try:
        raw = json.loads(on_disk.data or b"")
        return State(
            files=dict(raw["files"]), backup=raw.get("backup"), profile=raw.get("profile"), hostname=raw.get("hostname")
        )
    except (ValueError, KeyError, TypeError):
        raise KvmbridgeError(f"{root.path(STATE)}: unreadable state file; move it away to start afresh") from None


@dataclass(frozen=True)
class Entry:
    """One path of a backup set: what it was before and what the transaction wrote."""

    path: str
    existed: bool
    kind: str
    sha256_before: str | None
    sha256_after: str | None
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    mtime_ns: int | None = None
    link_before: str | None = None


@dataclass(frozen=True)
class Manifest:
    id: str
    time: str
    host: str | None
    profile: str | None
    action: str
    entries: tuple[Entry, ...]
    created_dirs: tuple[str, ...] = ()

    def to_bytes(self) -> bytes:
        body: dict[str, Any] = {
            "id": self.id,
            "time": self.time,
            "host": self.host,
            "profile": self.profile,
            "action": self.action,
            "files": [vars(e) for e in self.entries],
            "created_dirs": list(self.created_dirs),
        }
        return (json.dumps(body, indent=2) + "\n").encode()


def backup_dir(backup_id: str) -> str:
    return f"{BACKUPS}/{backup_id}"


def backup_copy(backup_id: str, path: str) -> str:
    """Where the original of `path` is kept: never beside it, where a loader could read it as live config."""
    return f"{BACKUPS}/{backup_id}/files{path}"


def read_manifest(root: Root, backup_id: str) -> Manifest:
    on_disk = root.read(f"{backup_dir(backup_id)}/manifest.json")
    if on_disk.kind != "file":
        raise KvmbridgeError(f"{root.path(backup_dir(backup_id))}: no such backup set (see `kvmbridge backups`)")
    try:
        raw = json.loads(on_disk.data or b"")
        return Manifest(
            id=raw["id"],
            time=raw["time"],
            host=raw.get("host"),
            profile=raw.get("profile"),
            action=raw["action"],
            entries=tuple(Entry(**e) for e in raw["files"]),
            created_dirs=tuple(raw.get("created_dirs", ())),
        )
    except (ValueError, KeyError, TypeError):
        raise KvmbridgeError(f"{root.path(backup_dir(backup_id))}/manifest.json: unreadable manifest") from None


def list_backups(root: Root) -> list[str]:
    """Backup set IDs, oldest first (IDs sort by time); sets without a manifest are incomplete and skipped."""
    folder = root.path(BACKUPS)
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if (p / "manifest.json").is_file())


def unfinished_manifest(root: Root, state: State) -> Manifest | None:
    """The newest set, when its transaction never recorded itself in state.json (killed mid-way)."""
    ids = list_backups(root)
    if not ids or ids[-1] == state.backup:
        return None
    manifest = read_manifest(root, ids[-1])
    return manifest if manifest.action in ("install", "rollback") else None


def known_hashes(root: Root, state: State) -> dict[str, set[str]]:
    """For drift: every content kvmbridge itself put at each path."""
    known: dict[str, set[str]] = {path: {sha} for path, sha in state.files.items()}
    pending = unfinished_manifest(root, state)
    if pending is not None:  # killed mid-way: each of its paths holds either its old or its new content
        for entry in pending.entries:
            hashes = known.setdefault(entry.path, set())
            hashes.update(h for h in (entry.sha256_before, entry.sha256_after) if h is not None)
    return known
