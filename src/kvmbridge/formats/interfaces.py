"""Read interfaces(5) exactly as ifupdown 0.8.41 reads it (its `config.c`), line numbers included.

ifupdown's reading is the truth here, quirks and all: comments only at the start
of a line, a backslash continues a line only right before its newline (not
before CRLF), a word is at most 79 bytes, repeated options merge into one value
joined by newlines while `pre-up`/`up`/`down`/`post-down` stay separate
(`post-up` is `up`, `pre-down` is `down`), `inherits` copies the first earlier
stanza of that name, a bare `auto` (or `allow-X`, `no-scripts`,
`no-auto-down`) inside a stanza marks that stanza, and whatever ifupdown refuses is an `InterfacesError`
naming the file, the line and ifupdown's own reason.

The public surface is small: `parse` (bytes → `Interfaces`) and `load` (a file
and what it sources); the forms a reading is compared in — `semantic` (what
deepdiff compares) and `write` (the text again) — are `interfaces_semantic`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import KvmbridgeError
from .ifupdown_sources import NoFiles, SourceFiles, expand_source, source_directory_files

FAMILIES: dict[str, tuple[str, ...]] = {
    "inet": ("loopback", "static", "manual", "dhcp", "bootp", "tunnel", "ppp", "wvdial", "ipv4ll"),
    "inet6": ("auto", "loopback", "static", "manual", "dhcp", "v4tunnel", "6to4", "tunnel"),
    "ipx": ("static", "dynamic"),
    "can": ("static",),
    "meta": ("none",),
}
COMMANDS = ("pre-up", "up", "down", "post-down")
WORD = 79  # ifupdown's word buffers are char[80]
SPACE = " \t\n\v\f\r"
_SPLIT = re.compile(r"[ \t\n\v\f\r]+")


class InterfacesError(KvmbridgeError):
    """ifupdown refuses this file: `FILE:LINE: reason`, the way ifquery prints it."""

    def __init__(self, file: str, line: int, reason: str) -> None:
        super().__init__(f"{file}:{line}: {reason}")
        self.file, self.line, self.reason = file, line, reason


@dataclass(frozen=True)
class Option:
    name: str
    value: str
    line: int


@dataclass(frozen=True)
class Stanza:
    """One `iface` stanza; `options` as ifupdown holds them (inherited ones first)."""

    name: str
    family: str
    method: str
    options: tuple[Option, ...]
    file: str
    line: int
    inherits: str | None = None
    kind: str = "iface"  # ifupdown2 also has `vlan` stanzas
    auto: bool = False  # ifupdown2 marks a stanza auto when an earlier `auto` line names it

    def get(self, name: str) -> str | None:
        return next((o.value for o in self.options if o.name == name), None)


@dataclass(frozen=True)
class Mapping:
    patterns: tuple[str, ...]
    script: str | None
    maps: tuple[str, ...]
    file: str
    line: int


@dataclass(frozen=True)
class Source:
    """A `source` or `source-directory` line and the files it pulled in (empty when not followed)."""

    kind: str
    argument: str
    file: str
    line: int
    files: tuple[str, ...] = ()


@dataclass(frozen=True)
class Warning:
    """Something ifupdown prints and then ignores (an extra word on an `iface` line)."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


@dataclass(frozen=True)
class Interfaces:
    """Everything ifupdown keeps from a file (and, through `load`, from what it sources).

    `allow` maps each class to its interfaces in first-mention order; `auto` is
    the class ifupdown calls "auto" (the `auto` and `allow-auto` lines).
    """

    stanzas: tuple[Stanza, ...] = ()
    mappings: tuple[Mapping, ...] = ()
    allow: dict[str, tuple[str, ...]] = field(default_factory=dict)
    sources: tuple[Source, ...] = ()
    no_auto_down: tuple[str, ...] = ()
    no_scripts: tuple[str, ...] = ()
    warnings: tuple[Warning, ...] = ()
    files: tuple[str, ...] = ()
    marks: tuple[tuple[str, str, str, int], ...] = ()
    renames: tuple[str, ...] = ()
    # (keyword, word, file, line) of each `no-auto-down`, `no-scripts` and `rename` word: where it was said
    said: tuple[tuple[str, str, str, int], ...] = ()

    def marked_in(self, cls: str, name: str) -> str:
        """The file whose `auto`/`allow-CLASS` line first names `name`."""
        return next((f for c, n, f, _ in self.marks if (c, n) == (cls, name)), "?")

    @property
    def auto(self) -> tuple[str, ...]:
        return self.allow.get("auto", ())

    def named(self, name: str) -> tuple[Stanza, ...]:
        return tuple(s for s in self.stanzas if s.name == name)


