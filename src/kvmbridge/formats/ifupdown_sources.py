"""Which files ifupdown's `source` and `source-directory` lines pull in, by ifupdown's own rules.

`source ARG`: ARG is relative to the folder of the file holding the line, and
goes through `wordexp(3)` without command substitution: words split on
whitespace, quotes removed, each word globbed (no hidden files, sorted); a
word naming nothing is skipped. Shell syntax wordexp refuses (`| & ; < > ( ) { }`)
sources nothing. Parameter and tilde expansion depend on the environment of
whoever runs ifup, so they are refused here rather than guessed.

`source-directory DIR` (any keyword starting `source-dir`): every entry of
DIR whose name is only `[A-Za-z0-9_-]`, in byte order; `interfaces.d/foo.cfg`
or `50-cloud-init.bak~` are not read.

Reading goes through a `SourceFiles`, so the same rules serve this host (`/`),
a `--root`, and the tests.
"""

from __future__ import annotations

import glob
import os
import re
import stat
from pathlib import Path
from typing import Protocol

BAD = set("\n|&;<>(){}")
DIRECTORY_NAME = re.compile(r"[A-Za-z0-9_-]+")


class SourceFiles(Protocol):
    def read(self, path: str) -> bytes | None:
        """The file's bytes; None when it does not exist. Raise InterfacesError when it is not a file."""

    def glob(self, pattern: str) -> list[str]:
        """Existing paths matching a glob pattern, hidden names excluded unless asked for."""

    def listdir(self, path: str) -> list[str] | None:
        """A folder's entry names; None when it is not a folder."""


class NoFiles:
    """For reading one file on its own: `source` lines are recorded, not followed."""

    def read(self, path: str) -> bytes | None:
        return None

    def glob(self, pattern: str) -> list[str]:
        return []

    def listdir(self, path: str) -> list[str] | None:
        return None


class DictFiles:
    """Files given as {target path: bytes} (tests, and hosts captured elsewhere)."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = dict(files)

    def read(self, path: str) -> bytes | None:
        from .interfaces import InterfacesError

        if path in self.files:
            return self.files[path]
        if self.listdir(path) is not None:
            raise InterfacesError(path, 0, "Is a directory")
        return None

    def glob(self, pattern: str) -> list[str]:
        import fnmatch

        names = set(self.files) | {os.path.dirname(p) for p in self.files}
        hits = [p for p in names if fnmatch.fnmatchcase(p, pattern) and p.count("/") == pattern.count("/")]
        return sorted(p for p in hits if not os.path.basename(p).startswith(".") or "/." in pattern)

    def listdir(self, path: str) -> list[str] | None:
        prefix = path.rstrip("/") + "/"
        names = {p[len(prefix) :].split("/")[0] for p in self.files if p.startswith(prefix)}
        return sorted(names) if names else None


class HostFiles:
    """Files under `prefix` (`/` for this host); paths stay target paths (`/etc/network/...`).

    Links are not followed out of the prefix: a path is refused when its resolved
    form leaves it. Only regular files are read (never a FIFO or a device).
    """

    def __init__(self, prefix: str | Path = "/", limit: int = 1 << 20) -> None:
        self.prefix = Path(prefix).resolve()
        self.limit = limit

    def _real(self, path: str) -> Path | None:
        joined = self.prefix / path.lstrip("/")
        try:
            resolved = joined.resolve()
        except (OSError, RuntimeError):
            return None
        return resolved if resolved.is_relative_to(self.prefix) else None

    def read(self, path: str) -> bytes | None:
        from .interfaces import InterfacesError

        real = self._real(path)
        if real is None:
            return None
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise InterfacesError(path, 0, exc.strerror or "cannot open") from None
        try:
            # fstat before fdopen: Python's file object refuses a folder with IsADirectoryError.
            info = os.fstat(fd)
            if stat.S_ISDIR(info.st_mode):
                return None  # ifupdown says "Is a directory" and reads on without it
            if stat.S_ISCHR(info.st_mode) and info.st_rdev == os.makedev(1, 3):
                return b""  # /dev/null, which ifupdown's own tests source
            if not stat.S_ISREG(info.st_mode):
                raise InterfacesError(path, 0, "not a regular file")
            data = b""
            while len(data) <= self.limit and (chunk := os.read(fd, self.limit + 1 - len(data))):
                data += chunk
        except OSError as exc:  # EIO, EINVAL from /proc and the like
            raise InterfacesError(path, 0, exc.strerror or "cannot read") from None
        finally:
            os.close(fd)
        if len(data) > self.limit:
            raise InterfacesError(path, 0, f"larger than {self.limit} bytes")
        return data

    def glob(self, pattern: str) -> list[str]:
        base = str(self.prefix).rstrip("/")
        found = glob.glob(base + "/" + pattern.lstrip("/"))
        return sorted("/" + p[len(base) :].lstrip("/") for p in found if self._real("/" + p[len(base) :]) is not None)

    def listdir(self, path: str) -> list[str] | None:
        real = self._real(path)
        if real is None or not real.is_dir():
            return None
        try:
            return os.listdir(real)
        except OSError:
            return None


def _dirname(path: str) -> str:
    return os.path.dirname(path) or "."


_TOKEN = re.compile(r"""'[^']*'|"(?:\\.|[^"\\])*"|\\.?|[ \t]+|.""", re.S)


