"""Golden-tree checks for a fleet: render each profile and compare it byte for byte.

Pure but for reading the golden trees (through a `Root`); `--update` writes only inside GOLDEN/<stem>/.
Many profiles are spread over worker processes; the verdicts come back in order.
"""

from __future__ import annotations

import glob
import multiprocessing
import os
import signal
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from multiprocessing.context import ForkProcess
from pathlib import Path

from .errors import KvmbridgeError, UsageError
from .fileset import RenderedSet
from .interrupts import SIGNALS, Stopped, commit, whole
from .plan import Change
from .root import Root


@dataclass
class HostCheck:
    """One profile's verdict: `status` is ok, changed (its golden tree differs) or invalid.

    "drift" is kept for its one meaning, a file kvmbridge wrote and someone changed since.
    """

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
            with os.scandir(path) as entries:  # names sort as their paths do: one folder, one prefix
                found.extend(path / name for name in sorted(e.name for e in entries if e.name.endswith(".toml")))
        elif path.exists():
            found.append(path)
        elif glob.has_magic(arg):
            matches = sorted(Path(p) for p in glob.glob(arg) if p.endswith(".toml"))
            if not matches:
                raise UsageError(f"{arg}: no profile matches")
            found.extend(matches)
        else:
            found.append(path)  # reported as invalid: no such file
    # One file named twice (`a/x.toml a/../a/x.toml`, a linked folder) is checked, counted and updated once.
    first: dict[str, Path] = {}
    for path in found:
        first.setdefault(os.path.realpath(path), path)
    unique = list(first.values())
    if not unique:
        raise UsageError(f"{' '.join(args)}: no *.toml profiles found")
    return unique


def golden_dir(profile: Path, golden: Path | None) -> Path:
    return (golden if golden is not None else profile.parent) / profile.stem


PER_WORKER = 250
"""Below this many profiles per extra worker, forking costs more than it saves (~0.5 ms a profile)."""


def check_fleet(
    profiles: list[Path], golden: Path | None, templates: Path | None, jobs: int | None = None
) -> list[HostCheck]:
    """Every profile checked, in order; two profiles may not share one golden tree.

    `jobs`: worker processes (None: one per usable core once there are enough
    profiles to pay for them). Verdicts keep only what the views and `--update`
    need, so memory grows with the changes, not with the fleet's rendered files.
    """
    owners: dict[str, Pair] = {}
    for profile in profiles:
        tree = golden_dir(profile, golden)
        real = os.path.realpath(tree)  # the same folder reached through `..` or a link is still one tree
        if real in owners:
            raise UsageError(f"{profile}: shares its golden tree {tree} with {owners[real][0]}; rename one of them")
        owners[real] = (profile, tree)
    pairs = list(owners.values())
    return list(_checked(pairs, templates, worker_count(len(pairs), jobs)))


