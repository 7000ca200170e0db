"""A Jinja bytecode cache that only ever loads code the current user wrote.

Compiled templates are unpickled code: a cache someone else can write is code
execution as whoever renders (root, with a user's HOME under `sudo -E`). So
the folder is opened once, component by component from `/` without
following links, each folder owned by us or root and writable by no one
else, the last two owned by us; every entry is then opened
relative to that descriptor with O_NOFOLLOW and checked with fstat. No name
is resolved twice, so swapping a folder for a link after the check changes
nothing.
"""

from __future__ import annotations

import errno
import os
import stat
from contextlib import suppress
from functools import cache
from typing import BinaryIO

import jinja2

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_ENTRY = 4 << 20


def cache_folder_path() -> str | None:
    """$XDG_CACHE_HOME/kvmbridge/jinja, else $HOME/.cache/kvmbridge/jinja; None when neither is absolute."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.environ.get("HOME", ""), ".cache")
    if not os.path.isabs(base):
        return None
    return os.path.join(base, "kvmbridge", "jinja")


@cache
def open_cache_folder() -> int | None:
    """A descriptor of our private cache folder (made if missing), or None when any folder is not trusted."""
    path = cache_folder_path()
    if path is None:
        return None
    parts = [p for p in os.path.normpath(path).split("/") if p]
    me = os.geteuid()
    try:
        fd = os.open("/", _DIR)
    except OSError:
        return None
    try:
        for i, part in enumerate(parts):
            mine = i >= len(parts) - 2  # kvmbridge/ and jinja/: ours alone
            child = _open_or_make(fd, part)
            os.close(fd)
            fd = child
            st = os.fstat(fd)
            if st.st_uid not in (0, me) or (st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX):
                raise PermissionError(errno.EPERM, "untrusted folder")
            if mine and (st.st_uid != me or st.st_mode & 0o022):
                raise PermissionError(errno.EPERM, "not a folder only we can write")
    except OSError:
        os.close(fd)
        return None
    return fd


def _open_or_make(fd: int, name: str) -> int:
    """Open a folder below a trusted one, making it private (0700) when it is missing."""
    try:
        return os.open(name, _DIR, dir_fd=fd)
    except FileNotFoundError:
        pass
    with suppress(FileExistsError):
        os.mkdir(name, 0o700, dir_fd=fd)
    return os.open(name, _DIR, dir_fd=fd)


class OwnedBytecodeCache(jinja2.BytecodeCache):
    """Jinja's file cache, but every entry opened relative to one trusted descriptor."""

    def __init__(self, dirfd: int) -> None:
        self.dirfd = dirfd

    @staticmethod
    def _name(bucket: jinja2.bccache.Bucket) -> str:
        return f"__jinja2_{bucket.key}.cache"

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            fd = os.open(
                self._name(bucket), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=self.dirfd
            )
        except OSError:
            return
        with os.fdopen(fd, "rb") as handle:
            st = os.fstat(handle.fileno())
            trusted = stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o022
            if trusted and st.st_nlink == 1 and st.st_size <= MAX_ENTRY:
                bucket.load_bytecode(handle)

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        name = self._name(bucket)
        tmp = f".{name}.{os.getpid()}.tmp"
        try:
            fd = os.open(
                tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=self.dirfd
            )
        except OSError:
            return
        try:
            handle: BinaryIO
            with os.fdopen(fd, "wb") as handle:
                bucket.write_bytecode(handle)
            os.replace(tmp, name, src_dir_fd=self.dirfd, dst_dir_fd=self.dirfd)
        except OSError:
            with suppress(OSError):
                os.unlink(tmp, dir_fd=self.dirfd)


def bytecode_cache() -> jinja2.BytecodeCache | None:
    fd = open_cache_folder()
    return OwnedBytecodeCache(fd) if fd is not None else None
