"""What kvmbridge wrote (state.json) and the backup sets it keeps, under the target root.

Both files are hostile data when read back: decoded against a schema
(msgspec), every path checked against what kvmbridge may touch (`confine`),
anything else one clear error before a single file is touched.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import msgspec

from .confine import BACKUP_ID, OWN_BACKUPS, is_managed, is_managed_folder, is_rendered
from .errors import KvmbridgeError, RefusedError
from .root import Root

STATE = "/var/lib/kvmbridge/state.json"
LOCK = "/var/lib/kvmbridge/lock"
BACKUPS = OWN_BACKUPS
METADATA_LIMIT = 1 << 20

_SHA = re.compile(r"[0-9a-f]{64}")


class _StateDoc(msgspec.Struct):
    files: dict[str, str]
    version: int = 1
    backup: str | None = None
    profile: str | None = None
    hostname: str | None = None


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


def _decode(root: Root, dest: str, kind: type[Any]) -> Any:
    """Read and schema-check one metadata file; every problem is one line naming it."""
    where = root.path(dest)
    linked = root.symlinked_folder(dest)
    if linked is not None:
        raise RefusedError(f"{linked}: is a symlink (or not a folder); refusing to read {where} through it")
    on_disk = root.read(dest, limit=METADATA_LIMIT)
    if on_disk.kind != "file" or on_disk.data is None:
        raise KvmbridgeError(f"{where}: is not a regular file; move it away")
    try:
        return msgspec.json.decode(on_disk.data, type=kind)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise KvmbridgeError(f"{where}: unreadable: {_oneline(exc)}; move it away to start afresh") from None


def _oneline(exc: BaseException) -> str:
    return repr(str(exc))[1:-1][:200]


def read_state(root: Root) -> State:
    if root.kind(STATE) == "missing":
        return State()
    doc: _StateDoc = _decode(root, STATE, _StateDoc)
    where = root.path(STATE)
    for path, sha in doc.files.items():
        if not is_rendered(path):
            raise RefusedError(f"{where}: files: {path!r} is not a path kvmbridge writes; nothing was changed")
        if not _SHA.fullmatch(sha):
            raise KvmbridgeError(f"{where}: files.{path}: not a sha256")
    if doc.backup is not None and not BACKUP_ID.fullmatch(doc.backup):
        raise KvmbridgeError(f"{where}: backup: {doc.backup!r} is not a backup ID")
    return State(files=dict(doc.files), backup=doc.backup, profile=doc.profile, hostname=doc.hostname)


class Entry(msgspec.Struct, frozen=True):
    """One path of a backup set: what it was before and what the transaction wrote.

    Decoded from manifest.json as it is, then checked (`_entry_problems`) before use.
    `also`: other contents kvmbridge itself put at the path in unfinished
    transactions this set carried forward (never drift, never "changed since").
    """

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
    also: tuple[str, ...] = ()

    @property
    def known(self) -> set[str]:
        return {h for h in (self.sha256_before, self.sha256_after, *self.also) if h is not None}


class _ManifestDoc(msgspec.Struct):
    id: str
    time: str
    action: Literal["install", "rollback"]
    files: list[Entry]
    host: str | None = None
    profile: str | None = None
    created_dirs: list[str] = []
    finished: bool | None = None  # None: written before the flag existed


@dataclass(frozen=True)
class Manifest:
    id: str
    time: str
    host: str | None
    profile: str | None
    action: str
    entries: tuple[Entry, ...]
    created_dirs: tuple[str, ...] = ()
    finished: bool | None = False

    def to_bytes(self) -> bytes:
        body: dict[str, Any] = {
            "id": self.id,
            "time": self.time,
            "host": self.host,
            "profile": self.profile,
            "action": self.action,
            "files": [msgspec.structs.asdict(e) | {"also": list(e.also)} for e in self.entries],
            "created_dirs": list(self.created_dirs),
            "finished": self.finished,
        }
        return (json.dumps(body, indent=2) + "\n").encode()

    def done(self) -> Manifest:
        return replace(self, finished=True)


def backup_dir(backup_id: str) -> str:
    return f"{BACKUPS}/{backup_id}"


def backup_copy(backup_id: str, path: str) -> str:
    """Where the original of `path` is kept: never beside it, where a loader could read it as live config."""
    return f"{BACKUPS}/{backup_id}/files{path}"


def manifest_path(backup_id: str) -> str:
    return f"{backup_dir(backup_id)}/manifest.json"


def read_manifest(root: Root, backup_id: str) -> Manifest:
    folder = root.path(BACKUPS) / backup_id if "/" not in backup_id and backup_id not in ("", ".", "..") else None
    if folder is None or not BACKUP_ID.fullmatch(backup_id):
        raise KvmbridgeError(f"{backup_id!r}: not a backup ID (see `kvmbridge backups`)")
    if root.kind(manifest_path(backup_id)) == "missing":
        raise KvmbridgeError(f"{folder}: no such backup set (see `kvmbridge backups`)")
    doc: _ManifestDoc = _decode(root, manifest_path(backup_id), _ManifestDoc)
    where = f"{folder}/manifest.json"
    if doc.id != backup_id:
        raise KvmbridgeError(f"{where}: id: {doc.id!r} is not this set's ID {backup_id}")
    problems = _entry_problems(doc.files)
    for key in ("time", "host", "profile"):
        value = getattr(doc, key)
        if value is not None and (not value.isprintable() or len(value) > 4096):
            problems.append(f"{key}: has control characters or is too long")
    problems += [
        f"created_dirs: {d!r} is not a folder kvmbridge creates" for d in doc.created_dirs if not is_managed_folder(d)
    ]
    if problems:
        raise RefusedError(*(f"{where}: {p}" for p in problems[:5]), "nothing was changed")
    return Manifest(
        id=doc.id,
        time=doc.time,
        host=doc.host,
        profile=doc.profile,
        action=doc.action,
        entries=tuple(doc.files),
        created_dirs=tuple(doc.created_dirs),
        finished=doc.finished,
    )


def _entry_problems(entries: list[Entry]) -> list[str]:
    problems: list[str] = []
    seen: set[str] = set()
    for i, e in enumerate(entries):
        at = f"files[{i}]"
        if not is_managed(e.path):
            problems.append(f"{at}.path: {e.path!r} is not a path kvmbridge writes")
            continue
        if e.path in seen:
            problems.append(f"{at}.path: {e.path} is listed twice")
        seen.add(e.path)
        hashes = [e.sha256_before, e.sha256_after, *e.also]
        if any(h is not None and not _SHA.fullmatch(h) for h in hashes):
            problems.append(f"{at}: a sha256 is malformed")
        if e.existed != (e.kind != "missing") or (e.kind == "missing") != (e.sha256_before is None):
            problems.append(f"{at}: existed/kind/sha256_before disagree")
        if e.kind == "symlink" and (e.link_before is None or not e.link_before or "\0" in e.link_before):
            problems.append(f"{at}.link_before: a symlink needs its link text")
        if e.kind not in ("missing", "file", "symlink"):
            problems.append(f"{at}.kind: {e.kind!r}: kvmbridge never replaces anything but files and links")
        if e.mode is not None and not 0 <= e.mode <= 0o7777:
            problems.append(f"{at}.mode: {e.mode} is not a file mode")
        for key in ("uid", "gid"):
            value = getattr(e, key)
            if value is not None and not 0 <= value < 2**32 - 1:
                problems.append(f"{at}.{key}: {value} is out of range")
        if e.mtime_ns is not None and not 0 <= e.mtime_ns < 2**63:
            problems.append(f"{at}.mtime_ns: out of range")
    return problems


def list_backups(root: Root) -> list[str]:
    """Backup set IDs, oldest first (IDs sort by time); sets without a manifest are incomplete and skipped."""
    return [
        name
        for name, kind in root.listdir(BACKUPS)
        if kind == "dir" and BACKUP_ID.fullmatch(name) and root.kind(manifest_path(name)) == "file"
    ]


def unfinished_manifest(root: Root, state: State) -> Manifest | None:
    """The newest set, when its transaction never finished (killed mid-way, even after writing the state).

    Only the set's own last step marks it finished, so a run killed at any
    step is carried forward by the next one, never trusted as "before".
    """
    ids = list_backups(root)
    if not ids:
        return None
    manifest = read_manifest(root, ids[-1])
    if manifest.finished or (manifest.finished is None and manifest.id == state.backup):
        return None
    return manifest


def known_hashes(state: State, pending: Manifest | None) -> dict[str, set[str]]:
    """For drift: every content kvmbridge itself put at each path (`pending`: the unfinished set, if any)."""
    known: dict[str, set[str]] = {path: {sha} for path, sha in state.files.items()}
    if pending is not None:  # killed mid-way: each of its paths holds its old, its new or a carried content
        for entry in pending.entries:
            known.setdefault(entry.path, set()).update(entry.known)
    return known
