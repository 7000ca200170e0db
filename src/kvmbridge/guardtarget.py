"""Can a boot guard be trusted on this target? Checked before install writes anything.

The guard runs kvmbridge as root at boot, by absolute path. Whoever can write
that executable, its interpreter, its virtualenv or any folder above them owns
the machine at the next boot; a temporary file system forgets the guard across
the very reboot it guards; a root without systemd never runs it. Paths are
followed inside the root only (a link to `/x` means the root's `/x`).
"""

from __future__ import annotations

import errno
import os
import stat
import sysconfig
from collections.abc import Iterator
from pathlib import Path

from .errors import RefusedError
from .guard import SAFE_EXECUTABLE
from .guardfiles import TIMER, UNIT_DIR
from .root import Root

CANDIDATES = ("/opt/kvmbridge/bin/kvmbridge", "/usr/local/bin/kvmbridge", "/usr/bin/kvmbridge")
SYSTEMD = ("/usr/lib/systemd/systemd", "/lib/systemd/systemd")
TEMPORARY_FS = {"tmpfs", "ramfs"}
GUARD_FOLDERS = (UNIT_DIR, "/var/lib/kvmbridge", "/var/backups/kvmbridge")
MAX_WALK = 50_000


def chase(root: Root, dest: str, limit: int = 40) -> tuple[Path, list[Path]]:
    """Resolve `dest` inside the root (links included); returns the real path and every path passed."""
    parts = [p for p in dest.split("/") if p]
    current, visited, links = root.prefix, [root.prefix], 0
    while parts:
        part = parts.pop(0)
        if part == ".":
            continue
        if part == "..":
            current = current.parent if current != root.prefix else current
            continue
        candidate = current / part
        st = candidate.lstat()
        visited.append(candidate)
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > limit:
                raise OSError(errno.ELOOP, "too many levels of symbolic links", str(candidate))
            target = os.readlink(candidate)
            if target.startswith("/"):
                current = root.prefix
            parts = [p for p in target.split("/") if p] + parts
            continue
        current = candidate
    return current, visited


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
    interpreter = _interpreter(real)
    if interpreter is not None:
        try:
            real_interp, passed = chase(root, interpreter)
        except OSError as exc:
            problems.append(f"{root.path(interpreter)}: the interpreter of {executable} cannot be resolved: {exc}")
        else:
            problems += _writable(passed)
            problems += _temporary(real_interp, f"the interpreter of {executable}")
            venv = str(Path(interpreter).parent.parent)
            if _is_file_in(root, f"{venv}/pyvenv.cfg"):
                problems += _writable_tree(chase(root, venv)[0])
    problems += _temporary(real, executable)
    for folder in GUARD_FOLDERS:
        problems += _temporary(_nearest_existing(root, folder), root.path(folder).as_posix())
    return problems


def refuse_untrusted(root: Root, executable: str) -> None:
    problems = guard_problems(root, executable)
    if problems:
        raise RefusedError(*problems, "the boot guard cannot be trusted on this target; nothing was changed")


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
        problem = _untrusted(st)
        if problem:
            problems.append(f"{path}: {problem}; the boot guard runs kvmbridge from here as root")
    return problems


def _untrusted(st: os.stat_result) -> str | None:
    if st.st_uid != 0:
        return f"owned by uid {st.st_uid}, not root"
    if st.st_mode & 0o022:
        who = {0o022: "group and others", 0o020: "its group", 0o002: "others"}[st.st_mode & 0o022]
        return f"writable by {who}"
    return None


def _writable_tree(top: Path) -> list[str]:
    """Every file and folder of a virtualenv: its code runs as root at boot."""
    problems: list[str] = []
    seen = 0
    for folder, dirs, files in os.walk(top):
        for name in [*dirs, *files]:
            seen += 1
            if seen > MAX_WALK:
                return [*problems, f"{top}: more than {MAX_WALK} files; cannot check who can write them"]
            st = os.lstat(os.path.join(folder, name))
            if not stat.S_ISLNK(st.st_mode):
                problem = _untrusted(st)
                if problem:
                    problems.append(f"{os.path.join(folder, name)}: {problem}; its code runs as root at boot")
        if len(problems) > 5:
            break
    return problems[:6]


def _interpreter(script: Path) -> str | None:
    try:
        with open(script, "rb") as handle:
            first = handle.read(256).split(b"\n", 1)[0]
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    words = first[2:].decode("utf-8", "replace").split()
    return words[0] if words and words[0].startswith("/") else None


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


def mount_type(path: Path) -> str | None:
    """The file system type of the mount holding `path`, from this process's mountinfo."""
    try:
        text = Path("/proc/self/mountinfo").read_text()
    except OSError:
        return None
    real = os.path.realpath(path)
    best, best_type = "", None
    for line in text.splitlines():
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        point = _unescape(fields[4])
        fstype = line.split(" - ", 1)[1].split()[0]
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, best_type = point, fstype
    return best_type


def _unescape(text: str) -> str:
    return text.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