def shell_words(text: str, where: tuple[str, int]) -> list[tuple[str, str, bool]] | None:
    """wordexp(WRDE_NOCMD) minus the environment: (literal, glob pattern, has magic) per word.

    None when wordexp would fail (and ifupdown then sources nothing).
    """
    from .interfaces import InterfacesError

    out: list[tuple[str, str, bool]] = []
    literal, pattern, magic = "", "", False
    started = False
    for token in _TOKEN.findall(text):
        if token[0] in " \t":
            if started:
                out.append((literal, pattern, magic))
            literal, pattern, magic, started = "", "", False, False
            continue
        if token[0] in "$`" or (token == "~" and not started) or (token[0] == '"' and re.search(r"(?<!\\)[$`]", token)):
            raise InterfacesError(*where, f"source uses shell expansion ({token[0]}) that kvmbridge does not follow")
        if token in ("'", '"') or token[0] in BAD:  # an unclosed quote, or syntax wordexp refuses
            return None
        started = True
        if token[0] == "'":
            quoted = token[1:-1]
        elif token[0] == '"':
            quoted = re.sub(r'\\([$`"\\\n])', r"\1", token[1:-1])
        elif token[0] == "\\":
            quoted = token[1:]
        else:
            literal, pattern, magic = literal + token, pattern + token, magic or token in "*?["
            continue
        literal, pattern = literal + quoted, pattern + glob.escape(quoted)
    if started:
        out.append((literal, pattern, magic))
    return out


_CLASSES = {
    "alnum": "0-9A-Za-z",
    "alpha": "A-Za-z",
    "blank": " \t",
    "digit": "0-9",
    "lower": "a-z",
    "space": " \t\n\r\f\v",
    "upper": "A-Z",
    "xdigit": "0-9A-Fa-f",
    "punct": "!-/:-@[-`{-~",
}
_BRACKET = re.compile(r"\[([!^]?)(\]?(?:\[:[a-z]+:\]|[^\]])*)\]")


def python_glob(pattern: str) -> str:
    """POSIX brackets (glibc's glob, which wordexp uses) in Python's spelling: `[^x]` is `[!x]`,
    `[[:digit:]]` is `[0-9]`. Python reads `^` as a literal and knows no classes, so the same
    pattern would select other files than ifupdown does."""

    def bracket(found: re.Match[str]) -> str:
        negate, body = found[1], found[2]
        body = re.sub(r"\[:([a-z]+):\]", lambda c: _CLASSES.get(c[1], c[0]), body)
        return "[" + ("!" if negate else "") + body + "]"

    return _BRACKET.sub(bracket, pattern)


def _expand(path: str, argument: str, files: SourceFiles, line: int) -> list[str]:
    """What wordexp gives for the line's pattern: glob matches, or the word itself when nothing matches."""
    pattern = argument if argument.startswith("/") else f"{_dirname(path)}/{argument}"
    found: list[str] = []
    for literal, glob_pattern, magic in shell_words(pattern, (path, line)) or []:
        matches = files.glob(python_glob(glob_pattern)) if magic else []
        found.extend(matches or [literal])
    return found


def expand_source(path: str, argument: str, files: SourceFiles, line: int = 0) -> list[str]:
    """The names a `source` line reads, in ifupdown's order (those that do not exist are skipped on read)."""
    return _expand(path, argument, files, line)


def source_directory_files(path: str, argument: str, files: SourceFiles, line: int = 0) -> list[str]:
    """The files a `source-directory` line reads: only `[A-Za-z0-9_-]` names, byte order."""
    out: list[str] = []
    for folder in _expand(path, argument, files, line):
        names = files.listdir(folder)
        if names is None:
            continue
        picked = sorted((n for n in names if DIRECTORY_NAME.fullmatch(n)), key=lambda n: n.encode())
        out.extend(f"{folder.rstrip('/')}/{n}" for n in picked)
    return out
