"""Load a TOML host profile into a validated `HostProfile`.

Every failure becomes a `ProfileError` whose lines read
`FILE: key.path: what is wrong`, so a user never sees a traceback and
nothing downstream ever sees an unchecked value.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import tomli

from .errors import ProfileError
from .keypath import keypath
from .model import SECTIONS, Bridge, HostProfile, IPv4, IPv6, Network
from .rules import check_hostname, check_profile

T = TypeVar("T")

TOP_KEYS = ("hostname", "renderer", *SECTIONS, "bridges", "networks")
_TOML_POSITION = re.compile(r"^(?P<msg>.*) \(at line (?P<line>\d+), column (?P<col>\d+)\)$")
_MSGSPEC_PATH = re.compile(r"^(?P<msg>.*) - at `\$(?P<path>[^`]*)`$")


def load_profile(path: Path) -> HostProfile:
    """Read, parse and validate the profile at `path`."""
    return parse_profile(read_profile_text(path), _label(path), default_hostname=path.stem, source_name=path.name)


def path_label(path: Path | str) -> str:
    """The file as messages name it: a newline in a file name must not split an error line."""
    text = str(path)
    return text if text.isprintable() else repr(text)


_label = path_label


PROFILE_LIMIT = 1 << 20  # a host profile is a few KiB; a device or a 50 GB sparse file is refused, not read
MAX_NESTING = 16


def read_profile_text(path: Path) -> str:
    """Only a regular file of bounded size: a FIFO, a device or /dev/zero is one line, never a hang."""
    from .errors import KvmbridgeError
    from .root import read_regular

    label = _label(path)
    try:
        data = read_regular(None, path, PROFILE_LIMIT, label, follow=True)
    except FileNotFoundError:
        raise ProfileError(f"{label}: no such file") from None
    except KvmbridgeError as exc:
        if exc.lines == (f"{label}: is a directory, not a file",):
            raise ProfileError(f"{label}: is a directory, not a profile") from None
        raise ProfileError(*exc.lines) from None
    except OSError as exc:
        raise ProfileError(f"{label}: cannot read: {exc.strerror}") from None
    if b"\0" in data:
        raise ProfileError(f"{label}: is a binary file, not a TOML profile")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProfileError(f"{label}: is not UTF-8 text (byte {exc.start})") from None
    if not text.strip():
        raise ProfileError(f"{label}: the profile is empty")
    return text


def parse_profile(text: str, label: str, *, default_hostname: str, source_name: str) -> HostProfile:
    """Validate profile text; `label` names the file in every message."""
    try:
        raw = tomli.loads(text)  # tomllib's own upstream, compiled: 3x faster over a fleet
    except RecursionError:
        raise ProfileError(f"{label}: arrays or tables nested too deeply (more than {MAX_NESTING} levels)") from None
    except tomli.TOMLDecodeError as exc:
        found = _TOML_POSITION.match(str(exc))
        where = f"line {found['line']}, column {found['col']}: " if found else ""
        msg = found["msg"] if found else str(exc)
        raise ProfileError(f"{label}: {where}TOML syntax error: {msg}") from None
    if not _clean(raw, 1) and _depth(raw) > MAX_NESTING:
        raise ProfileError(f"{label}: arrays or tables nested too deeply (more than {MAX_NESTING} levels)")
    return build_profile(raw, label, default_hostname=default_hostname, source_name=source_name)


def _clean(value: Any, level: int) -> bool:
    """Nested at most MAX_NESTING deep and every string and key printable: the fast answer for a good profile.

    Recursion stops at MAX_NESTING + 1 levels, so any input is safe; only a
    profile that fails goes through the slower walks that name the problem.
    """
    if level > MAX_NESTING:
        return False
    if isinstance(value, str):
        return value.isprintable()
    if isinstance(value, dict):
        for key, item in value.items():
            if not key.isprintable() or not _clean(item, level + 1):
                return False
    elif isinstance(value, list):
        for item in value:
            if not _clean(item, level + 1):
                return False
    return True


def _depth(value: Any) -> int:
    """Nesting depth, without recursion: every later walk over the profile may then recurse safely."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if isinstance(item, dict):
            stack.extend((child, level + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, level + 1) for child in item)
    return deepest


def build_profile(raw: dict[str, Any], label: str, *, default_hostname: str, source_name: str) -> HostProfile:
    """Validate decoded TOML; every string is still hostile here."""
    problems = [] if _clean(raw, 1) else _unprintable(raw, ())
    if not problems:
        problems = _unknown_keys(raw)
    if problems:
        raise ProfileError(*(f"{label}: {key}: {msg}" for key, msg in problems))
    if not source_name.isprintable():
        raise ProfileError(f"{label}: the file name has control characters; rename the file")
    profile = _convert(raw, label, default_hostname, source_name)
    problems = check_profile(profile)
    if problems:
        raise ProfileError(*(f"{label}: {key}: {msg}" for key, msg in problems))
    return profile


