"""Which paths under a root kvmbridge may ever change: what it can render, plus its own areas.

`state.json` and `manifest.json` are data, not orders: every path read from
them is checked here before anything acts on it. Destinations come from the
target registry (`targets.renderable`), so a new target is confined by itself.
"""

from __future__ import annotations

import os
import re

from .guardfiles import EXPIRED, GUARD, UNIT_FILES
from .targets import LINK_TARGETS, TARGETS, renderable

OWN_STATE = "/var/lib/kvmbridge"
OWN_BACKUPS = "/var/backups/kvmbridge"

# Named one by one: never the lock, whose removal mid-install would let a second install in.
OWN_FILES = frozenset((f"{OWN_STATE}/state.json", GUARD, EXPIRED))
BACKUP_ID = re.compile(r"[0-9]{8}T[0-9]{6}\.[0-9]{6}Z(-[0-9]{1,6})?")


def is_managed(path: object) -> bool:
    """A destination kvmbridge may write, rename, delete or restore (not a folder)."""
    if not isinstance(path, str) or not _normal(path) or os.path.basename(path).startswith("."):
        return False
    return is_rendered(path) or path in UNIT_FILES or path in OWN_FILES


def is_rendered(path: object) -> bool:
    """A destination some profile renders: the only paths state.json may list."""
    return isinstance(path, str) and _normal(path) and not os.path.basename(path).startswith(".") and renderable(path)


def _normal(path: str) -> bool:
    return path.startswith("/") and os.path.normpath(path) == path and path.isprintable() and len(path) < 256


def _ancestors() -> frozenset[str]:
    folders = set()
    patterns = [t.pattern for t in TARGETS] + [t.pattern for t in LINK_TARGETS]
    for path in [*patterns, *UNIT_FILES, f"{OWN_STATE}/x", f"{OWN_BACKUPS}/x"]:
        folder = os.path.dirname(path)
        while folder != "/":
            folders.add(folder)
            folder = os.path.dirname(folder)
    return frozenset(folders)


MANAGED_FOLDERS = _ancestors()


def is_managed_folder(path: object) -> bool:
    """A folder a transaction may have created and a rollback may remove again when empty."""
    return isinstance(path, str) and path in MANAGED_FOLDERS
