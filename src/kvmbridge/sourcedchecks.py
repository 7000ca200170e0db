"""Safety checks of what `interfaces` sources: files that still configure a port or bridge of the
profile (KB110: a stanza, an `auto`/`allow-` mark, a `mapping`, `no-scripts`, `no-auto-down` or
`rename` naming it, an alias or VLAN of a port) or assign an address the bridge takes (KB109),
read as the host's tool reads them."""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Iterator

from .findings import Finding
from .formats import ifupdown2
from .formats import interfaces as interfaces_format
from .formats.ifupdown_sources import expand_source, python_glob
from .model import HostProfile
from .root import Root
from .rootfiles import RootFiles


def owned_names(profile: HostProfile) -> dict[str, str]:
    """Every interface the profile owns → what it is, for messages."""
    owned = {name: "bridge" for name in profile.bridges}
    for name, bridge in profile.bridges.items():
        owned |= {port: f"port of {name}" for port in bridge.ports}
    return owned


def reads_interfaces(profile: HostProfile) -> bool:
    return profile.renderer in ("ifupdown", "ifupdown2")


def sourced_files(profile: HostProfile, root: Root, dialect: str) -> Iterator[Finding]:
    """Files our `source` lines pull in still configuring what the profile owns.

    Read with the rules of the host's tool (ifupdown: `source` goes through
    wordexp and globs, `source-directory` reads only `[A-Za-z0-9_-]` names;
    ifupdown2 when the target has it installed); a file that tool refuses is
    a finding of its own, never skipped.
    """
    if not reads_interfaces(profile):
        return
    load = ifupdown2.load if dialect == "ifupdown2" else interfaces_format.load
    owned = owned_names(profile)
    ours = {
        ip_value(address, mapped_as_ipv4=False)
        for b in profile.bridges.values()
        for address in (b.ipv4.address, *(b.ipv6.addresses if b.ipv6 is not None else ()))
        if address is not None
    } - {None}
    files = RootFiles(root)
    for pattern in profile.interfaces.source:
        for path in expand_source("/etc/network/interfaces", pattern, files):
            try:
                if files.read(path) is None:
                    continue
                parsed = load(path, files)
            except interfaces_format.InterfacesError as exc:
                yield Finding(
                    "KB110",
                    "error",
                    exc.file,
                    f"{dialect} refuses this sourced file ({exc.reason}, line {exc.line}); "
                    "what it configures cannot be checked",
                    f"fix or remove {exc.file}",
                )
                continue
            yield from _sourced_findings(parsed, owned, ours)


def _sourced_findings(
    parsed: interfaces_format.Interfaces, owned: dict[str, str], ours: set[IPAddress | None]
) -> Iterator[Finding]:
    for stanza in parsed.stanzas:
        name = stanza.name
        if name in owned:
            yield Finding(
                "KB110",
                "error",
                name,
                f"{stanza.file} (sourced by interfaces) still configures this {owned[name]} (line {stanza.line})",
                f"remove the {name} stanza from {stanza.file}",
            )
        else:
            yield from _port_child(stanza, owned)
            yield from _claims(stanza, owned)
        for address in (stanza.get("address") or "").split("\n"):
            if address and ip_value(address, mapped_as_ipv4=False) in ours and name not in owned:
                yield Finding(
                    "KB109",
                    "error",
                    name,
                    f"{stanza.file} still assigns {address.split('/')[0]}, which the profile moves to the bridge",
                    f"remove that address from {stanza.file}",
                )
    yield from _mappings(parsed, owned)
    yield from _said(parsed, owned)
    named = {s.name for s in parsed.stanzas}
    for cls, words in parsed.allow.items():
        for word_text in words:
            word = "auto" if cls == "auto" else f"allow-{cls}"
            if "=" in word_text or "/" in word_text:
                yield from _pattern_mark(parsed, owned, cls, word, word_text)
                continue
            name = word_text
            if name in owned and name not in named:
                yield Finding(
                    "KB110",
                    "error",
                    name,
                    f"{parsed.marked_in(cls, name)} marks this {owned[name]} {word}",
                    f"remove `{word} {name}` from {parsed.marked_in(cls, name)}",
                )


