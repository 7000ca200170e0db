"""Apply a set of file operations all-or-nothing: back up, write atomically, undo on failure.

Install and rollback are both a list of `Op`s through `apply`, so both are
backed up, both can be undone, and both restore the same way when a write
fails or a SIGINT/SIGTERM/SIGHUP arrives. A set whose transaction was killed
(SIGKILL, power cut) is carried into the next one: its original files become
the new set's "before", so rolling back the newest set always brings back
what was there before kvmbridge, however many runs were cut short.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass

from .errors import RefusedError, RollbackFailedError, RolledBackError
from .interrupts import commit, hold
from .root import Interrupted, Landed, OnDisk, Root, sha256_of
from .state import BACKUPS, Entry, Manifest, backup_copy, backup_dir, manifest_path


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
    while root.kind(backup_dir(candidate)) != "missing":
        n += 1
        candidate = f"{stamp}-{n}"
    return candidate


def apply(
    root: Root,
    ops: Sequence[Op],
    *,
    backup_id: str,
    action: str,
    host: str | None,
    profile: str | None,
    carried: Manifest | None = None,
) -> Manifest:
    """Back up every path of `ops`, then carry them out; on failure restore and raise.

    `carried`: an unfinished set whose originals this set takes over.
    """
    before = {op.path: root.read(op.path) for op in ops}
    unsure = [path for path, now in before.items() if now.kind == "other"]
    if unsure:  # a folder swapped for a link (or a file for a folder) since the plan: no "before" to keep
        raise RefusedError(
            *(f"{root.path(path)}: is not a file or lies behind a symlink; refusing to replace it" for path in unsure),
            "nothing was changed",
        )
    if carried is not None:
        for entry in carried.entries:
            if entry.path not in before:
                before[entry.path] = root.read(entry.path)
    manifest = _take_backup(root, backup_id, ops, before, carried, action=action, host=host, profile=profile)
    done: list[Op] = []
    try:
        for op in ops:
            try:
                _carry_out(root, op, before[op.path])
            except OSError as exc:
                # Root changes a path only as its last step: any other failure left it as it was.
                if isinstance(exc, (Interrupted, Landed)):
                    done.append(op)
                raise
            done.append(op)
        root.write_file(manifest_path(backup_id), manifest.done().to_bytes(), 0o600)
        commit()
    except OSError as exc:
        hold()
        _undo(root, manifest, done, before, _reason(exc))
    return manifest.done()


def _reason(exc: OSError) -> str:
    if isinstance(exc, Interrupted):
        return exc.strerror or "interrupted"
    return f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": ")


def _take_backup(
    root: Root,
    backup_id: str,
    ops: Sequence[Op],
    before: dict[str, OnDisk],
    carried: Manifest | None,
    *,
    action: str,
    host: str | None,
    profile: str | None,
) -> Manifest:
    entries = []
    folder = backup_dir(backup_id)
    old_entries = {e.path: e for e in carried.entries} if carried is not None else {}
    try:
        root.makedirs(BACKUPS, mode=0o700)
        root.makedirs(folder, mode=0o700)
        after = {op.path: op.sha256 for op in ops}
        for path, now in before.items():
            entry = _entry(path, now, after.get(path, now.sha256))
            old = old_entries.get(path)
            if old is not None:
                entry = _carry(old, entry, now)
            if entry.kind == "file":
                data = _original(root, carried, old, now)
                copy = backup_copy(backup_id, path)
                root.makedirs(os.path.dirname(copy), mode=0o700)
                root.write_file(copy, data, entry.mode or 0o600, entry.uid, entry.gid, mtime_ns=entry.mtime_ns)
            entries.append(entry)
        manifest = Manifest(
            id=backup_id,
            time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            host=host,
            profile=profile,
            action=action,
            entries=tuple(entries),
            created_dirs=_missing_folders(root, ops, carried),
        )
        root.write_file(manifest_path(backup_id), manifest.to_bytes(), 0o600)
    except OSError as exc:
        hold()
        _discard(root, folder)
        raise RolledBackError(
            f"{exc.filename or root.path(folder)}: cannot take the backup ({_reason(exc)}); nothing was changed"
        ) from None
    return manifest


def _entry(path: str, old: OnDisk, sha_after: str | None) -> Entry:
    existed = old.kind != "missing"
    return Entry(
        path=path,
        existed=existed,
        kind=old.kind,
        sha256_before=old.sha256,
        sha256_after=sha_after,
        mode=old.mode if existed else None,
        uid=old.uid if existed else None,
        gid=old.gid if existed else None,
        mtime_ns=old.mtime_ns if existed else None,
        link_before=old.link,
    )


def _carry(old: Entry, new: Entry, now: OnDisk) -> Entry:
    """The unfinished set's original becomes this set's "before"; what it left is remembered as ours."""
    also = {*old.known, *([now.sha256] if now.sha256 else [])} - {old.sha256_before, new.sha256_after}
    return Entry(
        path=new.path,
        existed=old.existed,
        kind=old.kind,
        sha256_before=old.sha256_before,
        sha256_after=new.sha256_after,
        mode=old.mode,
        uid=old.uid,
        gid=old.gid,
        mtime_ns=old.mtime_ns,
        link_before=old.link_before,
        also=tuple(sorted(h for h in also if h is not None)),
    )


def _original(root: Root, carried: Manifest | None, old: Entry | None, now: OnDisk) -> bytes:
    if carried is None or old is None:
        assert now.data is not None
        return now.data
    copy = root.read(backup_copy(carried.id, old.path))
    if copy.kind != "file" or copy.sha256 != old.sha256_before or copy.data is None:
        raise OSError(errno.EIO, f"backup copy in unfinished set {carried.id} is missing or damaged", old.path)
    return copy.data


def _missing_folders(root: Root, ops: Sequence[Op], carried: Manifest | None) -> tuple[str, ...]:
    """Folders the writes will create, so a rollback can remove them again (deepest first)."""
    missing: set[str] = set(carried.created_dirs) if carried is not None else set()
    for op in ops:
        folder = os.path.dirname(op.path)
        while folder != "/" and root.kind(folder) == "missing":
            missing.add(folder)
            folder = os.path.dirname(folder)
    return tuple(sorted(missing, key=lambda f: (-f.count("/"), f)))


def _discard(root: Root, folder: str) -> None:
    """Remove a backup set that never protected anything (its writes never began, or were all undone).

    Its manifest goes first: a discard cut short (SIGKILL, power cut) then leaves copies that are
    no set at all, where it used to leave an unfinished set without its copies that every later
    install had to carry and could not (exit 4 forever, even with --force: ATTACK9c F8).
    """
    manifest = f"{folder}/manifest.json"
    with suppress(OSError):  # a set left whole is carried forward by the next run, never trusted
        if root.kind(manifest) != "missing":
            root.remove(manifest)
        root.remove_tree(folder)


def _carry_out(root: Root, op: Op, old: OnDisk) -> None:
    if op.data is None and op.link is None:
        root.remove(op.path)
        return
    root.makedirs(os.path.dirname(op.path))
    if op.link is not None:
        root.write_symlink(op.path, op.link)
        return
    keep_owner = old.kind == "file"
    uid = op.uid if op.uid is not None else (old.uid if keep_owner else None)
    gid = op.gid if op.gid is not None else (old.gid if keep_owner else None)
    root.write_file(op.path, op.data or b"", op.mode, uid, gid, mtime_ns=op.mtime_ns)


def entry_op(entry: Entry, data: bytes | None = None) -> Op:
    """The operation that puts an entry's path back as it was before its set."""
    if not entry.existed:
        return Op(entry.path)
    if entry.kind == "symlink":
        return Op(entry.path, link=entry.link_before)
    # Never set-uid, set-gid or sticky: no file kvmbridge manages needs them, and a forged manifest must not
    # turn a restore by root into a set-uid binary.
    mode = (entry.mode or 0o644) & 0o777
    return Op(entry.path, data=data, mode=mode, uid=entry.uid, gid=entry.gid, mtime_ns=entry.mtime_ns)


def restore_ops(manifest: Manifest, root: Root) -> list[Op]:
    """The operations that put each path of a backup set back as it was, skipping those already so."""
    ops = []
    for entry in manifest.entries:
        now = root.read(entry.path)
        if now.sha256 == entry.sha256_before and (entry.kind != "file" or now.mode == entry.mode):
            continue
        data = None
        if entry.existed and entry.kind == "file":
            copy = root.read(backup_copy(manifest.id, entry.path))
            if copy.kind != "file" or copy.sha256 != entry.sha256_before:
                raise OSError(errno.EIO, f"backup copy of {entry.path} is missing or damaged")
            data = copy.data
        ops.append(entry_op(entry, data))
    return ops


def _start_op(path: str, old: OnDisk) -> Op:
    """What `path` held when this transaction began: the undo's target, whatever a carried set says."""
    if old.kind == "missing":
        return Op(path)
    if old.kind == "symlink":
        return Op(path, link=old.link)
    return Op(path, data=old.data or b"", mode=old.mode, uid=old.uid, gid=old.gid, mtime_ns=old.mtime_ns)


def _restore(root: Root, manifest: Manifest, op: Op, now: OnDisk) -> bool:
    """Prefer a hard link to the backup copy (no free space needed); True when linked."""
    entry = next((e for e in manifest.entries if e.path == op.path), None)
    if op.data is not None and entry is not None and entry.sha256_before == op.sha256:
        try:
            root.restore_by_link(
                op.path, backup_copy(manifest.id, op.path), op.mode, op.uid, op.gid, mtime_ns=op.mtime_ns
            )
        except OSError:
            pass
        else:
            return True
    _carry_out(root, op, now)
    return False


