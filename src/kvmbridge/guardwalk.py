"""The trust walk under the boot guard's loads: may anyone but root change a path, a folder tree, a link's target?

Split from `guardload` by job: guardload follows Python's chain (#! line,
venv, sys.path, .pth files) and asks this walk about every path it meets;
the walk follows links inside the root with budgets (entries walked, names
looked up), reads files without following links and knows the mounts.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import NoReturn

from .errors import KvmbridgeError
from .root import Root, read_regular

MAX_WALK = 200_000
# Names looked up (lstat) while following links, in all: a link to a long `x/../x/..` chain costs
# thousands each, so entries walked alone do not bound the time (a pip venv takes ~200; ~1 s here).
MAX_RESOLVE = 100_000
TEMPORARY_FS = {"tmpfs", "ramfs"}


def resolve(root: Root, dest: str, limit: int = 40) -> tuple[Path, list[Path], bool]:
    """Follow `dest` inside the root (links included, `..` as the kernel does).

    Returns the real path (or, when a name on the way is missing, the deepest
    folder that exists: whoever can write it can create the rest), every path
    passed, and whether `dest` exists.
    """
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
        try:
            st = candidate.lstat()
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                return current, visited, False
            raise
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
    return current, visited, True


def untrusted(st: os.stat_result) -> str | None:
    """Why anyone but root could change this file or folder (None: only root can)."""
    if st.st_uid != 0:
        return f"owned by uid {st.st_uid}, not root"
    if st.st_mode & 0o022:
        who = {0o022: "group and others", 0o020: "its group", 0o002: "others"}[st.st_mode & 0o022]
        return f"writable by {who}"
    return None


class Stop(Exception):
    """Nothing further can be determined (an earlier problem says why)."""


class TrustWalk:
    """Paths checked, folders walked, problems found; `stop` ends the whole check."""

    def __init__(self, root: Root) -> None:
        self.root = root
        self.problems: list[str] = []
        self.checked: set[Path] = set()
        self.walked: set[tuple[int, int]] = set()
        self.devices: dict[int, Path] = {}
        self.entries = 0
        self.looked_up = 0
        self.queue: list[tuple[Path, str]] = []

    def dest(self, real: Path) -> str:
        return "/" + real.relative_to(self.root.prefix).as_posix() if real != self.root.prefix else "/"

    def shown(self, dest: str) -> Path:
        return self.root.prefix / dest.lstrip("/")

    def problem(self, text: str) -> None:
        if text not in self.problems:
            self.problems.append(text)

    def tree_or_file(self, dest: str, why: str) -> None:
        real = self.path(dest, why, missing_ok=True)
        if real is not None and real.is_dir():
            self.tree(real, why)

    # -- checking paths ---------------------------------------------------------------------------

    def resolve(self, dest: str) -> tuple[Path, list[Path], bool]:
        """`resolve`, within the budget of names looked up for the whole check."""
        real, visited, found = resolve(self.root, dest)
        self.looked_up += len(visited)
        if self.looked_up > MAX_RESOLVE:
            self.stop(
                f"{self.shown(dest)}: links that take more than {MAX_RESOLVE} name lookups to follow in all; "
                "cannot tell who can change what they lead to"
            )
        return real, visited, found

    def path(self, dest: str, why: str, *, missing_ok: bool = False) -> Path | None:
        """Resolve `dest`, checking every path passed: its real path, or None when it does not exist
        (then the deepest folder that does was checked: only root may create the rest)."""
        try:
            real, visited, found = self.resolve(dest)
        except OSError as exc:
            self.stop(f"{self.shown(dest)}: cannot resolve: {exc.strerror or exc} ({why})")
        for path in visited:
            self.check(path, why)
        if not found:
            if not missing_ok:
                self.stop(f"{self.shown(dest)}: does not exist ({why})")
            return None
        return real

    def check(self, path: Path, why: str) -> None:
        if path in self.checked:
            return
        self.checked.add(path)
        try:
            st = path.lstat()
        except OSError as exc:
            self.stop(f"{path}: cannot read: {exc.strerror}")
        self.entry(path, st, why)

    def entry(self, path: Path, st: os.stat_result, why: str) -> None:
        self.devices.setdefault(st.st_dev, path)
        if stat.S_ISLNK(st.st_mode):
            return
        problem = untrusted(st)
        if problem:
            self.problem(f"{path}: {problem}; its code runs as root at boot" + (f" ({why})" if why else ""))

    def tree(self, top: Path, why: str) -> None:
        """Walk the real folder `top` (queued: links lead to folders that lead to links, without recursion)."""
        self.queue.append((top, why))

    def drain(self) -> None:
        while self.queue:
            self.walk(*self.queue.pop(0))

    def walk(self, top: Path, why: str) -> None:
        """Every entry below the real folder `top`; links met are resolved, checked and queued in turn."""
        st = top.lstat()
        if (st.st_dev, st.st_ino) in self.walked:
            return
        self.walked.add((st.st_dev, st.st_ino))
        links = []
        try:
            for dest, entry in self.root.walk(self.dest(top)):
                self.entries += 1
                if self.entries > MAX_WALK:
                    self.stop(f"{top}: more than {MAX_WALK} files to check; cannot tell who can change them")
                path = self.shown(dest)
                self.checked.add(path)
                if stat.S_ISDIR(entry.st_mode):
                    self.walked.add((entry.st_dev, entry.st_ino))
                if stat.S_ISLNK(entry.st_mode):
                    links.append(dest)
                self.entry(path, entry, why)
        except KvmbridgeError as exc:
            self.stop(str(exc))
        for dest in links:
            self.tree_or_file(dest, f"the link {self.shown(dest)} leads there")

    def head(self, real: Path, what: str) -> bytes:
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            self.stop(f"{what}: cannot read: {exc.strerror}")
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                self.stop(f"{what}: is not a regular file")
            return os.read(fd, 256)
        finally:
            os.close(fd)

    def read(self, real: Path, dest: str) -> str:
        label = self.shown(dest)
        try:
            return read_regular(None, real, 1 << 20, label).decode("utf-8")
        except KvmbridgeError as exc:
            self.stop(str(exc))
        except UnicodeDecodeError:
            self.stop(f"{label}: not UTF-8 text; cannot tell what Python makes of it at boot")
        except OSError as exc:
            self.stop(f"{label}: cannot read: {exc.strerror}")

    def stop(self, text: str) -> NoReturn:
        self.problem(text)
        raise Stop

    # -- temporary file systems ---------------------------------------------------------------

    def temporary(self, skip: Path) -> None:
        """Anything loaded that lies on tmpfs or ramfs is gone after the very reboot the guard guards."""
        types = mount_types()
        skipped = skip.lstat().st_dev if skip.exists() else None
        for device, path in self.devices.items():
            if device == skipped:
                continue
            fstype = types.get(device) or mount_type(path)
            if fstype in TEMPORARY_FS:
                self.problem(
                    f"{path}: lies on a temporary file system ({fstype}); the guard loads it at boot "
                    "and it would be gone after the reboot"
                )


def _mountinfo() -> list[tuple[int, str, str, set[str]]]:
    """(st_dev, mount point, type, per-mount options) of each mount, in mount order."""
    try:
        text = Path("/proc/self/mountinfo").read_text()
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        fields = line.split()
        if " - " not in line or len(fields) < 6 or ":" not in fields[2]:
            continue
        major, minor = fields[2].split(":", 1)
        device = os.makedev(int(major), int(minor))
        out.append((device, _unescape(fields[4]), line.split(" - ", 1)[1].split()[0], set(fields[5].split(","))))
    return out


def mount_types() -> dict[int, str]:
    """File system type by device number, from this process's mountinfo (field 3 is st_dev)."""
    return {device: fstype for device, _, fstype, _ in _mountinfo()}


def mount_of(path: Path) -> tuple[str | None, set[str]]:
    """Type and options of the mount holding `path`, by path: bind mounts share a device but not
    their options, and btrfs subvolumes have an st_dev of their own."""
    real = os.path.realpath(path)
    best: str = ""
    found: tuple[str | None, set[str]] = (None, set())
    for _, point, fstype, options in _mountinfo():
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, found = point, (fstype, options)
    return found


def mount_type(path: Path) -> str | None:
    return mount_of(path)[0]


def _unescape(text: str) -> str:
    return text.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