def _port_child(stanza: interfaces_format.Stanza, owned: dict[str, str]) -> Iterator[Finding]:
    """`iface eth0:1` puts its address on eth0 itself (an alias is only a label), on an enslaved port;
    `iface eth0.100` takes that VLAN's frames off the port before the bridge sees them."""
    ports = {name for name, what in owned.items() if what != "bridge"}  # a bridge's own alias is legitimate
    base, sep, _ = stanza.name.partition(":")
    if sep and base in ports:
        yield Finding(
            "KB110",
            "error",
            stanza.name,
            f"{stanza.file} (sourced by interfaces) configures an alias of {base}, {owned[base]} (line "
            f"{stanza.line}): ifupdown adds its address to {base} itself, which the bridge enslaves",
            f"remove the {stanza.name} stanza from {stanza.file} (an extra address belongs on the bridge)",
        )
    base, sep, vid = stanza.name.rpartition(".")
    if sep and vid.isdigit() and base in ports:
        yield Finding(
            "KB110",
            "warning",
            stanza.name,
            f"{stanza.file} (sourced by interfaces) configures VLAN {vid} on {base}, {owned[base]} (line "
            f"{stanza.line}): those frames leave the port before the bridge sees them",
            f"check that VLAN {vid} is not meant for the VMs; otherwise put it on the bridge ({stanza.name} → "
            "a VLAN of the bridge) or remove it",
        )


def _mappings(parsed: interfaces_format.Interfaces, owned: dict[str, str]) -> Iterator[Finding]:
    """A `mapping` whose pattern matches a name runs its script at `ifup` and configures the logical
    interface it prints instead of our stanza (ifupdown matches the patterns as shell globs)."""
    for mapping in parsed.mappings:
        for name, what in owned.items():
            if any(c_fnmatch(pattern, name) for pattern in mapping.patterns):
                yield Finding(
                    "KB110",
                    "error",
                    name,
                    f"{mapping.file} (sourced by interfaces) maps this {what} (`mapping "
                    f"{' '.join(mapping.patterns)}`, line {mapping.line}): ifupdown configures what its script "
                    "names instead of the stanza kvmbridge writes",
                    f"remove the mapping from {mapping.file}, or narrow its patterns",
                )


SAID = {  # keyword: (severity, what ifupdown then does)
    "no-scripts": ("error", "ifupdown skips the if-pre-up.d hooks that create the bridge and enslave its ports"),
    "rename": ("error", "ifupdown renames it, and the profile's name no longer finds it"),
    "no-auto-down": ("warning", "ifdown -a leaves it up at shutdown"),
}


def _said(parsed: interfaces_format.Interfaces, owned: dict[str, str]) -> Iterator[Finding]:
    """`no-scripts`, `no-auto-down` and `rename` lines naming an interface the profile owns."""
    for keyword, word, file, line in parsed.said:
        if keyword == "rename":  # FROM=TO, FROM a name or a pattern (config.c: rename takes patterns)
            source, _, target = word.partition("=")
            names = [n for n in owned if n == target or _matches(source, n) is not False]
        else:  # no-scripts / no-auto-down words are fnmatch(3) patterns on the name
            names = [n for n in owned if c_fnmatch(word, n)]
        severity, effect = SAID[keyword]
        for name in dict.fromkeys(names):
            yield Finding(
                "KB110",
                severity,
                name,
                f"{file} (sourced by interfaces) says `{keyword} {word}` about this {owned[name]} (line {line}): "
                f"{effect}",
                f"remove `{keyword} {word}` from {file}",
            )