def worker_count(profiles: int, jobs: int | None) -> int:
    if jobs is not None:
        return max(1, min(jobs, profiles))
    return max(1, min(len(os.sched_getaffinity(0)), profiles // PER_WORKER))


Pair = tuple[Path, Path]
"""A profile and its golden tree."""
Verdict = tuple[str, list[str], list[Change]] | None
"""What a worker sends back for one profile: None for ok (the common case costs the pipe next to nothing)."""


def _checked(pairs: list[Pair], templates: Path | None, workers: int) -> Iterator[HostCheck]:
    if workers == 1:
        for profile, tree in pairs:
            yield replace(check_profile(profile, tree, templates), files=())
        return
    # Contiguous slices: this process checks the first, one forked worker each of the others (they inherit
    # the loaded modules and compiled templates) and sends its verdicts back once; the order is the slices'.
    size = -(-len(pairs) // workers)
    slices = [pairs[i : i + size] for i in range(0, len(pairs), size)]
    context = multiprocessing.get_context("fork")
    jobs: list[tuple[ForkProcess, Connection]] = []
    try:
        # Blocked across the forks: a Ctrl-C landing in a child before `_work` ignores it printed a traceback.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        try:
            for part in slices[1:]:
                receive, send = context.Pipe(duplex=False)
                process = context.Process(target=_work, args=(part, templates, send, mask, os.getpid()), daemon=True)
                process.start()
                send.close()
                jobs.append((process, receive))
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        answers = [_verdicts(slices[0], templates)]
        for (_, conn), part in zip(jobs, slices[1:], strict=True):
            try:
                answers.append(conn.recv())
            except EOFError:  # killed (OOM, SIGKILL): a tool failure, never "the golden trees differ"
                raise KvmbridgeError(
                    f"{part[0][0]}: the check worker for it and the next {len(part) - 1} profile(s) died "
                    "without an answer (killed? out of memory?); nothing was checked or updated"
                ) from None
    finally:
        for process, conn in jobs:
            if process.is_alive():
                process.kill()
            process.join()
            conn.close()
    for part, (verdicts, error) in zip(slices, answers, strict=True):
        for (profile, tree), verdict in zip(part, verdicts, strict=False):
            result = HostCheck(profile, tree)
            if verdict is not None:
                result.status, result.errors, result.changes = verdict
            yield result
        if error is not None:  # where the serial loop would have stopped
            raise error


def _verdicts(part: list[Pair], templates: Path | None) -> tuple[list[Verdict], Exception | None]:
    verdicts: list[Verdict] = []
    try:
        for profile, tree in part:
            result = check_profile(profile, tree, templates)
            verdicts.append(None if result.status == "ok" else (result.status, result.errors, result.changes))
    except Exception as exc:
        return verdicts, exc
    return verdicts, None


_PR_SET_PDEATHSIG = 1


def _die_with(parent: int) -> None:
    """A worker outlived a SIGKILLed or OOM-killed parent forever: blocked writing verdicts into a pipe
    whose read end it (and its younger siblings) inherited. The kernel now kills it with its parent."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the request: nobody is left to answer
        os._exit(1)


def _work(part: list[Pair], templates: Path | None, send: Connection, mask: set[signal.Signals], parent: int) -> None:
    _die_with(parent)
    # Ctrl-C reaches the whole process group, systemd's SIGTERM the whole unit: the parent alone
    # answers them and kills its workers (a worker's own KeyboardInterrupt printed a traceback).
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    send.send(_verdicts(part, templates))
    send.close()


def check_profile(profile: Path, tree: Path, templates: Path | None) -> HostCheck:
    """One profile against its golden tree `tree` (see `golden_dir`)."""
    from .profile import load_profile
    from .render import render

    result = HostCheck(profile, tree)
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
        result.status = "changed"
    return result


def compare(files: RenderedSet, golden: Path) -> list[Change]:
    """Missing (create), different (update) and extra (remove) files against a golden tree."""
    root = Root(golden)
    tree = root.snapshot()  # the whole tree in one walk; `read` only for what it cannot see
    changes: list[Change] = []
    for f in files:
        old = tree.get(f.path) or root.read(f.path)
        if old.kind == "missing":
            changes.append(Change(f.path, "create", old, f))
        elif old.data != f.data or old.link != f.link or old.kind not in ("file", "symlink"):
            changes.append(Change(f.path, "update", old, f))
    rendered = {f.path for f in files}
    for path, old in tree.items():
        if path not in rendered:
            changes.append(Change(path, "remove", old))
    return changes


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
    golden = Root(result.golden, prefix_may_be_link=False)
    redirectable = golden.redirectable() or Root(base).redirectable()
    if redirectable is not None:
        return f"{redirectable}; as root, refusing to update {result.golden}"
    for change in result.changes:
        linked = golden.symlinked_folder(change.path)
        if linked is not None:
            return f"{result.golden}: holds a symlink or file where a folder belongs ({linked}); refusing to update it"
        if golden.kind(change.path) in ("dir", "other"):
            return f"{golden.path(change.path)}: is not a file or link; refusing to update it"
    return None


def update_goldens(results: list[HostCheck]) -> None:
    """Make every changed golden tree equal its render; all refusals come before the first write."""
    changed = [r for r in results if r.status == "changed"]
    refusals = [why for why in map(_update_refusal, changed) if why is not None]
    if refusals:
        raise UsageError(*refusals, "no golden tree was updated")
    updated: list[HostCheck] = []
    try:
        for result in changed:
            with whole():  # cancelled (Ctrl-C, a CI job stopped): every tree is its old or its new self
                update_golden(result)
                updated.append(result)
    except Stopped as exc:  # the report is never printed: say which trees are new (ATTACK9d F6)
        for line in _updated_before_the_signal(updated, len(changed)):
            exc.add_note(line)
        raise
    commit()  # every tree is new: a signal now waits for the report that says so (ATTACK9f F4)


def _updated_before_the_signal(updated: list[HostCheck], changed: int) -> Iterator[str]:
    """One line a tree: a comma or a newline in a folder's name never blurs which trees are new."""
    from .profile import path_label

    yield from (f"golden tree updated before it: {path_label(r.golden)}" for r in updated)
    if len(updated) < changed:
        yield f"{changed - len(updated)} other changed golden tree(s) left as they were"


def update_golden(result: HostCheck) -> None:
    """Make the golden tree equal the render: write what differs, remove what is extra."""
    from .tree import write_tree

    write_tree(tuple(c.new for c in result.changes if c.new is not None), result.golden, output_may_be_link=False)
    root = Root(result.golden, prefix_may_be_link=False)
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
