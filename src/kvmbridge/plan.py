"""Compare a rendered set with what is under a root: read-only, no side effects.

`diff`, `install --dry-run` and `check` are views of the `Plan` this returns.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .confine import is_rendered
from .fileset import RenderedFile, RenderedSet
from .formats import Format, named
from .root import OnDisk, Root
from .state import Entry, Manifest, State, known_hashes, unfinished_manifest
from .targets import format_of

WRITES = ("create", "update", "drift", "remove")


@dataclass(frozen=True)
class Change:
    """One destination: `status` is create, update, unchanged, equivalent, drift or remove.

    `drift` means kvmbridge wrote this file earlier and someone changed it since;
    `blocked` says why the destination cannot be written at all.
    """

    path: str
    status: str
    old: OnDisk
    new: RenderedFile | None = None
    blocked: str | None = None
    forceable: bool = False

    @property
    def writes(self) -> bool:
        return self.status in WRITES

    @property
    def mode(self) -> int:
        """The mode to write: an existing file keeps its own unless the contract fixes it."""
        assert self.new is not None
        if self.new.keep_mode and self.old.kind == "file":
            return self.old.mode
        return self.new.mode


@dataclass(frozen=True)
class Plan:
    root: Root
    changes: tuple[Change, ...]

    @property
    def pending(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.writes)

    @property
    def in_sync(self) -> bool:
        return not self.pending

    @property
    def drifted(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.status == "drift")

    @property
    def blocked(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.blocked)


def make_plan(files: RenderedSet, root: Root, state: State) -> Plan:
    pending = unfinished_manifest(root, state)
    known = known_hashes(state, pending)
    changes = [_compare(f, root.read(f.path), known.get(f.path), root.symlinked_folder(f.path)) for f in files]
    rendered = {f.path for f in files}
    for path in sorted((set(state.files) | _left_by(pending, root)) - rendered - _restored_by(pending, root)):
        old = root.read(path)
        if old.kind == "missing":
            continue
        drifted = old.sha256 not in known.get(path, set())
        changes.append(Change(path, "drift" if drifted else "remove", old))
    return Plan(root, tuple(changes))


def _left_by(pending: Manifest | None, root: Root) -> set[str]:
    """Paths a killed transaction wrote, though perhaps before its state.json was: ours just the same.

    So a profile that no longer renders them removes them as it would after a finished run, whatever
    step the kill hit, and no file kvmbridge wrote is left on disk outside state.json. A killed
    rollback wrote the other way round: what it already put back (its "after") is the admin's original
    again, as after a finished rollback; only what it had not restored yet is kvmbridge's.
    """
    if pending is None:
        return set()
    return {
        e.path
        for e in pending.entries
        if is_rendered(e.path) and root.read(e.path).sha256 in e.known - {_theirs(pending, e)}
    }


def _theirs(pending: Manifest, entry: Entry) -> str | None:
    """What an unfinished set found or put back at a path that is not kvmbridge's to remove:
    an install's original, a rollback's restore."""
    return entry.sha256_after if pending.action == "rollback" else entry.sha256_before


def _restored_by(pending: Manifest | None, root: Root) -> set[str]:
    """Paths a killed rollback already put back: the admin's again, though its state.json (which a
    finished rollback restores too) may still list them."""
    if pending is None or pending.action != "rollback":
        return set()
    return {
        e.path for e in pending.entries if e.sha256_after is not None and root.read(e.path).sha256 == e.sha256_after
    }


def _compare(new: RenderedFile, old: OnDisk, known: set[str] | None, symlinked: Path | None) -> Change:
    if symlinked is not None:
        return Change(
            new.path, "update", old, new, blocked=f"is inside {symlinked}, a symlink; refusing to write through it"
        )
    if old.kind == "missing":
        return Change(new.path, "create", old, new)
    blocked = _blocked(new, old)
    if blocked:
        # Replacing a symlink itself (never writing through it) is safe enough to allow with --force.
        forceable = old.kind == "symlink" and new.link is None
        return Change(new.path, "update", old, new, blocked=blocked, forceable=forceable)
    if new.link is not None and old.link == new.link:
        status = "unchanged"
    elif new.link is not None:
        status = "equivalent" if same_link_target(new.path, old.link, new.link) else "update"
    elif old.data == new.data:
        status = "update" if not new.keep_mode and old.mode != new.mode else "unchanged"
    elif known is not None:
        # kvmbridge wrote this path: bytes it never wrote are drift, whatever a parser makes of them.
        status = "update" if old.sha256 in known else "drift"
    elif equivalent(new.path, old.data, new.data, new.format):
        status = "equivalent"  # a file libvirt or an admin reformatted, never ours: it stays
    else:
        status = "update"
    if status == "update" and known is not None and old.sha256 not in known:
        status = "drift"
    return Change(new.path, status, old, new)


def _blocked(new: RenderedFile, old: OnDisk) -> str | None:
    if new.link is not None:
        return None if old.kind == "symlink" else f"is a {old.kind}, where a symlink belongs"
    if old.kind == "symlink":
        return f"is a symlink (to {old.link}); refusing to write through it"
    if old.kind != "file":
        return "is not a regular file"
    return None


def same_link_target(path: str, old: str | None, new: str) -> bool:
    """libvirt writes autostart links as absolute paths; ours are relative."""
    if old is None:
        return False
    base = os.path.dirname(path)
    return os.path.normpath(os.path.join(base, old)) == os.path.normpath(os.path.join(base, new))


def equivalent(path: str, old: bytes | None, new: bytes | None, fmt: str | None = None) -> bool:
    """Equal in meaning: both parse, through the format's one parser, to the same structure."""
    parsed_old, parsed_new = parse_or_none(path, old, fmt), parse_or_none(path, new, fmt)
    return parsed_old is not None and parsed_old == parsed_new


def format_for(path: str, fmt: str | None = None) -> Format:
    """The format a rendered file names, else the one its path has in the registry."""
    return named(fmt) if fmt is not None else format_of(path)


def parse_or_none(path: str, data: bytes | None, fmt: str | None = None) -> Any:
    parser = format_for(path, fmt).parse
    if parser is None or data is None:
        return None
    try:
        return parser(data)
    except Exception:  # unparseable means "not equivalent", never a crash
        return None
