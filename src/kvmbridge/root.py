"""The target root: the one seam through which kvmbridge reads or changes a tree.

Every read, write, rename, delete, utime, mkdir, rmdir and lock under a root
goes through `Root`, which walks each folder from the root's own descriptor
with `openat(O_NOFOLLOW | O_DIRECTORY)`, the way systemd's `chase()` and
runc's `securejoin` do: a symbolic link anywhere below the root is never
followed, so no path can leave the tree, whatever a file or our own metadata
says. The root itself may be a link (`/mnt/image` -> ...).

Mutations all pass through `_mutating`, so tests can inject a failure (or a
SIGKILL) at the Nth step on a real temporary tree instead of mocking `os`.

Split by job in three layers, one class each, so that one object stays the
seam: `rootwalk.RootWalk` (path rules, the no-follow folder descent, bounded
reads of one file), `rootread.RootReader` (everything that only reads) and
`Root` here, which adds everything that changes the tree or locks it. The
names other modules import from `root` are re-exported from their new homes.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

from .errors import RefusedError
from .interrupts import hold
from .rootread import Interrupted, OnDisk, RootReader, sha256_of
from .rootwalk import DIR_FLAGS, MAX_READ, TooLarge, linked_error, read_regular, safe_parts

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


class Root(RootReader):
    """A target system mounted at `prefix` (`/` on a real host): `RootReader`'s reads, and the changes and lock."""

    @_names_errors
    def makedirs(self, folder: str, mode: int = 0o755, made: list[str] | None = None) -> list[str]:
        """Create missing folders of `folder`; returns the ones this call made, outermost first.

        `made` is filled as they are made: a caller cut short after the first can still remove them."""
        made = [] if made is None else made
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
        self._change("write", path)
        _unlink_if_not_dir(dirfd, tmp)
        # One `try` from the open to the rename: a signal raised between any two steps (Python runs
        # handlers between bytecodes) never leaves the temporary file behind (ATTACK9c F6).
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dirfd)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                _finish(fd, mode, uid, gid, mtime_ns=mtime_ns, sync=sync)
            finally:
                os.close(fd)
            self._rename(dirfd, tmp, name, path, sync=sync)
        except BaseException:
            _unlink_if_not_dir(dirfd, tmp)  # gone already once renamed
            raise

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
            self._change("link", path)
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
        self._change("symlink", path)
        _unlink_if_not_dir(dirfd, tmp)
        os.symlink(link, tmp, dir_fd=dirfd)
        self._rename(dirfd, tmp, name, path, sync=sync)

    def _rename(self, dirfd: int, tmp: str, name: str, path: Path, *, sync: bool = True) -> None:
        try:
            self._change("rename", path)
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
                self._change("remove", path)
                os.unlink(name, dir_fd=dirfd)
                _sync_landed(dirfd, path)
        except FileNotFoundError:
            return

    def remove_empty(self, folders: Iterable[str]) -> None:
        """Best effort, deepest first as given: an empty folder left behind is harmless, so a failure here is none."""
        for folder in folders:
            with suppress(OSError):
                self.rmdir(folder)

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
                self._change("rmdir", path)
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
        """Hold an exclusive lock on file `dest` (made if missing); refused when someone else holds it.

        A lock file that was never made leaves no folder made for it: the refusal, or the
        interruption, says "nothing was changed" (ATTACK9e F5). A lock file, once made, stays:
        removing one another run may have opened would let two runs hold "the" lock.
        """
        path = self.path(dest)
        made: list[str] = []
        try:
            self.makedirs(os.path.dirname(dest), made=made)
            with self._parent(dest) as (dirfd, name):
                self._change("lock", path)
                fd = os.open(
                    name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600, dir_fd=dirfd
                )
        except OSError as exc:
            hold()  # undoing: a signal now must not cut the clean-up short, nor be taken for a failed rmdir
            self.remove_empty(reversed(made))
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