def _unprintable(value: Any, at: tuple[str | int, ...]) -> list[tuple[str, str]]:
    """Newlines and control characters could add lines to generated files: refuse them anywhere."""
    found: list[tuple[str, str]] = []
    if isinstance(value, str):
        if not value.isprintable():
            found.append((keypath(*at) or "(top level)", "contains a newline or control character"))
    elif isinstance(value, dict):
        for key, item in value.items():
            if not key.isprintable():
                found.append((keypath(*at) or "(top level)", f"a key contains a newline or control character: {key!r}"))
            else:
                found.extend(_unprintable(item, (*at, key)))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found.extend(_unprintable(item, (*at, i)))
    return found


def _unknown_keys(raw: dict[str, Any]) -> list[tuple[str, str]]:
    problems = _unknown_in(raw, TOP_KEYS, ())
    for section, model in SECTIONS.items():
        if isinstance(raw.get(section), dict):
            problems += _unknown_in(raw[section], model.__struct_fields__, (section,))
    for name, bridge in _tables(raw, "bridges"):
        problems += _unknown_in(bridge, Bridge.__struct_fields__, ("bridges", name))
        for family in ("ipv4", "ipv6"):
            if isinstance(bridge.get(family), dict):
                fields = (IPv4 if family == "ipv4" else IPv6).__struct_fields__
                problems += _unknown_in(bridge[family], fields, ("bridges", name, family))
    for name, network in _tables(raw, "networks"):
        problems += _unknown_in(network, Network.__struct_fields__, ("networks", name))
    return problems


def _tables(raw: dict[str, Any], key: str) -> list[tuple[str, dict[str, Any]]]:
    group = raw.get(key)
    if not isinstance(group, dict):
        return []
    return [(name, table) for name, table in group.items() if isinstance(table, dict)]


def _unknown_in(table: dict[str, Any], known: tuple[str, ...], at: tuple[str, ...]) -> list[tuple[str, str]]:
    problems = []
    for key in table:
        if key not in known:
            import difflib

            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(known)}"
            problems.append((keypath(*at, key), f"unknown key{hint}"))
    return problems


def _convert(raw: dict[str, Any], label: str, default_hostname: str, source_name: str) -> HostProfile:
    hostname = raw.get("hostname", default_hostname)
    if not isinstance(hostname, str):
        raise ProfileError(f"{label}: hostname: expected a string")
    if "hostname" not in raw and check_hostname(hostname):
        raise ProfileError(
            f'{label}: hostname: not set, and the file name {hostname!r} is not a valid host name; set hostname = "..."'
        )
    renderer = raw.get("renderer", "ifupdown")
    if not isinstance(renderer, str):
        raise ProfileError(f"{label}: renderer: expected a string")
    sections = {name: _as(raw[name], model, label, (name,)) for name, model in SECTIONS.items() if name in raw}
    bridges = {
        name: _as(table, Bridge, label, ("bridges", name))
        for name, table in sorted(_group(raw, "bridges", label).items())
    }
    networks = {
        name: _as(table, Network, label, ("networks", name))
        for name, table in sorted(_group(raw, "networks", label).items())
    }
    return HostProfile(
        hostname=hostname,
        source_name=source_name,
        renderer=renderer,
        bridges=bridges,
        networks=networks,
        **sections,  # type: ignore[arg-type]
    )


def _group(raw: dict[str, Any], key: str, label: str) -> dict[str, Any]:
    group = raw.get(key, {})
    if not isinstance(group, dict):
        raise ProfileError(f"{label}: {key}: expected a table of [{key}.NAME] tables")
    return group


def _as(value: Any, model: type[T], label: str, at: tuple[str, ...]) -> T:
    """msgspec.convert, with msgspec's `$.x` paths rewritten as the user's key path."""
    if not isinstance(value, dict):
        raise ProfileError(f"{label}: {keypath(*at)}: expected a table")
    try:
        return msgspec.convert(value, model)
    except msgspec.ValidationError as exc:
        found = _MSGSPEC_PATH.match(str(exc))
        msg, sub = (found["msg"], found["path"]) if found else (str(exc), "")
        path = keypath(*at) + sub
        raise ProfileError(f"{label}: {path}: {_plain(msg)}") from None


def _plain(msg: str) -> str:
    msg = msg.replace("`", "")
    if msg.startswith("Object missing required field "):
        return "missing required key " + msg.removeprefix("Object missing required field ")
    if msg.startswith("Invalid enum value "):
        return "invalid value " + msg.removeprefix("Invalid enum value ")
    return msg[:1].lower() + msg[1:]
