"""Golden-tree checks for a fleet: render each profile and compare it byte for byte.

Pure but for reading the golden trees (through a `Root`); `--update` writes only inside GOLDEN/<stem>/.
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
    refusal = unsafe_stem(profile)
    if refusal is not None:
        result.status, result.errors = "invalid", [refusal]
        return result
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
        elif old.data != f.data or old.link != f.link or old.kind not in ("file", "symlink"):
            changes.append(Change(f.path, "update", old, f))
    rendered = {f.path for f in files}
    for path in _golden_files(root, "/"):
        if path not in rendered:
            changes.append(Change(path, "remove", root.read(path)))
    return changes


def _golden_files(root: Root, folder: str) -> list[str]:
    """Every non-folder entry below `folder`, links listed as themselves (never followed)."""
    out: list[str] = []
    for name, kind in root.listdir(folder):
        path = f"{folder.rstrip('/')}/{name}"
        if kind == "dir":
            out.extend(_golden_files(root, path))
        else:
            out.append(path)
    return out


def unsafe_stem(profile: Path) -> str | None:
    """Why a profile's stem cannot name a golden tree: `.`, `..` or hidden would reach other folders."""
    stem = profile.stem
    if stem in ("", ".", "..") or stem.startswith(".") or "/" in stem:
        return f"{profile}: the name {stem!r} cannot name a golden tree (hidden, '.' or '..'); rename the profile"
    return None


def _update_refusal(result: HostCheck) -> str | None:
    """Why `--update` may not touch this golden tree: only GOLDEN/<stem>/ itself, never through a link."""
    stem = unsafe_stem(result.profile)
    if stem is not None:
        return stem
    base = result.golden.parent
    if os.path.realpath(base) != os.path.abspath(base):
        return f"{result.golden}: lies under a symlink; refusing to update it"
    tree = Root(base).kind("/" + result.golden.name)
    if tree not in ("dir", "missing"):
        return f"{result.golden}: is a {tree}, not a folder; refusing to update it"
    golden = Root(result.golden)
    for change in result.changes:
        linked = golden.symlinked_folder(change.path)
        if linked is not None:
            return f"{result.golden}: holds a symlink or file where a folder belongs ({linked}); refusing to update it"
        if golden.kind(change.path) in ("dir", "other"):
            return f"{golden.path(change.path)}: is not a file or link; refusing to update it"
    return None


def update_goldens(results: list[HostCheck]) -> None:
    """Make every drifted golden tree equal its render; all refusals come before the first write."""
    drifted = [r for r in results if r.status == "drift"]
    refusals = [why for why in map(_update_refusal, drifted) if why is not None]
    if refusals:
        raise UsageError(*refusals, "no golden tree was updated")
    for result in drifted:
        update_golden(result)


def update_golden(result: HostCheck) -> None:
    """Make the golden tree equal the render: write what differs, remove what is extra."""
    from .tree import write_tree

    write_tree(tuple(c.new for c in result.changes if c.new is not None), result.golden)
    root = Root(result.golden)
    try:
        for change in result.changes:
            if change.new is None:
                root.remove(change.path)
                _prune_empty(root, os.path.dirname(change.path))
    except OSError as exc:
        raise UsageError(f"{exc.filename or result.golden}: cannot update: {exc.strerror}") from None


def _prune_empty(root: Root, folder: str) -> None:
    while folder != "/" and root.rmdir(folder):
        folder = os.path.dirname(folder)
