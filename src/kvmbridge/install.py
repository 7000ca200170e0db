"""The install and rollback transactions: lock, plan again under it, backup, atomic writes, state."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .errors import KvmbridgeError, RefusedError, RolledBackError
from .fileset import RenderedSet
from .guard import (
    ExpiredRecord,
    GuardSpec,
    guard_ops,
    read_expired,
    read_guard,
    refuse_if_armed,
    refuse_unreadable,
)
from .guardfiles import EXPIRED, GUARD, GUARD_FILES
from .interrupts import checkpoint, undoing
from .model import HostProfile
from .plan import Change, Plan, make_plan
from .preflight import area_refusal, linked_area_refusal, plan_refusal
from .root import Interrupted, Root, sha256_of
from .state import (
    LOCK,
    STATE,
    Entry,
    Manifest,
    State,
    list_backups,
    read_manifest,
    read_state,
    unfinished_manifest,
)
from .transaction import Op, apply, new_backup_id, restore_ops


@dataclass(frozen=True)
class InstallResult:
    plan: Plan
    manifest: Manifest | None


def refuse_unprivileged(root: Root) -> None:
    if root.is_live and os.geteuid() != 0:
        raise RefusedError("/: writing the live system needs root (or use --root DIR for a staging tree)")


@contextmanager
def locked(root: Root) -> Iterator[None]:
    """One transaction per root at a time; a second one is refused, not queued.

    From the lock on, SIGINT/SIGTERM/SIGHUP undo the work like any failure (exit 4).
    """
    with undoing():
        try:
            with root.lock(LOCK):
                yield
            checkpoint()  # a signal during a run that changed nothing still stops it, and says so
        except Interrupted as exc:  # before the first write: there is nothing to undo
            raise RolledBackError(f"{exc.strerror}; nothing was changed") from None


def refuse_linked_areas(root: Root) -> None:
    """Our own state and backup folders are written too: never through a link, whatever --force says."""
    refusal = linked_area_refusal(root)
    if refusal is not None:
        raise refusal


def install(
    profile: HostProfile,
    files: RenderedSet,
    root: Root,
    *,
    profile_path: Path,
    force: bool,
    guard: GuardSpec | None = None,
) -> InstallResult:
    """With `guard`, its files join the same transaction and backup set as the configuration."""
    refuse_unprivileged(root)
    refuse_if_armed(root)
    if guard is not None:
        refuse_unreadable(guard)
    # Refusals and "nothing to do" leave no trace, not even a lock file; the plan is redone under the lock.
    plan = checked_plan(files, root, force)
    if plan.in_sync and unfinished_manifest(root, read_state(root)) is None:
        return InstallResult(plan, None)
    refusal = area_refusal(root)  # before the lock: a refusal leaves no lock file behind
    if refusal is not None:
        raise refusal
    with locked(root):
        refuse_if_armed(root)
        plan = checked_plan(files, root, force)
        # A killed run's set is taken over even when its files are all in place: the state and the
        # printed rollback must still lead back to what was there before it.
        pending = unfinished_manifest(root, read_state(root))
        if plan.in_sync and pending is None:
            return InstallResult(plan, None)
        refuse_linked_areas(root)
        root.remove_stale_temps({os.path.dirname(c.path) for c in plan.changes})
        backup_id = new_backup_id(root)
        # The guard goes first: a power cut at any later step boots into files its timer takes back.
        ops = guard_ops(guard, backup_id, root) if guard is not None else []
        ops += [_op(c) for c in plan.pending]
        new_state = State(
            files=_hashes_after(plan),
            backup=backup_id,
            profile=str(profile_path),
            hostname=profile.hostname,
        )
        ops.append(Op(STATE, data=new_state.to_bytes(), mode=0o644))
        manifest = apply(
            root,
            ops,
            backup_id=backup_id,
            action="install",
            host=profile.hostname,
            profile=str(profile_path),
            carried=pending,
        )
        return InstallResult(plan, manifest)


def _op(change: Change) -> Op:
    if change.new is None:
        return Op(change.path)
    if change.new.link is not None:
        return Op(change.path, link=change.new.link)
    return Op(change.path, data=change.new.data, mode=change.mode)


def checked_plan(files: RenderedSet, root: Root, force: bool) -> Plan:
    """The plan, or the refusal (blocked targets, drift) that install would give."""
    plan = make_plan(files, root, read_state(root))
    refusal = plan_refusal(plan, force)
    if refusal is not None:
        raise refusal
    return plan


def _hashes_after(plan: Plan) -> dict[str, str]:
    """What each path holds once the plan is carried out: written files and files left as they are."""
    hashes: dict[str, str] = {}
    for change in plan.changes:
        if change.new is None or change.status == "equivalent":
            continue  # removed, or someone else's file left as it is: not ours to police for drift
        sha = sha256_of(change.new.data, change.new.link) if change.writes else change.old.sha256
        if sha is not None:
            hashes[change.path] = sha
    return hashes


def rollback(
    root: Root, backup_id: str | None, *, force: bool, for_guard: bool = False
) -> tuple[Manifest, Manifest | None]:
    """Put back what backup set `backup_id` (default: the newest) replaced; itself undoable.

    `for_guard`: the boot guard's revert. Under the lock it checks again that the guard is
    still armed (a `confirm` may have won the race) and that this set is the one that armed it.
    """
    refuse_unprivileged(root)
    if not root.prefix.is_dir():
        raise RefusedError(f"{root.prefix}: no such folder; nothing to roll back")
    if not list_backups(root):  # checked before the lock, so a mistyped --root gets no lock file
        raise RefusedError(f"{root.path('/var/backups/kvmbridge')}: no backup sets; nothing to roll back")
    with locked(root):
        ids = list_backups(root)
        if not ids:
            raise RefusedError(f"{root.path('/var/backups/kvmbridge')}: no backup sets; nothing to roll back")
        chosen = read_manifest(root, ids[-1] if backup_id is None else backup_id)
        pending = unfinished_manifest(root, read_state(root))
        _refuse_around_guard(root, chosen.id)
        if for_guard:
            _refuse_unless_guarded_by(root, chosen)
        changed = []
        for entry in chosen.entries:
            linked = root.symlinked_folder(entry.path)
            if linked is not None:
                raise RefusedError(f"{root.path(entry.path)}: is inside {linked}, a symlink; nothing was changed")
            now = root.read(entry.path)
            if now.kind not in ("missing", "file", "symlink"):
                raise RefusedError(f"{root.path(entry.path)}: is not a regular file; nothing was changed")
            if now.sha256 not in _allowed(entry) | _pending_allowed(pending, entry.path) and not force:
                changed.append(entry.path)
        if changed:
            raise RefusedError(
                *(f"{root.path(p)}: changed since backup {chosen.id} was taken" for p in changed),
                "nothing was changed; rollback --force restores anyway (and backs up the current files first)",
            )
        try:
            # The guard's files last: a revert cut short keeps its timer until the configuration is back.
            ops = sorted(restore_ops(chosen, root), key=lambda op: op.path in GUARD_FILES)
            # A rollback never arms a boot guard: undoing a revert (or a rollback of a guarded install)
            # brings the configuration back, not a timer with an old deadline that reverts it again.
            ops = [op for op in ops if op.path not in GUARD_FILES or (op.data is None and op.link is None)]
            ops += _stale_expiry(root, chosen)
        except OSError as exc:
            if isinstance(exc, Interrupted):
                raise
            raise KvmbridgeError(f"{root.path('/var/backups/kvmbridge')}/{chosen.id}: {exc.strerror or exc}") from None
        refuse_linked_areas(root)
        root.remove_stale_temps({os.path.dirname(entry.path) for entry in chosen.entries})
        if not ops:
            return chosen, None
        undo = apply(
            root,
            ops,
            backup_id=new_backup_id(root),
            action="rollback",
            host=chosen.host,
            profile=chosen.profile,
            carried=pending if pending is not None and pending.id != chosen.id else None,
        )
        root.remove_empty(chosen.created_dirs)
        return chosen, undo


def _stale_expiry(root: Root, chosen: Manifest) -> list[Op]:
    """Undoing the guard's revert makes its report (guard-expired.json) history: it leaves in the same set."""
    expired = read_expired(root)
    if isinstance(expired, ExpiredRecord) and expired.undo == chosen.id:
        return [Op(EXPIRED)]
    return []


def _allowed(entry: Entry) -> set[str | None]:
    """What a path may hold for its set to be rolled back without --force: its before, its after, or carried ones."""
    return {entry.sha256_before, entry.sha256_after, *entry.also}


def _pending_allowed(pending: Manifest | None, path: str) -> set[str | None]:
    """A killed transaction may have left any content it knew at a path it touched."""
    if pending is None:
        return set()
    return next((_allowed(e) for e in pending.entries if e.path == path), set())


def _refuse_unless_guarded_by(root: Root, chosen: Manifest) -> None:
    record = read_guard(root)
    if record is None or record.backup != chosen.id:
        raise RefusedError(
            f"{root.path(GUARD)}: no boot guard is armed for backup {chosen.id} any more; nothing reverted"
        )
    if not any(e.path == GUARD for e in chosen.entries):
        raise RefusedError(
            f"{root.path(GUARD)}: backup {chosen.id} did not arm this guard; refusing to revert it; nothing reverted"
        )


def _refuse_around_guard(root: Root, backup_id: str) -> None:
    """An armed guard reverts its own set at boot; rolling back another one under it would mix the two."""
    try:
        record = read_guard(root)
    except KvmbridgeError:
        return  # a damaged record must never block the way back
    if record is not None and record.backup != backup_id:
        raise RefusedError(
            f"{root.path('/var/lib/kvmbridge/guard.json')}: a boot guard is armed for backup {record.backup}; "
            f"roll back that one, or run `kvmbridge confirm` first; nothing was changed"
        )