def parse(data: bytes, path: str = "interfaces") -> Interfaces:
    """One file on its own: `source` lines are recorded, not followed."""
    reader = _Reader()
    reader.read(path, data, NoFiles())
    return reader.result()


def load(path: str, files: SourceFiles) -> Interfaces:
    """A file and everything it sources, read through `files` (a host or a root)."""
    reader = _Reader()
    data = files.read(path)
    if data is None:
        raise InterfacesError(path, 0, "couldn't open interfaces file")
    reader.read(path, data, files)
    return reader.result()


def words(text: str) -> list[str]:
    """ifupdown's `next_word`: split on C whitespace, each word cut to 79 bytes."""
    out = []
    for word in _SPLIT.split(text.strip(SPACE)) if text.strip(SPACE) else []:
        raw = word.encode("utf-8", "surrogateescape")[:WORD]
        out.append(raw.decode("utf-8", "surrogateescape"))
    return out


def logical_lines(text: str) -> list[tuple[int, str]]:
    """`get_line`: (last physical line number, text) for every non-comment line, blanks included."""
    physical = text.split("\n")
    if physical and physical[-1] == "":
        physical.pop()
    out: list[tuple[int, str]] = []
    i = 0
    while i < len(physical):
        line = physical[i].lstrip(SPACE)
        i += 1
        if line.startswith("#"):
            continue
        while line.endswith("\\"):
            line = line[:-1]
            if i < len(physical):
                line += physical[i]
                i += 1
            else:
                i += 1  # ifupdown counts the line it failed to read
        out.append((i, line.rstrip(SPACE)))
    return out


def _split_first(line: str) -> tuple[str, str]:
    """`next_word` on a logical line: a line a continuation began with spaces has an empty first word."""
    end = next((k for k, c in enumerate(line) if c in SPACE), len(line))
    first = line[:end].encode("utf-8", "surrogateescape")[:WORD].decode("utf-8", "surrogateescape")
    return first, line[end:].lstrip(SPACE)


@dataclass
class _Iface:
    name: str
    family: str
    method: str
    file: str
    line: int
    inherits: str | None
    options: list[Option] = field(default_factory=list)


@dataclass
class _Map:
    patterns: tuple[str, ...]
    file: str
    line: int
    script: str | None = None
    maps: list[str] = field(default_factory=list)


