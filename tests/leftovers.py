"""Who owns each lab resource, so a later session can sweep what a killed test run left behind.

A test run killed mid-way (SIGKILL, a CI time-out) leaves network namespaces,
overlay mounts, scratch folders and cgroups. Other engineers run the labs on
the same machine at the same time, so nothing is swept by its name alone:
every resource is claimed here *before* it is made (a record naming its owner:
pid, the pid's start time and the boot), and released once it is gone. The
sweep removes only what a record says belongs to a process that no longer
runs. A resource without a record (an older run's, someone else's) is never
touched.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

REGISTRY = Path(os.environ.get("KVMBRIDGE_LAB_OWNERS", "/var/tmp/kvmbridge-lab-owners"))
_NETNS = re.compile(r"kb[lt]-[0-9a-f]{6}(-[0-9a-z]{1,8})?")
_CGROUP = re.compile(r"/sys/fs/cgroup(/[a-z_,]+)?/kvmbridge-lab/kbl-[0-9a-f]{6}(-[0-9a-z]{1,8})?")


@dataclass(frozen=True)
class Owner:
    pid: int
    start: int  # the pid's start time in clock ticks since boot: a reused pid has another
    boot: str

    @classmethod
    def of(cls, pid: int) -> Owner | None:
        start = _start_time(pid)
        return None if start is None else cls(pid, start, _boot_id())

    def alive(self) -> bool:
        return self.boot == _boot_id() and _start_time(self.pid) == self.start


def _boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def _start_time(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(text.rsplit(")", 1)[1].split()[19])  # field 22 of stat(5); the name may hold spaces


def me() -> Owner:
    owner = Owner.of(os.getpid())
    assert owner is not None
    return owner


def _record(registry: Path, kind: str, name: str) -> Path:
    digest = hashlib.sha256(f"{kind}\0{name}".encode()).hexdigest()[:20]
    return registry / f"{kind}-{digest}.json"


def _registry(registry: Path) -> Path:
    """Our own folder: made 0700 by root if missing; a link or someone else's folder is never trusted."""
    with contextlib.suppress(FileExistsError):
        registry.mkdir(mode=0o700, parents=True)
    st = registry.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise AssertionError(f"{registry}: not a folder of ours (a link, another owner, or writable by others)")
    return registry


def claim(kind: str, name: str, *, registry: Path | None = None, owner: Owner | None = None) -> None:
    """Record `owner` (default: this process) as the owner of a resource about to be made."""
    assert kind in ("netns", "dir", "cgroup"), kind
    folder = _registry(registry or REGISTRY)
    body = json.dumps({"kind": kind, "name": name, "owner": asdict(owner or me())})
    tmp = folder / f".{secrets.token_hex(8)}.tmp"
    tmp.write_text(body)
    tmp.replace(_record(folder, kind, name))


def release(kind: str, name: str, *, registry: Path | None = None) -> None:
    """The resource is gone: forget it."""
    with contextlib.suppress(FileNotFoundError):
        _record(registry or REGISTRY, kind, name).unlink()


def remove_owned_dir(path: Path) -> None:
    """Remove a folder `owned_dir` made (its mounts already undone by its user) and forget it."""
    shutil.rmtree(path, ignore_errors=True)
    if not path.exists():
        release("dir", str(path))


def owned_dir(parent: Path, prefix: str) -> Path:
    """A fresh folder `parent/prefix<random>`, claimed before it exists (mkdtemp's job, plus the record)."""
    path = parent / f"{prefix}{secrets.token_hex(5)}"
    claim("dir", str(path))
    path.mkdir(mode=0o700)
    return path


def sweep(registry: Path | None = None) -> list[str]:
    """Remove every recorded resource whose owner is dead; returns what was removed, as `kind name`."""
    folder = registry or REGISTRY
    if not folder.is_dir():
        return []
    folder = _registry(folder)
    removed = []
    with _locked(folder):
        stale = []
        for record in folder.glob("*.json"):
            try:
                body = json.loads(record.read_text())
                kind, name, owner = body["kind"], body["name"], Owner(**body["owner"])
            except (OSError, ValueError, KeyError, TypeError):
                continue  # half-written or foreign: not ours to judge
            if kind in _ORDER and not owner.alive():
                stale.append((_ORDER.index(kind), kind, name, record))
        # Namespaces first (that kills what runs in them), then cgroups, then folders (unmounted first).
        for _, kind, name, record in sorted(stale):
            if _remove(kind, name):
                removed.append(f"{kind} {name}")
                record.unlink(missing_ok=True)
    return removed


_ORDER = ("netns", "cgroup", "dir")


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Two sessions starting at once sweep one after the other."""
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _remove(kind: str, name: str) -> bool:
    """True once the resource is gone; False leaves the record for the next sweep."""
    if kind == "netns":
        return _remove_netns(name)
    if kind == "cgroup":
        return _remove_cgroup(Path(name))
    if kind == "dir":
        return _remove_dir(Path(name))
    return False


def _remove_netns(name: str) -> bool:
    if not _NETNS.fullmatch(name):
        return False
    delete_namespace(name)
    return not Path(f"/run/netns/{name}").exists()


def delete_namespace(name: str) -> None:
    """Kill every process in the namespace, then delete it (no error if it is gone) and forget it."""
    pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True, check=False).stdout
    for pid in pids.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
    if not Path(f"/run/netns/{name}").exists():
        release("netns", name)


def _remove_cgroup(path: Path) -> bool:
    if not _CGROUP.fullmatch(str(path)):
        return False
    remove_cgroup(path)
    return not path.is_dir()


def remove_cgroup(path: Path, seconds: float = 10) -> None:
    """Kill what is left in it (an orphaned container), then rmdir bottom-up, until it is gone or `seconds` pass."""
    deadline = time.monotonic() + seconds
    while path.is_dir():
        for procs in path.rglob("cgroup.procs"):
            with contextlib.suppress(OSError, ValueError):
                for pid in procs.read_text().split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
        for child in sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                child.rmdir()
        with contextlib.suppress(OSError):
            path.rmdir()
        if not path.is_dir() or time.monotonic() > deadline:
            break
        time.sleep(0.1)  # killed tasks take a moment to leave the cgroup
    if not path.is_dir():
        release("cgroup", str(path))


def mounts_under(path: Path) -> list[Path]:
    """Mount points at or below `path` in our mount namespace, deepest first."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = Path(line.split()[4].encode().decode("unicode_escape"))
        if point == path or path in point.parents:
            found.append(point)
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def _remove_dir(path: Path) -> bool:
    """Unmount everything below, then remove; never removes through a mount still in place."""
    if not path.is_absolute() or not path.name.startswith("kvmbridge-") or os.path.normpath(path) != str(path):
        return False
    try:
        st = path.lstat()
    except FileNotFoundError:
        return True
    if not stat.S_ISDIR(st.st_mode):
        return False
    for point in mounts_under(path):
        if subprocess.run(["umount", str(point)], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(point)], capture_output=True, check=False)
    if mounts_under(path):
        return False
    try:
        shutil.rmtree(path)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            return False
    return True