def _undo(root: Root, manifest: Manifest, done: list[Op], before: dict[str, OnDisk], reason: str) -> None:
    left: list[str] = []
    linked: list[Op] = []
    for op in reversed([_start_op(d.path, before[d.path]) for d in done]):
        now = root.read(op.path)
        if now.sha256 == op.sha256 and (op.data is None or now.mode == op.mode):
            continue  # never touched (the failure came first): nothing to restore, no space needed
        try:
            if _restore(root, manifest, op, now):
                linked.append(op)
        except OSError as exc:
            left.append(
                f"{op.path}: not restored ({exc.strerror or exc}); its backup: "
                f"{root.path(backup_copy(manifest.id, op.path)) if op.data is not None else 'did not exist'}"
            )
    root.remove_empty(d for d in manifest.created_dirs if not d.startswith(BACKUPS))
    if not left:
        _discard(root, backup_dir(manifest.id))  # everything is as before: the set would only mislead `rollback`
        raise RolledBackError(f"failed: {reason}; every file was restored as it was, nothing changed")
    for op in linked:  # the set stays: a restored file must not share its inode with the backup copy
        _unshare(root, manifest.id, op)
    raise RollbackFailedError(
        f"failed: {reason}; restoring from backup {manifest.id} failed too. Paths left behind:",
        *(f"  {line}" for line in left),
        f"backup set: {root.path(backup_dir(manifest.id))}",
    )


def _unshare(root: Root, backup_id: str, op: Op) -> None:
    """Give the backup copy its own inode; on a full disk drop it: the restored file holds the same bytes."""
    copy = backup_copy(backup_id, op.path)
    try:
        root.write_file(copy, op.data or b"", op.mode, op.uid, op.gid, mtime_ns=op.mtime_ns)
    except OSError:
        with suppress(OSError):
            root.remove(copy)
