"""The target root: the one seam through which kvmbridge reads or changes a tree.

Every read, write, rename, delete, utime, mkdir, rmdir and lock under a root
goes through `Root`, which walks each folder from the root's own descriptor
with `openat(O_NOFOLLOW | O_DIRECTORY)`, the way systemd's `chase()` and
runc's `securejoin` do: a symbolic link anywhere below the root is never
followed, so no path can leave the tree, whatever a file or our own metadata
says. The root itself may be a link (`/mnt/image` -> ...).

Mutations all pass through `_mutating`, so tests can inject a failure (or a
SIGKILL) at the Nth step on a real temporary tree instead of mocking `os`.

The folder walk (path rules, the no-follow descent, bounded reads of one
file) is `rootwalk.RootWalk`, which `Root` extends.
"""

from __future__ import annotations

import errno
import fcntl
import fnmatch
import functools
import hashlib
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from .errors import KvmbridgeError, RefusedError
from .rootwalk import (
    DIR_FLAGS,
    MAX_READ,
    NotRegular,
    RootWalk,
    TooLarge,
    kind_of,
    linked_error,
    read_regular,
    read_regular_stat,
    safe_parts,
)

__all__ = [
    "MAX_READ",
    "TMP_SUFFIX",
    "Interrupted",
    "Landed",
    "OnDisk",
    "Root",
    "TooLarge",
    "linked_error",
    "read_regular",
    "safe_parts",
    "sha256_of",
]

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


class Interrupted(OSError):
    """A signal asked us to stop mid-transaction: undone like any failed write, never mistaken for a read error."""


class Landed(OSError):
    """The change itself was made (renamed or removed), only making it durable failed.

    Every other error from a change to the tree (not `Interrupted`) means the
    destination was left as it was, so an undo never reports it as changed.
    """


F = TypeVar("F", bound=Callable[..., Any])


def _names_errors(method: F) -> F:
    """Errors from `*at()` calls name a bare file name: report the path under the root instead."""

    @functools.wraps(method)
    def wrapper(self: Root, dest: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, dest, *args, **kwargs)
        except OSError as exc:
            if isinstance(exc, Interrupted) or (exc.filename and str(exc.filename).startswith("/")):
                raise
            raise (Landed if isinstance(exc, Landed) else OSError)(
                exc.errno, exc.strerror, str(self.path(dest))
            ) from None

    return wrapper  # type: ignore[return-value]