class _Reader:
    def __init__(self) -> None:
        self.ifaces: list[_Iface] = []
        self.mappings: list[_Map] = []
        self.allow: dict[str, list[str]] = {}
        self.sources: list[Source] = []
        self.no_auto_down: list[str] = []
        self.no_scripts: list[str] = []
        self.warnings: list[Warning] = []
        self.seen: list[str] = []
        self.marks: list[tuple[str, str, str, int]] = []
        self.renames: list[str] = []
        self.said: list[tuple[str, str, str, int]] = []

    def result(self) -> Interfaces:
        stanzas = tuple(
            Stanza(i.name, i.family, i.method, tuple(i.options), i.file, i.line, i.inherits) for i in self.ifaces
        )
        mappings = tuple(Mapping(m.patterns, m.script, tuple(m.maps), m.file, m.line) for m in self.mappings)
        return Interfaces(
            stanzas,
            mappings,
            {k: tuple(v) for k, v in self.allow.items()},
            tuple(self.sources),
            tuple(self.no_auto_down),
            tuple(self.no_scripts),
            tuple(self.warnings),
            tuple(self.seen),
            tuple(self.marks),
            tuple(self.renames),
            tuple(self.said),
        )

    def read(self, path: str, data: bytes, files: SourceFiles) -> None:
        if path in self.seen:
            return
        self.seen.append(path)
        if b"\0" in data:
            raise InterfacesError(path, data[: data.index(b"\0")].count(b"\n") + 1, "NUL byte in the file")
        text = data.decode("utf-8", "surrogateescape")
        current: _Iface | _Map | None = None
        for number, line in logical_lines(text):
            if not line:
                continue
            first, rest = _split_first(line)
            if first == "mapping":
                current = _Map(tuple(words(rest)), path, number)
                self.mappings.append(current)
            elif first == "source" or first.startswith("source-dir"):
                kind = "source" if first == "source" else "source-directory"
                self._source(kind, rest, path, number, files)
                current = None
            elif first == "iface":
                current = self._iface(rest, path, number)
                self.ifaces.append(current)
            elif first in ("auto", "no-auto-down", "no-scripts") or (first.startswith("allow-") and len(first) > 6):
                # A bare `auto` (`allow-X`, `no-scripts`, `no-auto-down`) inside a stanza marks that stanza.
                if not rest and isinstance(current, _Iface):
                    self._mark(first, [current.name], path, number)
                else:
                    self._mark(first, words(rest), path, number)
                    current = None
            elif first == "rename":
                self.renames.extend(words(rest))
                self.said += [("rename", pair, path, number) for pair in words(rest)]
                current = None
            elif isinstance(current, _Iface):
                _add_option(current, first, rest, path, number)
            elif isinstance(current, _Map):
                if first == "script":
                    if current.script is not None:
                        raise InterfacesError(path, number, "duplicate script in mapping")
                    current.script = rest
                elif first == "map":
                    current.maps.append(rest)
                else:
                    raise InterfacesError(path, number, "misplaced option")
            else:
                raise InterfacesError(path, number, "misplaced option")

    def _mark(self, keyword: str, names: list[str], path: str, number: int) -> None:
        if keyword in ("no-auto-down", "no-scripts"):
            (self.no_auto_down if keyword == "no-auto-down" else self.no_scripts).extend(names)
            self.said += [(keyword, name, path, number) for name in names]
            return
        cls = "auto" if keyword == "auto" else keyword[6:]
        listed = self.allow.setdefault(cls, [])
        for name in names:
            self.marks.append((cls, name, path, number))
            if name not in listed:
                listed.append(name)

    def _source(self, kind: str, rest: str, path: str, number: int, files: SourceFiles) -> None:
        if isinstance(files, NoFiles):
            self.sources.append(Source(kind, rest, path, number))
            return
        expand = expand_source if kind == "source" else source_directory_files
        read: list[str] = []
        for name in expand(path, rest, files, number):
            data = files.read(name)
            if data is None:  # ifupdown skips a name that does not exist
                continue
            read.append(name)
            self.read(name, data, files)
        self.sources.append(Source(kind, rest, path, number, tuple(read)))

    def _iface(self, rest: str, path: str, number: int) -> _Iface:
        parts = words(rest)
        if not parts:
            raise InterfacesError(path, number, "too few parameters for iface line")
        name, family, method, parent = parts[0], "", "", None
        keyword = False
        if len(parts) > 1:
            if parts[1] in FAMILIES:
                family = parts[1]
                if len(parts) > 2:
                    if parts[2] in FAMILIES[family]:
                        method = parts[2]
                    else:
                        keyword = parts[2] == "inherits"
            else:
                keyword = parts[1] == "inherits"
        if not family and not keyword:
            raise InterfacesError(path, number, "unknown or no address type and no inherits keyword specified")
        if not method and not keyword:
            raise InterfacesError(path, number, "unknown or no method and no inherits keyword specified")
        at = 1 if not family else 2 if not method else 3
        if not keyword and len(parts) > at:
            keyword = parts[at] == "inherits"
            if not keyword:
                self.warnings.append(
                    Warning(path, number, f"extra parameter for the iface line not understood and ignored: {parts[at]}")
                )
        options: list[Option] = []
        if keyword:
            if len(parts) <= at + 1:
                raise InterfacesError(path, number, "'inherits' keyword is missing a parameter")
            parent = parts[at + 1]
            other = next((i for i in self.ifaces if i.name == parent and (not family or i.family == family)), None)
            if other is None:
                raise InterfacesError(path, number, f"unknown iface to inherit from: {parent} ({family or '*'})")
            options = list(other.options)
            family, method = family or other.family, method or other.method
        return _Iface(name, family, method, path, number, parent, options)


def _add_option(iface: _Iface, name: str, value: str, path: str, number: int) -> None:
    """ifupdown's option rules: repeats merge with a newline, `name?` sets only when unset."""
    name = {"post-up": "up", "pre-down": "down"}.get(name, name)
    if not value:
        raise InterfacesError(path, number, "option with empty value")
    options = iface.options
    if name not in COMMANDS:
        for k, option in enumerate(options):
            if option.name == name:
                value = f"{option.value}\n{value}"
                options[k] = Option(name, value, option.line)
    keep = name.endswith("?")
    base = name[:-1] if keep else name
    if name not in COMMANDS:
        for k, option in enumerate(options):
            if option.name == base:
                if not keep:
                    options[k] = Option(base, value, option.line)
                return
    options.append(Option(base, value, number))
