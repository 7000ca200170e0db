"""Safety checks about the running host (root `/` only): a port that does not exist (KB113), and an
SSH session the new configuration would cut (KB101): through a NIC the bridge enslaves without
carrying its address, or one whose stanza the new `interfaces` drops."""

from __future__ import annotations

import ipaddress
import posixpath
from collections.abc import Callable, Iterator
from typing import Any

from .fileset import RenderedSet
from .findings import Finding
from .formats import ifupdown2
from .formats import interfaces as interfaces_format
from .livehost import LiveHost
from .model import Bridge, HostProfile
from .root import Root
from .rootfiles import RootFiles
from .sourcedchecks import ip_value, reads_interfaces


def live_host(
    profile: HostProfile, live: LiveHost, dropped: Callable[[str], interfaces_format.Stanza | None]
) -> Iterator[Finding]:
    existing = live.link_names()
    for name, bridge in profile.bridges.items():
        for port in bridge.ports:
            if port not in existing:
                yield Finding(
                    "KB113",
                    "error",
                    port,
                    f"port of {name} does not exist on this host (renamed NIC?)",
                    f"check `ip link` and fix bridges.{name}.ports",
                )
    seen: set[tuple[str, str | None]] = set()
    for who, connection in _sessions(live):
        parts = connection.split()
        if len(parts) != 4:
            continue
        local, _, scope = parts[2].partition("%")  # a link-local address comes with its link: fe80::2%eth0
        address = ip_value(local)
        server = str(address) if address is not None else local  # sshd on :: shows IPv4 as ::ffff:a.b.c.d
        nic = scope if scope and scope in existing else live.nic_holding(server)
        if (server, nic) in seen:  # the findings hang on the address and its NIC only
            continue
        seen.add((server, nic))
        yield from _session(profile, live, dropped, who=who, server=server, nic=nic)


def _sessions(live: LiveHost) -> Iterator[tuple[str, str]]:
    """Ours (SSH_CONNECTION, when sudo kept it) first, then every session sshd holds on this host:
    another admin's session is cut as surely as ours."""
    if live.ssh_connection:
        yield "your SSH session", live.ssh_connection
    for connection in live.ssh_sessions:
        yield f"the SSH session from {connection.split()[0]}", connection


def _session(
    profile: HostProfile,
    live: LiveHost,
    dropped: Callable[[str], interfaces_format.Stanza | None],
    *,
    who: str,
    server: str,
    nic: str | None,
) -> Iterator[Finding]:
    owned = {port for bridge in profile.bridges.values() for port in bridge.ports} | set(profile.bridges)
    stanza = dropped(nic) if nic is not None and nic not in owned else None
    if stanza is not None:
        yield Finding(
            "KB101",
            "error",
            nic or server,
            f"{who} arrives on {server} at {nic}, which {stanza.file}:{stanza.line} configures "
            f"({' '.join(w for w in (stanza.family, stanza.method) if w) or 'iface'}); "
            "the new /etc/network/interfaces drops that: you would be locked out",
            f"move the {nic} stanza (and its auto line) to a file the profile sources, "
            f"e.g. /etc/network/interfaces.d/{nic}, or bridge {nic} in the profile",
        )
    for name, bridge in profile.bridges.items():
        # a bridge the host has under another name loses the ports this one takes: its addresses go too
        taken = [] if nic is None or nic in profile.bridges else sorted(set(live.members(nic)) & set(bridge.ports))
        if nic != name and nic not in bridge.ports and not taken:
            continue
        keeps, caveat = _carries(bridge, server, (live.link(nic) if nic else None) or {}, profile.renderer)
        # a host bridged already: the session may arrive on the bridge itself, which the profile readdresses
        what = (
            f"which the profile configures as bridge {name}"
            if nic == name
            else f"whose port {', '.join(taken)} bridge {name} takes"
            if taken
            else f"which bridge {name} enslaves"
        )
        if not keeps:
            yield Finding(
                "KB101",
                "error",
                nic or server,
                f"{who} arrives on {server} at {nic}, {what} without carrying that address: you would be locked out",
                f"give {name} address {server} with its prefix (static), "
                f"or {'SLAAC or DHCP' if ':' in server else 'DHCP'} with hwaddress = "
                f'"{nic if nic != name else (live.link(nic) or {}).get("address", "its MAC")}"',
            )
        elif caveat:
            yield Finding(
                "KB101",
                "warning",
                nic or server,
                f"{who} arrives on {server} at {nic}; {caveat}",
                (f"reserve {server} for the kept MAC on the DHCPv6 server, or make it static"),
            )


