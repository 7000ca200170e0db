"""Reading a root: what is at a destination, a folder's entries, the whole tree, a glob.

Split from `root` by job: every method here only reads, through `RootWalk`'s
no-follow descent, so `root.Root` (which adds the changes and the lock on top
of this class) is the one place that writes. `Interrupted` lives here because
the read side is where it must never be mistaken for a read error.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import KvmbridgeError
from .rootwalk import DIR_FLAGS, MAX_READ, NotRegular, RootWalk, TooLarge, kind_of, read_regular_stat, safe_parts


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


class RootReader(RootWalk):
    """The read side of `Root`: never follows a link, never changes the tree."""

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
            fd = self._root_fd()
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
