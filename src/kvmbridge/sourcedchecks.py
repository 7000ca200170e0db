"""Safety checks of what `interfaces` sources: files that still configure a port or bridge of the
profile (KB110: a stanza, an `auto`/`allow-` mark, a `mapping`, `no-scripts`, `no-auto-down` or
`rename` naming it, an alias or VLAN of a port) or assign an address the bridge takes (KB109),
read as the host's tool reads them."""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Iterator

from .findings import Finding
from .formats import ifupdown2
from .formats import interfaces as interfaces_format
from .formats.ifupdown_sources import expand_source
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
    for cls, names in parsed.allow.items():
        for name in names:
            if name in owned and name not in named:
                word = "auto" if cls == "auto" else f"allow-{cls}"
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
            if any(fnmatch.fnmatchcase(name, pattern) for pattern in mapping.patterns):
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
        names = word.split("=", 1) if keyword == "rename" else [word]
        severity, effect = SAID[keyword]
        for name in dict.fromkeys(n for n in names if n in owned):
            yield Finding(
                "KB110",
                severity,
                name,
                f"{file} (sourced by interfaces) says `{keyword} {word}` about this {owned[name]} (line {line}): "
                f"{effect}",
                f"remove `{keyword} {word}` from {file}",
            )


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