class Root(RootWalk):
    """A target system mounted at `prefix` (`/` on a real host)."""

    def symlinked_folder(self, dest: str) -> Path | None:
        """The first folder on the way to `dest` that is a symlink (or not a folder): never written through."""
        parts = safe_parts(dest)
        try:
            with self._folder(parts[:-1]):
                return None
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP and exc.filename:
                return Path(exc.filename)
            raise

    def kind(self, dest: str) -> str:
        """missing, file, symlink, dir or other, without following a link; `blocked` behind a linked folder."""
        try:
            with self._parent(dest) as (fd, name):
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return "missing"
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return "blocked"
            raise self._unreadable(dest, exc) from None
        return kind_of(st.st_mode)

    def _unreadable(self, dest: str, exc: OSError) -> Exception:
        if isinstance(exc, Interrupted):
            return exc
        return KvmbridgeError(f"{self.path(dest)}: cannot read: {exc.strerror} (run as root?)")

    # -- reading --------------------------------------------------------------------------------

    def read(self, dest: str, limit: int = MAX_READ) -> OnDisk:
        """What is at `dest`, never following a link; a link's text is read, not its target."""
        try:
            with self._parent(dest) as (fd, name):
                return self._read_at(fd, name, dest, limit)
        except FileNotFoundError:
            return OnDisk("missing")
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return OnDisk("other")
            raise self._unreadable(dest, exc) from None

    def _read_at(self, fd: int, name: str, dest: str, limit: int) -> OnDisk:
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return OnDisk("missing")
        meta = (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns)
        if stat.S_ISLNK(st.st_mode):
            return OnDisk("symlink", None, os.readlink(name, dir_fd=fd), *meta)
        if not stat.S_ISREG(st.st_mode):
            return OnDisk("other", None, None, *meta)
        return self._read_file_at(fd, name, dest, limit)

    def _read_file_at(self, fd: int, name: str, dest: str, limit: int) -> OnDisk:
        """A regular file, its metadata from the descriptor read (not from an earlier stat of the name)."""
        data, st = read_regular_stat(fd, name, limit, lambda: self.path(dest))
        return OnDisk("file", data, None, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns)

    def listdir(self, dest: str) -> list[tuple[str, str]]:
        """(name, kind) of each entry of folder `dest` ("/" for the root), sorted; [] when missing."""
        parts = [] if dest == "/" else safe_parts(dest)
        try:
            with self._folder(parts) as fd:
                out = []
                for name in sorted(os.listdir(fd)):
                    try:
                        out.append((name, kind_of(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode)))
                    except FileNotFoundError:
                        continue
                return out
        except FileNotFoundError:
            return []
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return []
            raise self._unreadable(dest, exc) from None

    def snapshot(self, limit: int = MAX_READ) -> dict[str, OnDisk]:
        """Every non-folder entry of the whole root as `read` sees it, in `listdir` order (folders in place).

        A file past `limit` is listed as kind "other", not read: a fleet check must still say what
        to do with it (remove or replace) rather than stop.

        One descriptor per folder, each opened from its parent without following
        a link: a fleet check reads thousands of golden trees this way.
        """
        out: dict[str, OnDisk] = {}
        try:
            fd = os.open(self.prefix, self._open_prefix)
        except FileNotFoundError:
            return out
        except OSError as exc:
            if exc.errno in (errno.ENOTDIR, errno.ELOOP):
                return out
            raise self._unreadable("/", exc) from None
        self._snapshot_at(fd, "", limit, out)
        return out

    def _snapshot_at(self, fd: int, folder: str, limit: int, out: dict[str, OnDisk]) -> None:
        try:
            with os.scandir(fd) as it:
                # The entry's type (d_type) says which call to make; the call itself re-checks without
                # following links, so an entry swapped since the listing is read as what it is now.
                entries = sorted(
                    (e.name, e.is_dir(follow_symlinks=False), e.is_file(follow_symlinks=False)) for e in it
                )
            for name, is_dir, is_file in entries:
                dest = f"{folder}/{name}"
                if is_file:
                    try:
                        out[dest] = self._read_file_at(fd, name, dest, limit)
                        continue
                    except NotRegular:
                        pass
                    except TooLarge:  # listed, not read: an extra one is a removal, one in place an update
                        out[dest] = OnDisk("other")
                        continue
                    except FileNotFoundError:
                        out[dest] = OnDisk("missing")
                        continue
                if not is_dir:
                    try:
                        out[dest] = self._read_at(fd, name, dest, limit)
                    except TooLarge:
                        out[dest] = OnDisk("other")
                    continue
                try:
                    child = os.open(name, DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    continue
                self._snapshot_at(child, dest, limit, out)
        except OSError as exc:
            raise self._unreadable(folder or "/", exc) from None
        finally:
            os.close(fd)

    def walk(self, dest: str, max_depth: int = 64) -> Iterator[tuple[str, os.stat_result]]:
        """Every entry below folder `dest` ("/" for the root) with its `lstat`, folders before their content.

        Each folder is opened from its parent's descriptor without following a
        link, like `snapshot`: a link is reported as itself, never entered, and a
        folder swapped for a link mid-walk is skipped. A missing `dest` yields
        nothing; folders nested deeper than `max_depth` are an error, not a
        stack overflow or a descriptor per level without end.
        """
        parts = [] if dest == "/" else safe_parts(dest)
        try:
            with self._folder(parts) as top:
                stack = [(os.dup(top), "" if dest == "/" else dest, iter(sorted(os.listdir(top))))]
                try:
                    while stack:
                        fd, folder, names = stack[-1]
                        name = next(names, None)
                        if name is None:
                            os.close(stack.pop()[0])
                            continue
                        try:
                            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                        except FileNotFoundError:
                            continue
                        yield f"{folder}/{name}", st
                        if not stat.S_ISDIR(st.st_mode):
                            continue
                        if len(stack) >= max_depth:
                            raise KvmbridgeError(
                                f"{self.path(f'{folder}/{name}')}: folders nested more than {max_depth} deep; "
                                "refusing to walk further"
                            )
                        try:
                            child = os.open(name, DIR_FLAGS, dir_fd=fd)
                        except OSError as exc:
                            if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                                continue
                            raise
                        try:
                            stack.append((child, f"{folder}/{name}", iter(sorted(os.listdir(child)))))
                        except OSError:
                            os.close(child)
                            raise
                finally:
                    for fd, _, _ in stack:
                        os.close(fd)
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return
            raise self._unreadable(dest, exc) from None

    def glob(self, pattern: str) -> list[str]:
        """Destinations matching a shell pattern, component by component, never through a link."""
        found = ["/"]
        parts = safe_parts(pattern)
        for i, part in enumerate(parts):
            matches = []
            for base in found:
                folder = base.rstrip("/")
                for name, kind in self.listdir(base):
                    if fnmatch.fnmatchcase(name, part) and (not name.startswith(".") or part.startswith(".")):
                        matches.append((f"{folder}/{name}", kind))
            found = [path for path, kind in matches if i == len(parts) - 1 or kind == "dir"]
        return sorted(found)

    # -- changing -------------------------------------------------------------------------------

    @_names_errors
    def makedirs(self, folder: str, mode: int = 0o755) -> list[str]:
        """Create missing folders of `folder`; returns the ones this call made, outermost first."""
        made: list[str] = []
        with self._folder_made(safe_parts(folder), made, True, mode):
            return made

    @_names_errors
    def write_file(
        self,
        dest: str,
        data: bytes,
        mode: int,
        uid: int | None = None,
        gid: int | None = None,
        *,
        mtime_ns: int | None = None,
    ) -> None:
        """Temp file in the same folder, fsync, mode, owner and time, rename, fsync the folder."""
        with self._parent(dest) as (dirfd, _):
            self._write_at(dirfd, dest, data, mode, uid=uid, gid=gid, mtime_ns=mtime_ns, sync=True)

    @contextmanager
    def opened_folder(self, folder: str) -> Iterator[int]:
        """The descriptor of `folder` (made where missing), reached without following any link.

        For writing many files into one folder (`write_file_at`): the walk is done
        once, and a link swapped in on the way afterwards cannot redirect the
        writes, which go to the folder this descriptor holds.
        """
        try:
            with self._folder_made(safe_parts(folder), [], True, 0o755) as fd:
                yield fd
        except OSError as exc:
            if isinstance(exc, Interrupted) or (exc.filename and str(exc.filename).startswith("/")):
                raise
            raise OSError(exc.errno, exc.strerror, str(self.path(folder))) from None

    @_names_errors
    def write_file_at(self, dest: str, dirfd: int, data: bytes, mode: int, *, sync: bool) -> None:
        """`write_file` into `dirfd`, the `opened_folder` of `dest`'s folder. `sync=False` (output trees,
        not a host's configuration): no fsync per file or rename; the caller syncs each folder once."""
        self._write_at(dirfd, dest, data, mode, uid=None, gid=None, mtime_ns=None, sync=sync)

    def _write_at(
        self,
        dirfd: int,
        dest: str,
        data: bytes,
        mode: int,
        *,
        uid: int | None,
        gid: int | None,
        mtime_ns: int | None,
        sync: bool,
    ) -> None:
        path = self.path(dest)
        name = safe_parts(dest)[-1]
        tmp = f".{name}{TMP_SUFFIX}"
        self._mutating("write", path)
        _unlink_if_not_dir(dirfd, tmp)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dirfd)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            _finish(fd, mode, uid, gid, mtime_ns=mtime_ns, sync=sync)
        except BaseException:
            os.close(fd)
            _unlink_if_not_dir(dirfd, tmp)
            raise
        os.close(fd)
        self._rename(dirfd, tmp, name, path, sync=sync)

    @_names_errors
    def restore_by_link(
        self, dest: str, source: str, mode: int, uid: int | None, gid: int | None, *, mtime_ns: int | None = None
    ) -> None:
        """Put `source`'s inode at `dest` atomically without writing data: works on a full disk.

        Only for undoing a failed transaction, whose backup set is discarded
        afterwards (or whose copy is made separate again), so the shared inode
        is never a backup anyone relies on.
        """
        path = self.path(dest)
        with self._parent(source) as (srcfd, srcname), self._parent(dest) as (dirfd, name):
            tmp = f".{name}{TMP_SUFFIX}"
            self._mutating("link", path)
            _unlink_if_not_dir(dirfd, tmp)
            os.link(srcname, tmp, src_dir_fd=srcfd, dst_dir_fd=dirfd, follow_symlinks=False)
            try:
                fd = os.open(tmp, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dirfd)
                try:
                    if not stat.S_ISREG(os.fstat(fd).st_mode):
                        raise OSError(errno.EINVAL, "backup copy is not a regular file", str(path))
                    _finish(fd, mode, uid, gid, mtime_ns=mtime_ns, sync=False)
                finally:
                    os.close(fd)
            except BaseException:
                _unlink_if_not_dir(dirfd, tmp)
                raise
            self._rename(dirfd, tmp, name, path)

    @_names_errors
    def write_symlink(self, dest: str, link: str) -> None:
        with self._parent(dest) as (dirfd, _):
            self._symlink_at(dirfd, dest, link, sync=True)

    @_names_errors
    def write_symlink_at(self, dest: str, dirfd: int, link: str, *, sync: bool) -> None:
        """`write_symlink` into `dirfd`, the `opened_folder` of `dest`'s folder (see `write_file_at`)."""
        self._symlink_at(dirfd, dest, link, sync=sync)

    def _symlink_at(self, dirfd: int, dest: str, link: str, *, sync: bool) -> None:
        path = self.path(dest)
        name = safe_parts(dest)[-1]
        tmp = f".{name}{TMP_SUFFIX}"
        self._mutating("symlink", path)
        _unlink_if_not_dir(dirfd, tmp)
        os.symlink(link, tmp, dir_fd=dirfd)
        self._rename(dirfd, tmp, name, path, sync=sync)

    def _rename(self, dirfd: int, tmp: str, name: str, path: Path, *, sync: bool = True) -> None:
        try:
            self._mutating("rename", path)
            os.replace(tmp, name, src_dir_fd=dirfd, dst_dir_fd=dirfd)
        except BaseException:
            _unlink_if_not_dir(dirfd, tmp)
            raise
        if sync:
            _sync_landed(dirfd, path)

    @_names_errors
    def remove(self, dest: str) -> None:
        """Remove a file or link (never a folder); nothing to do when it is missing."""
        path = self.path(dest)
        try:
            with self._parent(dest) as (dirfd, name):
                try:
                    st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
                except FileNotFoundError:
                    return
                if stat.S_ISDIR(st.st_mode):
                    raise IsADirectoryError(errno.EISDIR, "is a folder", str(path))
                self._mutating("remove", path)
                os.unlink(name, dir_fd=dirfd)
                _sync_landed(dirfd, path)
        except FileNotFoundError:
            return

    @_names_errors
    def rmdir(self, dest: str) -> bool:
        """Remove an empty folder; False when it is missing, not empty or not a folder."""
        path = self.path(dest)
        try:
            with self._parent(dest) as (dirfd, name):
                child = os.open(name, DIR_FLAGS, dir_fd=dirfd)
                try:
                    if os.listdir(child):
                        return False
                finally:
                    os.close(child)
                self._mutating("rmdir", path)
                os.rmdir(name, dir_fd=dirfd)
                return True
        except FileNotFoundError:
            return False
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ELOOP, errno.ENOTDIR):
                return False
            raise

    def remove_tree(self, dest: str) -> None:
        """Remove folder `dest` and everything in it, links removed as links (never followed)."""
        for name, kind in self.listdir(dest):
            child = f"{dest}/{name}"
            if kind == "dir":
                self.remove_tree(child)
            else:
                self.remove(child)
        self.rmdir(dest)

    def remove_stale_temps(self, folders: set[str]) -> None:
        """Temp files a killed run left behind; their names match no loader's glob."""
        for folder in sorted(folders):
            for name, kind in self.listdir(folder):
                if name.startswith(".") and name.endswith(TMP_SUFFIX) and kind != "dir":
                    self.remove(f"{folder}/{name}")

    def probe_lock(self, dest: str) -> None:
        """Refuse as `lock` would, without making the file or holding it: for the dry run's decision.

        A shared non-blocking flock fails only while someone holds the exclusive one.
        """
        path = self.path(dest)
        try:
            with self._parent(dest) as (dirfd, name):
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dirfd)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise _lock_open_refusal(exc, path) from None
        try:
            _flock_regular(fd, path, fcntl.LOCK_SH)
        finally:
            os.close(fd)

    @contextmanager
    def lock(self, dest: str) -> Iterator[None]:
        """Hold an exclusive lock on file `dest` (made if missing); refused when someone else holds it."""
        path = self.path(dest)
        try:
            self.makedirs(os.path.dirname(dest))
            with self._parent(dest) as (dirfd, name):
                self._mutating("lock", path)
                fd = os.open(
                    name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600, dir_fd=dirfd
                )
        except OSError as exc:
            raise _lock_open_refusal(exc, path) from None
        try:
            _flock_regular(fd, path, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _lock_open_refusal(exc: OSError, path: Path) -> Exception:
    """The refusal for a lock file that cannot be opened; an interruption stays itself."""
    if isinstance(exc, Interrupted):
        return exc
    where = exc.filename if exc.filename and str(exc.filename).startswith("/") else path
    return RefusedError(f"{where}: cannot create the lock file ({exc.strerror}); nothing was changed")


def _flock_regular(fd: int, path: Path, mode: int) -> None:
    """Take `mode` on the opened lock without waiting: a lock that is not a regular file or is held is a refusal."""
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        raise RefusedError(f"{path}: the lock is not a regular file; nothing was changed")
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        raise RefusedError(f"{path}: another kvmbridge install or rollback holds the lock; try again later") from None


def _sync_landed(dirfd: int, path: Path) -> None:
    try:
        os.fsync(dirfd)
    except OSError as exc:
        if isinstance(exc, Interrupted):
            raise
        raise Landed(exc.errno, exc.strerror, str(path)) from None


def _unlink_if_not_dir(dirfd: int, name: str) -> None:
    try:
        st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=dirfd)


def _finish(fd: int, mode: int, uid: int | None, gid: int | None, *, mtime_ns: int | None, sync: bool = True) -> None:
    if sync:
        os.fsync(fd)
    os.fchmod(fd, mode)
    if uid is not None and gid is not None and os.geteuid() == 0:
        os.fchown(fd, uid, gid)
    if mtime_ns is not None:
        os.utime(fd, ns=(mtime_ns, mtime_ns))
