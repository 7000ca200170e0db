"""Read interfaces(5) the way ifupdown2 (3.0, Proxmox/Cumulus) reads it: its own dialect.

ifupdown2 is not ifupdown: every backslash joins lines (wherever it is), a
stanza may have no family (`iface swp1`), a family without a method means
`static`, option names use `-` for `_`, every repeated option is a list,
`netmask`/`broadcast`/`scope`/`preferred-lifetime` line up with the
`address` before them (and vanish without one), `$IFACE` in a value is the
stanza's name, `swp[1-4]` names expand to one stanza each, `vlan` stanzas
exist, and there are no `mapping`, `inherits` or `source-directory` lines.
An exact repeat of an earlier stanza is dropped. A file using mako templates
(`%for`, `${...}`) is refused: kvmbridge does not run templates.

`bridge_ports` expands a `bridge-ports` value (`glob swp1-52`, `swp[1-4]`
ranges, `regex` against given names) the way ifupdown2's bridge module does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .ifupdown_sources import SourceFiles
from .interfaces import Interfaces, InterfacesError, Option, Stanza, Warning

FAMILIES = {f: ("static", "manual", "loopback", "dhcp", "dhcp6", "ppp", "tunnel") for f in ("inet", "inet6")}
KEYWORDS = ("source", "auto", "iface", "vlan")
ALIGNED = ("scope", "netmask", "broadcast", "preferred-lifetime")
STRIP = "\n\t\r "
SPLIT = re.compile(r"[\s\t]\s*")
RANGE_4 = re.compile(r"^([\w]+)\[([\d]+)-([\d]+)\]([\.\w]+)")
RANGE_3 = re.compile(r"^([\w\.]+)\[([\d]+)-([\d]+)\]")
GLOBS = (
    re.compile(r"([A-Za-z0-9\-]+)\[(\d+)\-(\d+)\]([A-Za-z0-9\-]+)\[(\d+)\-(\d+)\](.*)"),
    re.compile(r"([A-Za-z0-9\-]+[A-Za-z])(\d+)\-(\d+)(.*)"),
    re.compile(r"([A-Za-z0-9\-]+)\[(\d+)\-(\d+)\](.*)"),
)


def _keyword(word: str) -> bool:
    return word in KEYWORDS or word.split("-", maxsplit=1)[0] == "allow"


# ifupdown2 sets no bound; a reader of hostile files must (`swp[1-999999999]` would never finish).
MAX_RANGE = 4096


class RangeTooLarge(ValueError):
    pass


def _span(first: str, last: str) -> range:
    numbers = range(int(first), int(last) + 1)
    if len(numbers) > MAX_RANGE:
        raise RangeTooLarge(f"a range of {len(numbers)} interfaces; kvmbridge reads at most {MAX_RANGE}")
    return numbers


def iface_range(name: str) -> list[str] | None:
    """ifupdown2's `parse_iface_range`: `swp[1-3]` → swp1..swp3, `swp1.[2-3]`, `swp[1-2].100`."""
    m = RANGE_4.match(name)
    if m:
        return [f"{m[1]}{i}{m[4]}" for i in _span(m[2], m[3])]
    m = RANGE_3.match(name)
    if m:
        return [f"{m[1]}{i}" for i in _span(m[2], m[3])]
    return None


def bridge_ports(value: str, names: list[str] | None = None) -> list[str]:
    """The ports a `bridge-ports` value names, as ifupdown2's `parse_port_list` expands them."""
    ports: list[str] = []
    mode = ""
    for expr in SPLIT.split(value):
        if expr in ("glob", "regex", "noglob", "noregex"):
            mode = expr if expr in ("glob", "regex") else ""
        elif mode == "regex":
            ports += [n for n in names or [] if re.search(expr + "$", n) and n not in ports]
            mode = ""
        elif mode == "glob":
            ports += _glob(expr)
            mode = ""
        else:
            ports.append(expr)
    return ports


def _glob(expr: str) -> list[str]:
    if "," in expr:
        return [expr]
    if m := GLOBS[0].match(expr):
        p, a, b, sub, c, d, s = m.groups()
        inner = _span(c, d)
        if len(_span(a, b)) * len(inner) > MAX_RANGE:
            raise RangeTooLarge(f"{expr}: more than {MAX_RANGE} ports")
        return [f"{p}{i}{sub}{j}{s}" for i in _span(a, b) for j in inner]
    if m := GLOBS[1].match(expr) or GLOBS[2].match(expr):
        p, a, b, s = m.groups()
        return [f"{p}{i}{s}" for i in _span(a, b)]
    return [expr]


