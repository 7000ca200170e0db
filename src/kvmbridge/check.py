"""Golden-tree checks for a fleet: render each profile and compare it byte for byte.

Pure but for reading the golden trees; `--update` goes through `tree.write_tree`.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import KvmbridgeError, UsageError
from .fileset import RenderedSet
from .plan import Change
from .root import Root


@dataclass
class HostCheck:
    """One profile's verdict: `status` is ok, drift or invalid."""

    profile: Path
    golden: Path
    status: str = "ok"
    errors: list[str] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    files: RenderedSet = ()


def expand_profiles(args: Iterable[str]) -> list[Path]:
    """Files, folders (their *.toml) and globs, in a stable order without repeats."""
    found: list[Path] = []
    for arg in args:
        path = Path(arg)
        if path.is_dir():
            found.extend(sorted(path.glob("*.toml")))
        elif path.exists():
            found.append(path)
        elif glob.has_magic(arg):
            matches = sorted(Path(p) for p in glob.glob(arg) if p.endswith(".toml"))
            if not matches:
                raise UsageError(f"{arg}: no profile matches")
            found.extend(matches)
        else:
            found.append(path)  # reported as invalid: no such file
    unique = list(dict.fromkeys(found))
    if not unique:
        raise UsageError(f"{' '.join(args)}: no *.toml profiles found")
    return unique


def golden_dir(profile: Path, golden: Path | None) -> Path:
    return (golden if golden is not None else profile.parent) / profile.stem


def check_fleet(profiles: list[Path], golden: Path | None, templates: Path | None) -> list[HostCheck]:
    """Every profile checked, in order; two profiles may not share one golden tree."""
    owners: dict[Path, Path] = {}
    for profile in profiles:
        tree = golden_dir(profile, golden)
        if tree in owners:
            raise UsageError(f"{profile}: shares its golden tree {tree} with {owners[tree]}; rename one of them")
        owners[tree] = profile
    return [check_profile(p, golden, templates) for p in profiles]


def check_profile(profile: Path, golden: Path | None, templates: Path | None) -> HostCheck:
    from .profile import load_profile
    from .render import render

    result = HostCheck(profile, golden_dir(profile, golden))
    try:
        result.files = render(load_profile(profile), templates)
    except KvmbridgeError as exc:
        result.status, result.errors = "invalid", list(exc.lines)
        return result
    result.changes = compare(result.files, result.golden)
    if result.changes:
        result.status = "drift"
    return result


def compare(files: RenderedSet, golden: Path) -> list[Change]:
    """Missing (create), different (update) and extra (remove) files against a golden tree."""
    root = Root(golden)
    changes: list[Change] = []
    for f in files:
        old = root.read(f.path)
        if old.kind == "missing":
            changes.append(Change(f.path, "create", old, f))
        elif old.data != f.data or old.link != f.link:
            changes.append(Change(f.path, "update", old, f))
    rendered = {f.path for f in files}
    for path in _golden_files(golden):
        if path not in rendered:
            changes.append(Change(path, "remove", root.read(path)))
    return changes


def _golden_files(golden: Path) -> list[str]:
    out: list[str] = []
    for folder, dirs, names in os.walk(golden):
        dirs.sort()
        for name in sorted(names + [d for d in dirs if os.path.islink(os.path.join(folder, d))]):
            out.append("/" + os.path.relpath(os.path.join(folder, name), golden))
    return out


def update_golden(result: HostCheck) -> None:
    """Make the golden tree equal the render: write what differs, remove what is extra."""
    from .tree import write_tree

    write_tree(tuple(c.new for c in result.changes if c.new is not None), result.golden)
    for change in result.changes:
        if change.new is None:
            path = result.golden / change.path.lstrip("/")
            path.unlink()
            _prune_empty(path.parent, result.golden)


def _prune_empty(folder: Path, stop: Path) -> None:
    while folder != stop and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent
