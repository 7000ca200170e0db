"""Apply a set of file operations all-or-nothing: back up, write atomically, undo on failure.

Install and rollback are both a list of `Op`s through `apply`, so both are
backed up, both can be undone, and both restore the same way when a write fails.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import RollbackFailedError, RolledBackError
from .root import OnDisk, Root, sha256_of
from .state import BACKUPS, Entry, Manifest, backup_copy, backup_dir


@dataclass(frozen=True)
class Op:
    """Make `path` hold `data` (a file), `link` (a symlink), or nothing (both None)."""

    path: str
    data: bytes | None = None
    link: str | None = None
    mode: int = 0o644
    uid: int | None = None
    gid: int | None = None
    mtime_ns: int | None = None

    @property
    def sha256(self) -> str | None:
        return sha256_of(self.data, self.link)


def new_backup_id(root: Root) -> str:
    """Sortable by time, unique within the root."""
    now = time.time_ns()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now // 10**9)) + f".{now % 10**9 // 1000:06d}Z"
    candidate, n = stamp, 0
    while root.path(backup_dir(candidate)).exists():
        n += 1
        candidate = f"{stamp}-{n}"
    return candidate


def apply(
    root: Root, ops: Sequence[Op], *, backup_id: str, action: str, host: str | None, profile: str | None
) -> Manifest:
    """Back up every path of `ops`, then carry them out; on failure restore and raise."""
    before = {op.path: root.read(op.path) for op in ops}
    manifest = _take_backup(root, backup_id, ops, before, action=action, host=host, profile=profile)
    done: list[Op] = []
    try:
        for op in ops:
            done.append(op)
            _carry_out(root, op, before[op.path])
    except OSError as exc:
        reason = f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": ")
        _undo(root, manifest, done, reason)
    return manifest


def _take_backup(
    root: Root,
    backup_id: str,
    ops: Sequence[Op],
    before: dict[str, OnDisk],
    *,
    action: str,
    host: str | None,
    profile: str | None,
) -> Manifest:
    entries = []
    folder = root.path(backup_dir(backup_id))
    try:
        root.makedirs(root.path(BACKUPS), mode=0o700)
        root.makedirs(folder, mode=0o700)
        for op in ops:
            old = before[op.path]
            if old.kind == "file" and old.data is not None:
                copy = backup_copy(backup_id, op.path)
                root.makedirs(root.path(copy).parent, mode=0o700)
                root.write_file(copy, old.data, old.mode, old.uid, old.gid)
                os.utime(root.path(copy), ns=(old.mtime_ns, old.mtime_ns))
            entries.append(
                Entry(
                    path=op.path,
                    existed=old.kind != "missing",
                    kind=old.kind,
                    sha256_before=old.sha256,
                    sha256_after=op.sha256,
                    mode=old.mode if old.kind != "missing" else None,
                    uid=old.uid if old.kind != "missing" else None,
                    gid=old.gid if old.kind != "missing" else None,
                    mtime_ns=old.mtime_ns if old.kind != "missing" else None,
                    link_before=old.link,
                )
            )
        manifest = Manifest(
            id=backup_id,
            time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            host=host,
            profile=profile,
            action=action,
            entries=tuple(entries),
            created_dirs=_missing_folders(root, ops),
        )
        root.write_file(f"{backup_dir(backup_id)}/manifest.json", manifest.to_bytes(), 0o600)
    except OSError as exc:
        _discard(folder)
        raise RolledBackError(
            f"{exc.filename or folder}: cannot take the backup ({exc.strerror or exc}); nothing was changed"
        ) from None
    return manifest


def _missing_folders(root: Root, ops: Sequence[Op]) -> tuple[str, ...]:
    """Folders the writes will create, so a rollback can remove them again (deepest first)."""
    missing: set[str] = set()
    for op in ops:
        folder = os.path.dirname(op.path)
        while folder != "/" and not root.path(folder).exists():
            missing.add(folder)
            folder = os.path.dirname(folder)
    return tuple(sorted(missing, key=lambda f: (-f.count("/"), f)))


def remove_empty_folders(root: Root, folders: Sequence[str]) -> None:
    for folder in folders:
        with contextlib.suppress(OSError):
            root.path(folder).rmdir()


def _discard(folder: Path) -> None:
    """Remove a backup set that never protected anything (its writes never began)."""
    if not folder.is_dir():
        return
    for path in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_dir() and not path.is_symlink():
            path.rmdir()
        else:
            path.unlink()
    folder.rmdir()


def _carry_out(root: Root, op: Op, old: OnDisk) -> None:
    target = root.path(op.path)
    if op.data is None and op.link is None:
        root.remove(op.path)
        return
    root.makedirs(target.parent)
    if op.link is not None:
        root.write_symlink(op.path, op.link)
        return
    keep_owner = old.kind == "file"
    uid = op.uid if op.uid is not None else (old.uid if keep_owner else None)
    gid = op.gid if op.gid is not None else (old.gid if keep_owner else None)
    root.write_file(op.path, op.data or b"", op.mode, uid, gid)
    if op.mtime_ns is not None:
        os.utime(target, ns=(op.mtime_ns, op.mtime_ns), follow_symlinks=False)


def restore_ops(manifest: Manifest, root: Root, paths: set[str] | None = None) -> list[Op]:
    """The operations that put each path of a backup set back as it was before."""
    ops = []
    for entry in manifest.entries:
        if paths is not None and entry.path not in paths:
            continue
        if not entry.existed:
            ops.append(Op(entry.path))
        elif entry.kind == "symlink":
            ops.append(Op(entry.path, link=entry.link_before))
        else:
            copy = root.read(backup_copy(manifest.id, entry.path))
            if copy.kind != "file" or copy.sha256 != entry.sha256_before:
                raise OSError(f"backup copy of {entry.path} is missing or damaged")
            ops.append(
                Op(
                    entry.path,
                    data=copy.data,
                    mode=entry.mode or 0o644,
                    uid=entry.uid,
                    gid=entry.gid,
                    mtime_ns=entry.mtime_ns,
                )
            )
    return ops


def _restore(root: Root, backup_id: str, op: Op, now: OnDisk) -> None:
    """Prefer a hard link to the backup copy: restoring then needs no free space."""
    if op.data is not None:
        try:
            root.restore_by_link(op.path, backup_copy(backup_id, op.path), op.mode, op.uid, op.gid)
        except OSError:
            pass
        else:
            if op.mtime_ns is not None:
                os.utime(root.path(op.path), ns=(op.mtime_ns, op.mtime_ns), follow_symlinks=False)
            return
    _carry_out(root, op, now)


def _undo(root: Root, manifest: Manifest, done: list[Op], reason: str) -> None:
    left: list[str] = []
    try:
        ops = restore_ops(manifest, root, {op.path for op in done})
    except OSError as exc:
        ops, left = [], [f"{op.path}: {exc}" for op in done]
    for op in reversed(ops):
        now = root.read(op.path)
        if now.sha256 == op.sha256 and (op.data is None or now.mode == op.mode):
            continue  # never touched (the failure came first): nothing to restore, no space needed
        try:
            _restore(root, manifest.id, op, now)
        except OSError as exc:
            left.append(
                f"{op.path}: not restored ({exc.strerror or exc}); its backup: "
                f"{root.path(backup_copy(manifest.id, op.path)) if op.data is not None else 'did not exist'}"
            )
    remove_empty_folders(root, manifest.created_dirs)
    where = root.path(backup_dir(manifest.id))
    if not left:
        _discard(where)  # everything is as before: the set would only mislead `rollback`
        raise RolledBackError(f"failed: {reason}; every file was restored as it was, nothing changed")
    raise RollbackFailedError(
        f"failed: {reason}; restoring from backup {manifest.id} failed too. Paths left behind:",
        *(f"  {line}" for line in left),
        f"backup set: {where}",
    )