def c_fnmatch(pattern: str, name: str) -> bool:
    """fnmatch(3) as ifupdown calls it (flags 0): POSIX brackets (`[[:alpha:]]`, `[^x]`) included,
    which Python's fnmatch reads otherwise."""
    return fnmatch.fnmatchcase(name, python_glob(pattern))


def _matches(physical: str, name: str) -> bool | None:
    """Whether an `auto`/`allow-`/`rename` word's physical part selects `name`: a plain name, or an
    interfaces(5) pattern `[VARIABLE]/VALUE[/N]`. True/False for a name pattern; None ("may match")
    when it compares a /sys attribute (`mac/...`), which only the running host can answer."""
    if "/" not in physical:
        return physical == name
    variable, _, rest = physical.partition("/")
    value, _, _nth = rest.partition("/")
    if variable:
        return None
    return c_fnmatch(value, name)


def _pattern_mark(
    parsed: interfaces_format.Interfaces, owned: dict[str, str], cls: str, word: str, text: str
) -> Iterator[Finding]:
    """`auto eth0=lan`, `auto /eth*=lan`, `allow-hotplug mac/52:54:*`: ifup configures the logical
    interface (after `=`, else the name itself) on every interface the physical part selects."""
    physical, _, logical = text.partition("=")
    where = parsed.marked_in(cls, text)
    for name, what in owned.items():
        hit = _matches(physical, name)
        if hit is False or (hit and (logical or name) == name and "/" not in physical):
            continue
        how = "may select" if hit is None else "selects"
        yield Finding(
            "KB110",
            "error" if hit else "warning",
            name,
            f"{where} (sourced by interfaces) has `{word} {text}`, which {how} this {what}: ifup -a "
            f"configures {logical or 'it'} on it at boot",
            f"remove `{word} {text}` from {where}, or narrow its pattern",
        )


CLAIMS = (
    "bridge_ports",
    "bridge-ports",
    "bond-slaves",
    "bond_slaves",
    "bond-master",
    "bond_master",
    "vlan-raw-device",
    "vlan_raw_device",
)


def _claims(stanza: interfaces_format.Stanza, owned: dict[str, str]) -> Iterator[Finding]:
    """Another stanza that enslaves a port of the profile (a leftover bridge, a bond, a VLAN's raw
    device): its `auto` comes before ours, so the port is taken and the profile's bridge boots portless."""
    ports = {name: what for name, what in owned.items() if what != "bridge"}
    for key in CLAIMS:
        value = stanza.get(key)
        if not value:
            continue
        words = value.split()
        if words[:1] == ["regex"]:  # bridge-utils: regex PATTERN... (matched against every NIC)
            claimed = [p for p in ports if any(_regex(w, p) for w in words[1:] if w != "regex")]
        elif "all" in words:
            claimed = list(ports)
        else:
            claimed = [p for p in ports if p in words]
        for port in claimed:
            yield Finding(
                "KB110",
                "error",
                port,
                f"{stanza.file} (sourced by interfaces) has {stanza.name} take this {ports[port]} "
                f"(`{key} {value}`, line {stanza.line}): the port is taken before the profile's bridge",
                f"remove the {stanza.name} stanza from {stanza.file}, or {port} from its {key}",
            )


def _regex(pattern: str, name: str) -> bool:
    try:
        return re.search(pattern, name) is not None
    except re.error:
        return True  # bridge-utils' egrep would read what Python cannot: assume it may match


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def ip_value(text: str, *, mapped_as_ipv4: bool = True) -> IPAddress | None:
    """An address as a value, so 2001:db8::2 and 2001:0db8:0::2 are the same.

    ::ffff:a.b.c.d is the IPv4 address for a socket (sshd on :: reports an IPv4 client so), but
    a different kernel address on an interface: KB109 compares interface addresses unfolded.
    """
    try:
        address = ipaddress.ip_interface(text.strip()).ip
    except ValueError:
        return None
    if mapped_as_ipv4 and isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