@dataclass
class _Obj:
    name: str
    kind: str
    family: str
    method: str
    line: int
    auto: bool
    classes: tuple[str, ...]
    config: dict[str, list[tuple[str, int]]] = field(default_factory=dict)

    def same(self, other: _Obj) -> bool:
        def values(o: _Obj) -> dict[str, list[str]]:
            return {k: [v for v, _ in vs] for k, vs in o.config.items()}

        mine = (self.name, self.kind, self.family, self.method, self.auto, self.classes, values(self))
        return mine == (other.name, other.kind, other.family, other.method, other.auto, other.classes, values(other))


def _error(path: str, line: int, message: str) -> InterfacesError:
    return InterfacesError(path, line, message)


def parse(data: bytes, path: str = "interfaces") -> Interfaces:
    """One file in ifupdown2's dialect; `source` lines are recorded, not followed."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise _error(path, 0, "not UTF-8 text (ifupdown2 cannot read it)") from None
    _refuse_templates(text, path)
    lines = [line.strip(STRIP) for line in " ".join(d.strip() for d in text.split("\\")).split("\n")]
    reader = _Reader(path)
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line or line.startswith("#"):
            i += 1
            continue
        words = SPLIT.split(line)
        if not _keyword(words[0]):
            raise _error(path, i + 1, f"error processing line '{line}'")
        i += reader.keyword(words, lines, i) + 1
    return reader.result()


def _refuse_templates(text: str, path: str) -> None:
    if "%" not in text:
        return
    for number, line in enumerate(text.split("\n"), 1):
        if line.lstrip().startswith("%") or "${" in line or "<%" in line:
            raise _error(path, number, "ifupdown2 template (mako) line: kvmbridge does not render templates")


class _Reader:
    def __init__(self, path: str) -> None:
        self.path = path
        self.objs: list[_Obj] = []
        self.auto: list[str] = []
        self.auto_all = False
        self.allow: dict[str, list[str]] = {}
        self.sources: list[tuple[str, int]] = []
        self.warnings: list[Warning] = []

    def keyword(self, words: list[str], lines: list[str], i: int) -> int:
        word = words[0]
        if word.split("-")[0] == "allow":
            if len(words) <= 1 or "-" not in word:
                raise _error(self.path, i + 1, f"invalid allow line '{lines[i]}'")
            self.allow.setdefault(word.split("-")[1], []).extend(words[1:])
        elif word == "auto":
            if len(words) < 2:
                raise _error(self.path, i + 1, f"invalid auto line '{lines[i]}'")
            for name in words[1:]:
                if name == "all":
                    self.auto_all = True
                    break
                self.auto += self._range(name, i + 1) or []
                self.auto.append(name)
        elif word == "source":
            self.sources.append((words[1] if len(words) > 1 else "", i + 1))
            if len(words) < 2 or not words[1]:
                raise _error(self.path, i + 1, "unable to read source line")
        else:
            return self._iface(word, lines, i)
        return 0

    def _iface(self, kind: str, lines: list[str], i: int) -> int:
        attrs = SPLIT.split(lines[i])
        if len(attrs) < 2:
            raise _error(self.path, i + 1, f"iface line without a name: '{lines[i]}'")
        raw = attrs[1]
        if "[" not in raw and "]" not in raw and len(raw) > 15:
            self.warnings.append(Warning(self.path, i + 1, f"{raw}: interface name too long"))
        config: dict[str, list[tuple[str, int]]] = {}
        last = i
        for j in range(i + 1, len(lines)):
            last = j
            line = lines[j]
            if not line or line.startswith("#"):
                continue
            parts = SPLIT.split(line, maxsplit=1)
            if _keyword(parts[0]):
                last = j - 1
                break
            if len(parts) < 2:
                raise _error(self.path, j, f"iface {raw}: invalid syntax '{line}'")
            self._option(config, parts[0].replace("_", "-"), parts[1].replace("$IFACE", raw), j + 1)
        family = attrs[2] if len(attrs) > 2 and attrs[2] else ""
        method = attrs[3] if len(attrs) > 3 else ""
        if family:
            if family not in FAMILIES:
                raise _error(self.path, i + 1, f"iface {raw.split(':')[0]}: unsupported address family '{family}'")
            method = method or "static"
            if method not in FAMILIES[family]:
                raise _error(self.path, i + 1, f"iface {raw.split(':')[0]}: unsupported address method '{method}'")
        name = raw.split(":")[0]
        for each in self._range(name, i + 1) or [name]:
            classes = tuple(c for c, names in self.allow.items() if each in names)
            obj = _Obj(each, kind, family, method, i + 1, self.auto_all or each in self.auto, classes, config)
            first = next((o for o in self.objs if o.name == each), None)
            if first is not None and obj.same(first):
                self.warnings.append(Warning(self.path, i + 1, f"duplicate interface {each} found"))
                continue
            self.objs.append(obj)
        return last - i

    def _range(self, name: str, line: int) -> list[str] | None:
        try:
            return iface_range(name)
        except RangeTooLarge as exc:
            raise _error(self.path, line, f"{name}: {exc}") from None

    @staticmethod
    def _option(config: dict[str, list[tuple[str, int]]], name: str, value: str, line: int) -> None:
        values = config.get(name, [])
        if name in ALIGNED:
            addresses = config.get("address")
            if addresses:
                values += [("", line)] * (len(addresses) - len(values) - 1)
                values.append((value, line))
                config[name] = values
        elif not values:
            config[name] = [(value, line)]
        else:
            values.append((value, line))

    def result(self) -> Interfaces:
        stanzas = tuple(
            Stanza(
                o.name,
                o.family,
                o.method,
                tuple(Option(k, v, n) for k, vs in o.config.items() for v, n in vs),
                self.path,
                o.line,
                kind=o.kind,
                auto=o.auto,
            )
            for o in self.objs
        )
        allow = {"auto": tuple(dict.fromkeys(self.auto))} if self.auto else {}
        allow |= {c: tuple(names) for c, names in self.allow.items()}
        from .interfaces import Source

        sources = tuple(Source("source", arg, self.path, line) for arg, line in self.sources)
        return Interfaces(stanzas, (), allow, sources, warnings=tuple(self.warnings), files=(self.path,))


def load(path: str, files: SourceFiles) -> Interfaces:
    """A file and what its `source` lines glob (absolute patterns; ifupdown2 globs relative ones from its cwd)."""
    seen: list[str] = []
    readings: list[Interfaces] = []

    def read(name: str) -> None:
        data = files.read(name)
        if data is None:
            raise InterfacesError(name, 0, "couldn't open interfaces file")
        reading = parse(data, name)
        seen.append(name)
        readings.append(reading)
        for source in reading.sources:
            for found in files.glob(source.argument) if source.argument.startswith("/") else []:
                if found not in seen:
                    read(found)

    read(path)
    allow: dict[str, tuple[str, ...]] = {}
    for reading in readings:
        for cls, names in reading.allow.items():
            allow[cls] = allow.get(cls, ()) + names
    return Interfaces(
        tuple(s for r in readings for s in r.stanzas),
        (),
        allow,
        tuple(s for r in readings for s in r.sources),
        warnings=tuple(w for r in readings for w in r.warnings),
        files=tuple(seen),
    )


def semantic(parsed: Interfaces) -> dict[str, Any]:
    """The plain form for deepdiff: stanzas in order, every option a list (as ifupdown2 keeps it)."""
    ifaces: dict[str, Any] = {}
    for stanza in parsed.stanzas:
        key = base = " ".join(
            p for p in (stanza.kind if stanza.kind != "iface" else "", stanza.name, stanza.family) if p
        )
        n = 1
        while key in ifaces:
            n += 1
            key = f"{base} #{n}"
        options: dict[str, list[str]] = {}
        for option in stanza.options:
            options.setdefault(option.name, []).append(option.value)
        ifaces[key] = {"method": stanza.method, "auto": stanza.auto, "options": options}
    out: dict[str, Any] = {"auto": list(parsed.auto), "source": [s.argument for s in parsed.sources], "ifaces": ifaces}
    allow = {k: list(v) for k, v in parsed.allow.items() if k != "auto"}
    return out | ({"allow": allow} if allow else {})


def parse_semantic(data: bytes) -> dict[str, Any]:
    return semantic(parse(data, "interfaces"))


def write(parsed: Interfaces) -> str:
    """The reading written back out in ifupdown2's dialect (`auto` before the stanzas it marks)."""
    out: list[str] = []
    for cls, names in parsed.allow.items():
        if cls != "auto" and names:
            out.append(f"allow-{cls} {' '.join(names)}")
    marked: set[str] = set()
    for stanza in parsed.stanzas:
        if stanza.auto and stanza.name not in marked:
            out.append(f"auto {stanza.name}")
            marked.add(stanza.name)
        words = [stanza.kind, stanza.name, stanza.family, stanza.method if stanza.family else ""]
        out.append(" ".join(w for w in words if w))
        # In line order, so the alignment of netmask & co. with addresses is rebuilt as it was.
        options = sorted((o for o in stanza.options if o.value or o.name not in ALIGNED), key=lambda o: o.line)
        out.extend(f"    {o.name} {o.value}" for o in options)
    rest = [n for n in parsed.auto if n not in marked]
    if rest:
        out.append(f"auto {' '.join(rest)}")
    return "".join(f"{line}\n" for line in out)
