"""The target root: the only place a destination path is joined under `--root`,
and the file primitives (read, atomic write, atomic symlink, remove) built on it.

Mutations all pass through `_mutating`, so tests can inject a failure at the
Nth step on a real temporary tree instead of mocking `os` functions.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from .errors import KvmbridgeError, RefusedError

TMP_SUFFIX = ".kvmbridge-tmp"


@dataclass(frozen=True)
class OnDisk:
    """What is at a destination now. `kind` is missing, file, symlink or other."""

    kind: str
    data: bytes | None = None
    link: str | None = None
    mode: int = 0
    uid: int = 0
    gid: int = 0
    mtime_ns: int = 0

    @property
    def sha256(self) -> str | None:
        if self.data is not None:
            return hashlib.sha256(self.data).hexdigest()
        if self.link is not None:
            return hashlib.sha256(b"link:" + self.link.encode()).hexdigest()
        return None


def sha256_of(data: bytes | None, link: str | None) -> str | None:
    return OnDisk("file" if data is not None else "symlink", data=data, link=link).sha256


class Root:
    """A target system mounted at `prefix` (`/` on a real host)."""

    def __init__(self, prefix: Path) -> None:
        self.prefix = Path(os.path.abspath(prefix))

    @property
    def is_live(self) -> bool:
        return self.prefix == Path("/")

    def path(self, dest: str) -> Path:
        """Join an absolute target path under the root, refusing anything that could escape it."""
        if not dest.startswith("/") or ".." in dest.split("/") or "\0" in dest:
            raise RefusedError(f"{dest}: not a safe absolute target path")
        return self.prefix / dest.lstrip("/")

    def symlinked_folder(self, dest: str) -> Path | None:
        """The first folder on the way to `dest` that is a symlink: writing through it could leave the root."""
        current = self.prefix
        for part in dest.strip("/").split("/")[:-1]:
            current = current / part
            if current.is_symlink():
                return current
        return None

    def read(self, dest: str) -> OnDisk:
        path = self.path(dest)
        try:
            st = path.lstat()
        except FileNotFoundError:
            return OnDisk("missing")
        except NotADirectoryError:
            return OnDisk("other")
        except OSError as exc:
            raise KvmbridgeError(f"{path}: cannot read: {exc.strerror} (run as root?)") from None
        kind, data, link = "other", None, None
        try:
            if stat.S_ISLNK(st.st_mode):
                kind, link = "symlink", os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                kind, data = "file", path.read_bytes()
        except OSError as exc:
            raise KvmbridgeError(f"{path}: cannot read: {exc.strerror} (run as root?)") from None
        return OnDisk(kind, data, link, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns)

    def _mutating(self, what: str, path: Path) -> None:
        """Hook called before every change to the tree; fault-injecting roots override it."""

    def makedirs(self, folder: Path, mode: int = 0o755) -> list[Path]:
        """Create missing folders; returns the ones created, outermost first."""
        created: list[Path] = []
        current = folder
        while not current.exists():
            created.append(current)
            current = current.parent
        made: list[Path] = []
        for path in reversed(created):
            self._mutating("mkdir", path)
            try:
                path.mkdir(mode=mode)
            except FileExistsError:  # another process made it first: not ours to remove later
                if path.is_dir() and not path.is_symlink():
                    continue
                raise
            path.chmod(mode)
            made.append(path)
        return made

    def write_file(self, dest: str, data: bytes, mode: int, uid: int | None = None, gid: int | None = None) -> None:
        """Temp file in the same folder, fsync, mode and owner, rename, fsync the folder."""
        path = self.path(dest)
        tmp = path.with_name(f".{path.name}{TMP_SUFFIX}")
        self._mutating("write", path)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
            os.fchmod(fd, mode)
            if uid is not None and gid is not None and os.geteuid() == 0:
                os.fchown(fd, uid, gid)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        self._rename(tmp, path)

    def restore_by_link(self, dest: str, source: str, mode: int, uid: int | None, gid: int | None) -> None:
        """Put `source`'s inode at `dest` atomically without writing data: works on a full disk.

        Only for undoing a failed transaction, whose backup set is discarded
        afterwards, so the shared inode is never a backup anyone relies on.
        """
        path = self.path(dest)
        tmp = path.with_name(f".{path.name}{TMP_SUFFIX}")
        self._mutating("link", path)
        tmp.unlink(missing_ok=True)
        os.link(self.path(source), tmp)
        try:
            os.chmod(tmp, mode)
            if uid is not None and gid is not None and os.geteuid() == 0:
                os.chown(tmp, uid, gid)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self._rename(tmp, path)

    def write_symlink(self, dest: str, link: str) -> None:
        path = self.path(dest)
        tmp = path.with_name(f".{path.name}{TMP_SUFFIX}")
        self._mutating("symlink", path)
        tmp.unlink(missing_ok=True)
        os.symlink(link, tmp)
        self._rename(tmp, path)

    def _rename(self, tmp: Path, path: Path) -> None:
        try:
            self._mutating("rename", path)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(path.parent)

    def remove(self, dest: str) -> None:
        path = self.path(dest)
        if not path.is_symlink() and not path.exists():
            return
        self._mutating("remove", path)
        path.unlink()
        fsync_dir(path.parent)

    def remove_stale_temps(self, folders: set[str]) -> None:
        """Temp files a killed run left behind; their names match no loader's glob."""
        for folder in folders:
            directory = self.path(folder)
            if directory.is_dir() and not directory.is_symlink():
                for tmp in directory.glob(f".*{TMP_SUFFIX}"):
                    tmp.unlink(missing_ok=True)


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