def dropped_stanza(
    profile: HostProfile, files: RenderedSet, root: Root, dialect: str, nic: str
) -> interfaces_format.Stanza | None:
    """The stanza bringing up `nic` from the interfaces file that install replaces, when the new file
    (with what it sources from the root) no longer does: that NIC goes unconfigured after the reboot."""
    new = next((f.data for f in files if f.path == "/etc/network/interfaces" and f.data is not None), None)
    if new is None or not reads_interfaces(profile):
        return None
    load = ifupdown2.load if dialect == "ifupdown2" else interfaces_format.load
    on_root = RootFiles(root)
    try:
        before = load("/etc/network/interfaces", on_root)
        after = load("/etc/network/interfaces", _Replaced(on_root, "/etc/network/interfaces", new))
    except interfaces_format.InterfacesError:  # KB110 reports what cannot be read
        return None
    stanza = next((s for s in before.stanzas if s.name == nic), None)
    if stanza is None:
        return None
    if not any(s.name == nic for s in after.stanzas) or (_at_boot(before, nic) and not _at_boot(after, nic)):
        return stanza
    return None


def _at_boot(parsed: interfaces_format.Interfaces, nic: str) -> bool:
    """ifup -a (auto) or udev (allow-hotplug) brings the NIC up at boot."""
    marked = (*parsed.allow.get("auto", ()), *parsed.allow.get("hotplug", ()))
    return nic in marked or any(s.auto for s in parsed.stanzas if s.name == nic)


class _Replaced:
    """The root's files as they will be after install: one file swapped for its new bytes."""

    def __init__(self, files: RootFiles, path: str, data: bytes) -> None:
        self.files, self.path, self.data = files, path, data

    def read(self, path: str) -> bytes | None:
        return self.data if posixpath.normpath(path) == self.path else self.files.read(path)

    def glob(self, pattern: str) -> list[str]:
        return self.files.glob(pattern)

    def listdir(self, path: str) -> list[str] | None:
        return self.files.listdir(path)


def _carries(bridge: Bridge, server: str, nic_link: dict[str, Any], renderer: str) -> tuple[bool, str | None]:
    """Whether the bridge will hold `server` after the reboot, and what that hangs on.

    Both families count alike: a static address must be the same; DHCPv4 keeps
    its lease through the kept MAC (we send no client-id); SLAAC and link-local
    addresses keep their EUI-64 interface identifier only with the same MAC;
    DHCPv6 leases follow the client's DUID, which the bridge's dhclient makes anew, except where the
    ifupdown/ifupdown2 renderers' pre-up seeds it from the port's lease file.
    """
    address = ip_value(server)
    if address is None:
        return True, None
    kept_mac = bridge.hwaddress is not None and (
        bridge.hwaddress in bridge.ports or bridge.hwaddress.lower() == str(nic_link.get("address", "")).lower()
    )
    if address.version == 4:
        block4 = bridge.ipv4
        static = block4.method == "static" and block4.address is not None and ip_value(block4.address) == address
        return static or (block4.method == "dhcp" and bridge.hwaddress is not None), None
    block = bridge.ipv6
    eui64 = kept_mac and _eui64(address, str(nic_link.get("address", "")))
    if address.is_link_local:
        return bool(eui64), None
    if block is None or block.method == "manual":
        return False, None
    if block.method == "static":
        return any(ip_value(each) == address for each in block.addresses), None
    if block.method == "auto":
        return bool(eui64), None
    if not kept_mac:
        return False, None
    if renderer in ("ifupdown", "ifupdown2"):
        return True, (
            "the bridge's first dhclient starts from the DUID in /var/lib/dhcp/dhclient6.PORT.leases and the "
            "kept MAC gives it the same IAID, so the server hands the lease back; a host whose DHCPv6 client "
            "was not ifupdown's dhclient has no such file and needs a reservation"
        )
    return True, (
        "DHCPv6 leases follow the client's DUID, which changes with the bridge: the server must hand this "
        "address to the kept MAC (a reservation), or the session is lost after the reboot"
    )


def _eui64(address: ipaddress.IPv6Address, mac: str) -> bool:
    """Whether the address's interface identifier is the modified EUI-64 of `mac` (RFC 4291)."""
    parts = mac.split(":")
    if len(parts) != 6:
        return False
    try:
        octets = [int(p, 16) for p in parts]
    except ValueError:
        return False
    octets[0] ^= 0x02
    iid = bytes([*octets[:3], 0xFF, 0xFE, *octets[3:]])
    return address.packed[8:] == iid


def _same_ip(cidr: str, address: str) -> bool:
    try:
        return ipaddress.ip_interface(cidr).ip == ipaddress.ip_address(address)
    except ValueError:
        return False
