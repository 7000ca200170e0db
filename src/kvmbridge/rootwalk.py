"""Walking a root's folders with openat, and reading one regular file with a bound: the lowest layer of `Root`.

Split from `root` by job. Everything here answers "which folder, reached how":
the path rules (`safe_parts`), the no-follow `O_DIRECTORY` descent from the
root's own descriptor, and the bounded read of one regular file that the
reading side and the profile and guard loaders share. Nothing here knows what
a caller does with the folder it reaches; `rootread` reads through it and
`root` changes the tree through it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import KvmbridgeError, RefusedError
from .interrupts import checkpoint

# Larger than any configuration file kvmbridge manages: a 50 GB sparse file is an error, not a MemoryError.
MAX_READ = 8 << 20
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def safe_parts(dest: str) -> list[str]:
    """The components of an absolute target path; `..`, `.`, empty parts and NUL are refused."""
    parts = dest.split("/")
    if not dest.startswith("/") or "\0" in dest or any(p in ("", ".", "..") for p in parts[1:]) or dest == "/":
        raise RefusedError(f"{dest!r}: not a safe absolute target path")
    return parts[1:]


def linked_error(path: Path) -> OSError:
    return OSError(errno.ELOOP, "is a symlink or not a folder; refusing to go through it", str(path))


class RootWalk:
    """A target system mounted at `prefix` (`/` on a real host), its folders reached without following links."""

    def __init__(self, prefix: Path, *, prefix_may_be_link: bool = True) -> None:
        """`prefix_may_be_link=False` (golden trees): the prefix's own last name must not be a link."""
        self.prefix = Path(os.path.abspath(prefix))
        self._open_prefix = DIR_FLAGS if not prefix_may_be_link else DIR_FLAGS & ~os.O_NOFOLLOW
        self._may_be_link = prefix_may_be_link
        self._fd: int | None = None
        self._judged = False
        self._redirectable: str | None = None

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)  # type: ignore[arg-type]

    def _root_fd(self) -> int:
        """A fresh descriptor of the root folder, opened from the one pinned at first use.

        The root is looked up by name once per `Root`: swapping the folder for a link while we
        work (ATTACK9c F7: 17 of 20 installs wrote into the other tree) changes nothing after that.
        """
        checkpoint()
        if self._fd is None:
            self._fd = os.open(self.prefix, self._open_prefix)
        return os.open(".", DIR_FLAGS, dir_fd=self._fd)

    def redirectable(self) -> str | None:
        """Why someone other than root could have swapped the root's path for a link (None: nobody).

        Root changes no such tree (`_change`): the pin holds for one run, not for the next. Judged
        once, on the first change (reads, the bulk of a fleet check, never pay for it): the path is
        walked again from `/` by `_trusted_walk`, which must reach the very folder pinned.
        """
        if self._judged:
            return self._redirectable
        try:
            os.close(self._root_fd())
        except OSError as exc:
            if exc.errno == errno.EINTR:  # a signal the transaction acts on (`checkpoint`): never swallowed
                raise
            return None  # no root yet: judged once it exists, before any change inside it
        assert self._fd is not None
        self._judged = True
        if os.geteuid() != 0:
            return None
        fd, problem = _trusted_walk(self.prefix, self._may_be_link)
        try:
            walked, pinned = os.fstat(fd), os.fstat(self._fd)
        finally:
            os.close(fd)
        if problem is None and (walked.st_dev, walked.st_ino) != (pinned.st_dev, pinned.st_ino):
            problem = f"{self.prefix}: changed while kvmbridge looked it up (is someone swapping it?)"
        self._redirectable = problem
        return problem

    @property
    def is_live(self) -> bool:
        return self.prefix == Path("/")

    def path(self, dest: str) -> Path:
        """`dest` under the root, for messages only: nothing is ever opened by this joined name."""
        safe_parts(dest)
        return self.prefix / dest.lstrip("/")

    # -- walking --------------------------------------------------------------------------------

    def _make_prefix(self) -> None:
        """A missing root (`render -o NEW`, `install --root NEW`) is made one folder at a time from its
        deepest existing folder, which as root is judged first like the root itself: a link another
        user planted on the way is never followed to make folders elsewhere (ATTACK9d F3)."""
        if os.geteuid() != 0:
            os.makedirs(self.prefix, exist_ok=True)
            return
        existing, names = self.prefix, list[str]()
        while not os.path.lexists(existing):
            existing, names = existing.parent, [existing.name, *names]
        fd, problem = _trusted_walk(existing, may_be_link=True)
        try:
            # The folder that will hold the first new one is judged too, holding root's entry.
            problem = problem or _swappable(existing, os.fstat(fd), names[0], 0)
            if problem is not None:
                raise RefusedError(f"{problem}; as root, kvmbridge does not make {self.prefix} there")
            for name in names:
                with contextlib.suppress(FileExistsError):  # made meanwhile: judged before any change inside
                    os.mkdir(name, 0o755, dir_fd=fd)
                fd, parent = os.open(name, DIR_FLAGS, dir_fd=fd), fd
                os.close(parent)
        finally:
            os.close(fd)

    def _change(self, what: str, path: Path) -> None:
        """Called before every change to the tree: the refusal of a redirectable root, then the hook."""
        if self._fd is not None and self.redirectable() is not None:
            raise RefusedError(
                f"{self._redirectable}; as root, kvmbridge changes nothing in {self.prefix} "
                "(move the tree somewhere only root can rename, or run as that user)"
            )
        self._mutating(what, path)
        checkpoint()

    def _mutating(self, what: str, path: Path) -> None:
        """Hook called before every change to the tree; fault-injecting roots override it.

        Defined on the walk, not on `Root`, because the walk itself changes the tree when it makes a
        missing folder (`create`).
        """

    @contextmanager
    def _folder(self, parts: list[str], create: bool = False, mode: int = 0o755) -> Iterator[int]:
        """A descriptor of the folder `parts` under the root, reached without following any link.

        Missing folders raise FileNotFoundError, or are made (`create`); a link
        or a non-folder on the way raises ELOOP.
        """
        made: list[str] = []
        with self._folder_made(parts, made, create, mode) as fd:
            yield fd

    @contextmanager
    def _folder_made(self, parts: list[str], made: list[str], create: bool, mode: int) -> Iterator[int]:
        try:
            fd = self._root_fd()
        except FileNotFoundError:
            if not create:
                raise
            self._change("mkdir", self.prefix)
            self._make_prefix()
            fd = self._root_fd()
        try:
            walked = ""
            for part in parts:
                walked += "/" + part
                try:
                    child = os.open(part, DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    self._change("mkdir", self.prefix / walked.lstrip("/"))
                    try:
                        os.mkdir(part, mode, dir_fd=fd)
                        made.append(walked)
                    except FileExistsError:  # another process made it first: not ours to remove later
                        pass
                    child = os.open(part, DIR_FLAGS, dir_fd=fd)
                    if walked in made:
                        os.fchmod(child, mode)
                except OSError as exc:
                    if exc.errno in (errno.ENOTDIR, errno.ELOOP):
                        raise linked_error(self.prefix / walked.lstrip("/")) from None
                    raise
                # Swapped before closing: a signal between the two never closes a descriptor twice (F3).
                fd, parent = child, fd
                os.close(parent)
            yield fd
        finally:
            os.close(fd)

    @contextmanager
    def _parent(self, dest: str, create: bool = False) -> Iterator[tuple[int, str]]:
        parts = safe_parts(dest)
        with self._folder(parts[:-1], create) as fd:
            yield fd, parts[-1]


MAX_LINKS = 40


def _trusted_walk(prefix: Path, may_be_link: bool) -> tuple[int, str | None]:
    """Open the root folder again, saying whether anyone but root could have redirected its path.

    Walked from `/` one name at a time without following links (a link's text is followed by
    hand), so what is judged is what is opened. A name can be swapped by whoever may write the
    folder holding it: a folder not owned by root, or writable by others unless sticky and the
    name is root's (/tmp/img is fine, /home/alice/img is not).
    """
    names = list(prefix.parts[1:])
    fd, at, links, problem = os.open("/", DIR_FLAGS), Path("/"), 0, None
    try:
        while names:
            name = names.pop(0)
            if name in (".", ""):
                continue
            if name == "..":
                fd, parent = os.open("..", DIR_FLAGS, dir_fd=fd), fd
                os.close(parent)
                at = at.parent
                continue
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            holder = os.fstat(fd)
            problem = problem or _swappable(at, holder, name, st.st_uid)
            if stat.S_ISLNK(st.st_mode) and holder.st_dev == _proc_dev():
                # /proc/PID/root and its kind are no text to follow (readlink says "/"): the kernel's hop.
                fd, parent = os.open(name, DIR_FLAGS & ~os.O_NOFOLLOW, dir_fd=fd), fd
                os.close(parent)
                at = at / name
                continue
            if stat.S_ISLNK(st.st_mode):
                links += 1
                if (not names and not may_be_link) or links > MAX_LINKS:
                    raise linked_error(at / name)
                target = os.readlink(name, dir_fd=fd)
                names = target.split("/") + names
                if target.startswith("/"):
                    fd, parent = os.open("/", DIR_FLAGS), fd
                    os.close(parent)
                    at = Path("/")
                continue
            fd, parent = os.open(name, DIR_FLAGS, dir_fd=fd), fd
            os.close(parent)
            at = at / name
    except BaseException:
        os.close(fd)
        raise
    return fd, problem


def _proc_dev() -> int | None:
    """procfs's device when it is mounted on /proc (its /proc/self is us), else None.

    Without it, /proc is a plain folder of `/` sharing its device with every other: its "magic
    links" would be every link there is (ATTACK9e F3, in a chroot without /proc).
    """
    try:
        proc = os.stat("/proc")
        if proc.st_dev == os.stat("/").st_dev or os.readlink("/proc/self") != str(os.getpid()):
            return None
    except OSError:
        return None
    return proc.st_dev


def _swappable(folder: Path, holder: os.stat_result, name: str, entry_uid: int) -> str | None:
    if holder.st_uid != 0:
        return f"{folder}: owned by uid {holder.st_uid}, who can swap {folder / name} for a link"
    if holder.st_mode & 0o022 and not (holder.st_mode & stat.S_ISVTX and entry_uid == 0):
        return f"{folder}: writable by others, who can swap {folder / name} for a link"
    return None


def kind_of(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    return "other"


class TooLarge(KvmbridgeError):
    """A regular file past the read limit: an error for what must be read, an entry for a tree's listing."""


class NotRegular(KvmbridgeError):
    """A name listed as a regular file was not one when opened (a link or a FIFO swapped in)."""


def read_regular(dirfd: int | None, name: str | Path, limit: int, label: Path | str, *, follow: bool = False) -> bytes:
    """Read a regular file of at most `limit` bytes; a FIFO, device or huge file is an error, not a hang."""
    return read_regular_stat(dirfd, name, limit, lambda: label, follow=follow)[0]


def read_regular_stat(
    dirfd: int | None, name: str | Path, limit: int, label: Callable[[], Path | str], *, follow: bool = False
) -> tuple[bytes, os.stat_result]:
    """`read_regular`, with the opened file's own stat; `label` is only built for a message."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(name, flags, dir_fd=dirfd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotRegular(f"{label()}: is a symlink; refusing to follow it") from None
        raise
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise NotRegular(f"{label()}: is a directory, not a file")
        if not stat.S_ISREG(st.st_mode):
            raise NotRegular(f"{label()}: is not a regular file (a FIFO, socket or device)")
        if st.st_size > limit:
            raise TooLarge(f"{label()}: is larger than {limit} bytes; not a file kvmbridge reads")
        # Read until end of file (a FUSE or network file system may return short reads before it), asking
        # for the announced size plus one byte first: a file that did not change is one read and one EOF.
        chunks, size, want = [], 0, min(st.st_size, limit) + 1
        while size <= limit:
            chunk = os.read(fd, want)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            want = min(1 << 20, limit + 1 - size)
        if size > limit:
            raise TooLarge(f"{label()}: is larger than {limit} bytes; not a file kvmbridge reads")
        return b"".join(chunks), st
    finally:
        os.close(fd)
