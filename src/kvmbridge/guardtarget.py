"""Can a boot guard be trusted on this target? Checked before install writes anything.

The guard runs kvmbridge as root at boot, by absolute path. Whoever can write
that executable, anything its Python loads (see `guardload`) or any folder
above them owns the machine at the next boot; a temporary file system forgets
the guard across the very reboot it guards; a root without systemd never runs
it. Paths are followed inside the root only (a link to `/x` means the root's `/x`).
"""

from __future__ import annotations

import errno
import os
import stat
import sysconfig
from collections.abc import Iterator
from pathlib import Path

from .errors import RefusedError, one_line
from .guard import SAFE_EXECUTABLE
from .guardfiles import TIMER, UNIT_DIR
from .guardload import load_problems
from .guardwalk import TEMPORARY_FS, mount_type, resolve, untrusted
from .root import Root

CANDIDATES = ("/opt/kvmbridge/bin/kvmbridge", "/usr/local/bin/kvmbridge", "/usr/bin/kvmbridge")
SYSTEMD = ("/usr/lib/systemd/systemd", "/lib/systemd/systemd")
GUARD_FOLDERS = (UNIT_DIR, "/var/lib/kvmbridge", "/var/backups/kvmbridge")


def chase(root: Root, dest: str) -> tuple[Path, list[Path]]:
    """Resolve `dest` inside the root (links included); returns the real path and every path passed."""
    real, visited, found = resolve(root, dest)
    if not found:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(root.path(dest)))
    return real, visited


def running_executable() -> str:
    """The console script of the environment this kvmbridge runs from."""
    return str(Path(sysconfig.get_path("scripts")) / "kvmbridge")


def choose_executable(root: Root) -> str:
    """The kvmbridge the units will run: this one when it is inside the root, else a usual place."""
    tried = []
    for candidate in dict.fromkeys([running_executable(), *CANDIDATES]):
        if not SAFE_EXECUTABLE.fullmatch(candidate):
            continue
        tried.append(candidate)
        try:
            real, _ = chase(root, candidate)
        except OSError:
            continue
        if real.is_file() and os.access(real, os.X_OK):
            return candidate
    raise RefusedError(
        f"{root.prefix}: no kvmbridge executable inside the target root (looked for {', '.join(tried)}); "
        "the boot guard runs it at boot: install kvmbridge there (e.g. a venv under /opt/kvmbridge); "
        "nothing was changed"
    )


def guard_problems(root: Root, executable: str) -> list[str]:
    """Every reason the guard could not be trusted to run at the next boot (empty: fine)."""
    problems = list(_systemd_problems(root))
    try:
        real, visited = chase(root, executable)
    except OSError as exc:
        return [*problems, f"{root.path(executable)}: cannot resolve: {exc.strerror or exc}"]
    problems += _writable(visited)
    problems += load_problems(root, executable, real)
    problems += _temporary(real, executable)
    for folder in GUARD_FOLDERS:
        problems += _temporary(_nearest_existing(root, folder), root.path(folder).as_posix())
    return problems


def refuse_untrusted(root: Root, executable: str) -> None:
    problems = guard_problems(root, executable)
    if problems:
        raise RefusedError(
            *map(one_line, problems), "the boot guard cannot be trusted on this target; nothing was changed"
        )


def _is_file_in(root: Root, dest: str) -> bool:
    try:
        return chase(root, dest)[0].is_file()
    except OSError:
        return False


def _systemd_problems(root: Root) -> Iterator[str]:
    if not any(_is_file_in(root, candidate) for candidate in SYSTEMD):
        yield f"{root.path(SYSTEMD[0])}: the target root has no systemd; the guard's timer ({TIMER}) would never run"
        return
    if root.is_live and not Path("/run/systemd/system").is_dir():
        yield "/run/systemd/system: this host did not boot with systemd; the guard's timer would never run"


def _writable(paths: list[Path]) -> list[str]:
    problems = []
    for path in paths:
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            continue
        problem = untrusted(st)
        if problem:
            problems.append(f"{path}: {problem}; the boot guard runs kvmbridge from here as root")
    return problems


def _nearest_existing(root: Root, folder: str) -> Path:
    current = folder
    while current != "/":
        try:
            return chase(root, current)[0]
        except OSError:
            current = os.path.dirname(current)
    return root.prefix


def _temporary(path: Path, what: str) -> list[str]:
    fstype = mount_type(path)
    if fstype in TEMPORARY_FS:
        return [f"{what}: lies on a temporary file system ({fstype}); it would be gone after the reboot"]
    return []
