"""Cross-field rules of a profile: what types alone cannot say.

Each rule returns problems as (key path, message) so the loader can name the
file and the key. Rules are strict on purpose: every value ends up in files
that ifupdown's shell hooks, udev and libvirt read as root at boot.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Iterator

from .keypath import keypath
from .model import Bridge, HostProfile, IPv4, IPv6
from .renderers import RENDERERS

Problem = tuple[str, str]

IFNAME = re.compile(r"[A-Za-z0-9_.-]{1,15}")
# Words bridge-utils' `bridge_ports` parser treats as keywords, not names.
RESERVED_IFNAMES = frozenset({"lo", "all", "none", "regex", "noregex"})
NETNAME = re.compile(r"[A-Za-z0-9_.+-]{1,64}")
HOSTNAME_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
MAC = re.compile(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}")
UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
SOURCE_GLOB = re.compile(r"/[A-Za-z0-9_.*?\[\]/+-]*")

# Kernel limits (net/bridge/br_private.h, checked with `ip link` here), in seconds.
RANGES: dict[str, tuple[int, int]] = {
    "forward_delay": (0, 30),
    "max_wait": (0, 3600),
    "hello_time": (1, 10),
    "max_age": (6, 40),
    "ageing": (0, 1_000_000),
    "priority": (0, 65535),
    "mtu": (68, 65535),
}


def check_hostname(name: str) -> str | None:
    """Why `name` is not an RFC 1123 host name, or None when it is one."""
    if len(name) > 253 or not all(HOSTNAME_LABEL.fullmatch(label) for label in name.split(".")):
        return f"{name!r} is not a valid host name (letters, digits and '-', labels joined by '.')"
    return None


def check_ifname(name: str) -> str | None:
    """Why `name` cannot be a Linux interface name we write into shell-read files."""
    if not IFNAME.fullmatch(name) or name in (".", ".."):
        return f"{name!r} is not a valid interface name (1-15 characters from A-Z a-z 0-9 _ . -)"
    if name.startswith("-"):
        return f"{name!r} must not start with '-' (scripts would read it as an option)"
    if name in RESERVED_IFNAMES:
        return f"{name!r} is reserved (ifupdown or bridge-utils give it a special meaning)"
    return None


def check_profile(profile: HostProfile) -> list[Problem]:
    """Every broken rule of `profile`, in key order."""
    problems = list(_check_top(profile))
    for name, bridge in profile.bridges.items():
        problems.extend(_check_bridge(name, bridge))
        if bridge.ipv6 is not None:
            problems.extend(_check_accept_ra(bridge.ipv6, ("bridges", name, "ipv6"), profile.sysctl.ipv6_forward))
        problems.extend(_check_port_mac(profile.renderer, name, bridge))
    problems.extend(_check_ports(profile))
    problems.extend(_check_gateways(profile))
    problems.extend(_check_networks(profile))
    return problems


def _check_top(profile: HostProfile) -> Iterator[Problem]:
    why = check_hostname(profile.hostname)
    if why:
        yield "hostname", why
    if profile.renderer not in RENDERERS:
        yield "renderer", f"{profile.renderer!r} is not a renderer (choose one of: {', '.join(RENDERERS)})"
    for i, pattern in enumerate(profile.interfaces.source):
        if not SOURCE_GLOB.fullmatch(pattern) or "/../" in pattern + "/" or "//" in pattern:
            yield (
                keypath("interfaces", "source", i),
                f"{pattern!r} is not an absolute path or glob (characters A-Z a-z 0-9 _ . * ? [ ] / + -)",
            )
        elif fnmatch.fnmatchcase("/etc/network/interfaces", pattern):
            yield keypath("interfaces", "source", i), f"{pattern!r} would make /etc/network/interfaces source itself"
    if not profile.bridges:
        yield "bridges", "the profile defines no bridge; add a [bridges.NAME] table"


def _check_bridge(name: str, bridge: Bridge) -> Iterator[Problem]:
    at = ("bridges", name)
    why = check_ifname(name)
    if why:
        yield keypath(*at), why
    elif "." in name:
        # ifupdown and ifupdown2 read NAME.N as a VLAN of NAME (ifupdown2 fails the boot, ifupdown
        # makes a VLAN of another bridge or nothing); a port may be one, the bridge itself cannot
        yield keypath(*at), f"{name!r}: a bridge name must not contain '.' (ifupdown reads NAME.N as a VLAN of NAME)"
    seen: set[str] = set()
    for i, port in enumerate(bridge.ports):
        why = check_ifname(port)
        if why:
            yield keypath(*at, "ports", i), why
        elif port in seen:
            yield keypath(*at, "ports", i), f"{port!r} is listed twice"
        seen.add(port)
    for key, (low, high) in RANGES.items():
        value = getattr(bridge, key)
        if value is not None and not low <= value <= high:
            yield keypath(*at, key), f"{value} is outside {low}..{high}"
    if bridge.stp and bridge.forward_delay < 2:
        yield keypath(*at, "forward_delay"), "must be 2..30 when stp = true (the kernel refuses less)"
    if bridge.hwaddress is not None:
        why = _check_hwaddress(bridge.hwaddress, bridge.ports)
        if why:
            yield keypath(*at, "hwaddress"), why
    yield from _check_ipv4(bridge.ipv4, at)
    if bridge.ipv6 is not None:
        yield from _check_ipv6(bridge.ipv6, at)
        if bridge.mtu is not None and bridge.mtu < 1280:
            yield keypath(*at, "mtu"), f"{bridge.mtu} is below 1280, the minimum for IPv6"


def _check_port_mac(renderer: str, name: str, bridge: Bridge) -> Iterator[Problem]:
    """Only bridge-utils copies a port's MAC by name at boot; elsewhere the profile must say the MAC.

    Rendering stays pure (same bytes on any machine): the MAC is not looked
    up here. `init --from-host` writes the NIC's MAC itself.
    """
    stack = RENDERERS.get(renderer)
    if stack is None:
        return
    if bridge.ipv6 is not None and bridge.ipv6.method not in stack.ipv6_methods:
        yield (
            keypath("bridges", name, "ipv6", "method"),
            f"{bridge.ipv6.method!r} is not an ipv6 method {renderer} reads (choose one of: "
            f'{", ".join(stack.ipv6_methods)}; with "manual" the kernel still autoconfigures from router ads)',
        )
    if stack.copies_port_mac or bridge.hwaddress is None or bridge.hwaddress not in bridge.ports:
        return
    yield (
        keypath("bridges", name, "hwaddress"),
        f"{bridge.hwaddress!r} is a port name, but {renderer} cannot copy a port's MAC at boot; "
        f"write the MAC itself (`ip link show {bridge.hwaddress}`, or `kvmbridge init --from-host`)",
    )


def _check_hwaddress(value: str, ports: tuple[str, ...]) -> str | None:
    if MAC.fullmatch(value):
        first = int(value[:2], 16)
        if first & 1:
            return f"{value} is a multicast address; a bridge needs a unicast MAC"
        if value == "00:00:00:00:00:00":
            return "00:00:00:00:00:00 is not a usable MAC"
        return None
    if value in ports:
        return None
    return f"{value!r} is neither a MAC (aa:bb:cc:dd:ee:ff) nor one of this bridge's ports"


def _check_dns(dns: tuple[str, ...], at: tuple[str, ...]) -> Iterator[Problem]:
    for i, server in enumerate(dns):
        if "%" in server:
            yield keypath(*at, "dns", i), f"{server!r}: {ZONE}"
            continue
        try:
            ipaddress.ip_address(server)
        except ValueError:
            yield keypath(*at, "dns", i), f"{server!r} is not an IP address"


def _only_static(block: IPv4 | IPv6, at: tuple[str, ...]) -> Iterator[Problem]:
    for key in ("address", "gateway"):
        if getattr(block, key) is not None:
            yield keypath(*at, key), f'is only used with method = "static", not {block.method!r}'
    if isinstance(block, IPv6) and block.extra_addresses:
        yield keypath(*at, "extra_addresses"), f'is only used with method = "static", not {block.method!r}'
    if block.method == "manual" and block.dns:
        yield keypath(*at, "dns"), 'is not used with method = "manual"'


def _check_ipv4(block: IPv4, bridge_at: tuple[str, ...]) -> Iterator[Problem]:
    at = (*bridge_at, "ipv4")
    yield from _check_dns(block.dns, at)
    if block.method != "static":
        yield from _only_static(block, at)
        return
    if block.address is None:
        yield keypath(*at, "address"), 'is required with method = "static" (e.g. "10.0.0.2/24")'
        return
    try:
        iface = ipaddress.IPv4Interface(block.address)
    except ValueError:
        yield keypath(*at, "address"), f'{block.address!r} is not an IPv4 address with prefix (e.g. "10.0.0.2/24")'
        return
    if "/" not in block.address:
        yield keypath(*at, "address"), f'{block.address!r} needs a prefix length (e.g. "{block.address}/24")'
        return
    ip, net = iface.ip, iface.network
    if block.address != iface.with_prefixlen:
        # One spelling for every reader: ifupdown, netplan and `status` compare it as written.
        yield keypath(*at, "address"), f'write {block.address!r} as "{iface.with_prefixlen}"'
        return
    if ip.is_loopback or ip.is_multicast or ip.is_unspecified or ip.is_reserved:
        yield keypath(*at, "address"), f"{ip} cannot be a host address"
        return
    if (problem := _prefix(iface)) is not None:
        yield keypath(*at, "address"), problem
        return
    if net.prefixlen <= 30 and ip in (net.network_address, net.broadcast_address):
        kind = "network" if ip == net.network_address else "broadcast"
        yield keypath(*at, "address"), f"{ip} is the {kind} address of {net}"
    if block.gateway is not None:
        yield from _check_gateway4(block.gateway, iface, at)


def _check_gateway4(gateway: str, iface: ipaddress.IPv4Interface, at: tuple[str, ...]) -> Iterator[Problem]:
    try:
        gw = ipaddress.IPv4Address(gateway)
    except ValueError:
        yield keypath(*at, "gateway"), f"{gateway!r} is not an IPv4 address"
        return
    net = iface.network
    if gw not in net:
        yield keypath(*at, "gateway"), f"{gw} is outside {iface.with_prefixlen}"
    elif gw == iface.ip:
        yield keypath(*at, "gateway"), f"{gw} is this bridge's own address"
    elif net.prefixlen <= 30 and gw in (net.network_address, net.broadcast_address):
        yield keypath(*at, "gateway"), f"{gw} is the network or broadcast address of {net}"


# Python's ipaddress takes `ADDR%ZONE` with any zone text, spaces and `;` included, and ifupdown
# runs `ip -6 addr add ADDRESS ...` through sh: a zone would be a command at boot.
ZONE = "has a zone index (%...): not allowed (a profile names the link itself; sh would run what follows)"
# A host address's on-link prefix: a shorter one (/0 at worst) makes the kernel's prefix route beat the
# gateway (every destination "on-link"). /31, /32 and /127, /128 are point-to-point and host routes.
PREFIX4 = (8, 32)
PREFIX6 = (48, 128)
# ifupdown brings each extra up in its own stanza with its own DAD wait (~1-2 s each at boot);
# networking.service gives up after 5 minutes.
MAX_EXTRA_ADDRESSES = 32
IPV4_IN_IPV6 = ipaddress.IPv6Network("::/96")  # deprecated IPv4-compatible form (::a.b.c.d)


def host_address6(iface: ipaddress.IPv6Interface) -> str | None:
    """Why the rules refuse this IPv6 address with its prefix as a static one (init --from-host asks too)."""
    return _prefix(iface) or _ipv4_in_ipv6(iface.ip)


def _prefix(iface: ipaddress.IPv4Interface | ipaddress.IPv6Interface) -> str | None:
    (low, high), length = PREFIX4 if iface.version == 4 else PREFIX6, iface.network.prefixlen
    if low <= length <= high:
        return None
    return f"{iface.with_prefixlen}: prefix length /{length} is outside /{low}../{high} for a host address"


def _ipv4_in_ipv6(ip: ipaddress.IPv6Address) -> str | None:
    if ip.ipv4_mapped is not None or ip in IPV4_IN_IPV6:
        return f"{ip} is an IPv4 address written as IPv6 (::ffff:a.b.c.d or ::a.b.c.d): put it in ipv4"
    return None


def _check_ipv6(block: IPv6, bridge_at: tuple[str, ...]) -> Iterator[Problem]:
    at = (*bridge_at, "ipv6")
    yield from _check_dns(block.dns, at)
    zoned: list[tuple[tuple[str | int, ...], str | None]] = [(("address",), block.address)]
    zoned += [(("gateway",), block.gateway)]
    zoned += [(("extra_addresses", i), text) for i, text in enumerate(block.extra_addresses)]
    bad = [(key, text) for key, text in zoned if text is not None and "%" in text]
    for key, text in bad:
        yield keypath(*at, *key), f"{text!r}: {ZONE}"
    if bad:
        return
    if block.method != "static":
        yield from _only_static(block, at)
        return
    if block.address is None or "/" not in block.address:
        yield keypath(*at, "address"), 'is required with method = "static", with a prefix (e.g. "2001:db8::2/64")'
        return
    try:
        iface = ipaddress.IPv6Interface(block.address)
    except ValueError:
        yield keypath(*at, "address"), f"{block.address!r} is not an IPv6 address with prefix"
        return
    ip = iface.ip
    if ip.is_loopback or ip.is_multicast or ip.is_unspecified:
        yield keypath(*at, "address"), f"{ip} cannot be a host address"
        return
    if (problem := _prefix(iface) or _ipv4_in_ipv6(ip)) is not None:
        yield keypath(*at, "address"), problem
        return
    if len(block.extra_addresses) > MAX_EXTRA_ADDRESSES:
        yield (
            keypath(*at, "extra_addresses"),
            f"has {len(block.extra_addresses)} addresses; at most {MAX_EXTRA_ADDRESSES} (each one slows the boot)",
        )
        return
    ifaces = [iface]
    seen = {ip}
    for i, extra in enumerate(block.extra_addresses):
        problem, more = _extra_ipv6(extra, seen)
        if problem is not None:
            yield keypath(*at, "extra_addresses", i), problem
        elif more is not None:
            ifaces.append(more)
            seen.add(more.ip)
    if block.gateway is None:
        return
    try:
        gw = ipaddress.IPv6Address(block.gateway)
    except ValueError:
        yield keypath(*at, "gateway"), f"{block.gateway!r} is not an IPv6 address"
        return
    if any(gw == each.ip for each in ifaces):
        yield keypath(*at, "gateway"), f"{gw} is this bridge's own address"
    elif not any(gw in each.network for each in ifaces) and not gw.is_link_local:
        yield keypath(*at, "gateway"), f"{gw} is outside {iface.with_prefixlen} and not link-local"


def _extra_ipv6(text: str, earlier: set[ipaddress.IPv6Address]) -> tuple[str | None, ipaddress.IPv6Interface | None]:
    """One more static address: global or ULA, with a prefix, not one the bridge already has."""
    try:
        iface = ipaddress.IPv6Interface(text)
    except ValueError:
        return f"{text!r} is not an IPv6 address with prefix", None
    if "/" not in text:
        return f'{text!r} needs a prefix length (e.g. "{text}/64")', None
    ip = iface.ip
    if ip.is_loopback or ip.is_multicast or ip.is_unspecified or ip.is_link_local:
        return f"{ip} cannot be a static address of the bridge (the kernel makes its link-local one)", None
    if (problem := _prefix(iface) or _ipv4_in_ipv6(ip)) is not None:
        return problem, None
    if ip in earlier:
        return f"{ip} is already an address of this bridge", None
    return None, iface


def _check_accept_ra(block: IPv6, at: tuple[str, ...], forwarding: bool) -> Iterator[Problem]:
    value = block.accept_ra
    if value is None:
        return
    if block.method == "manual":
        yield keypath(*at, "accept_ra"), 'is not used with method = "manual"'
    elif not 0 <= value <= 2:
        yield keypath(*at, "accept_ra"), f"{value} is not 0 (ignore), 1 (accept) or 2 (accept even when forwarding)"
    elif block.method in ("auto", "dhcp") and value == 0:
        yield (
            keypath(*at, "accept_ra"),
            f'0 ignores router advertisements, which method = "{block.method}" needs (SLAAC prefix, default route)',
        )
    elif block.method in ("auto", "dhcp") and value == 1 and forwarding:
        yield (
            keypath(*at, "accept_ra"),
            "1 with sysctl.ipv6_forward = true: the kernel ignores router advertisements on a forwarding "
            "interface, so this bridge would get no address or no default route; use 2",
        )


def _check_ports(profile: HostProfile) -> Iterator[Problem]:
    owner: dict[str, str] = {}
    for name, bridge in profile.bridges.items():
        for i, port in enumerate(bridge.ports):
            if port in profile.bridges:
                yield keypath("bridges", name, "ports", i), f"{port!r} is a bridge of this profile, not a NIC"
            elif port in owner and owner[port] != name:
                yield keypath("bridges", name, "ports", i), f"{port!r} is already a port of bridge {owner[port]!r}"
            owner.setdefault(port, name)


def _check_gateways(profile: HostProfile) -> Iterator[Problem]:
    """ifupdown adds one default route per gateway; the second `ip route add` fails the bridge."""
    for family in ("ipv4", "ipv6"):
        first: str | None = None
        for name, bridge in profile.bridges.items():
            block = getattr(bridge, family)
            if block is None or block.gateway is None:
                continue
            if first is None:
                first = name
            else:
                yield (
                    keypath("bridges", name, family, "gateway"),
                    f"bridge {first!r} already has the default {family} gateway; only one bridge may have one",
                )


def _check_networks(profile: HostProfile) -> Iterator[Problem]:
    uuids: dict[str, str] = {}
    for name, network in profile.networks.items():
        at = ("networks", name)
        if not NETNAME.fullmatch(name) or name[0] in ".-":
            yield (
                keypath(*at),
                (
                    f"{name!r} is not a safe network name (1-64 characters from A-Z a-z 0-9 _ . + -, "
                    "not starting with '.' or '-')"
                ),
            )
        if network.bridge not in profile.bridges:
            known = ", ".join(sorted(profile.bridges)) or "none"
            yield keypath(*at, "bridge"), f"{network.bridge!r} is not a bridge of this profile (bridges: {known})"
        if network.uuid is not None:
            if not UUID.fullmatch(network.uuid):
                yield keypath(*at, "uuid"), f"{network.uuid!r} is not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)"
            elif network.uuid.lower() in uuids:
                yield keypath(*at, "uuid"), f"is the same as networks.{uuids[network.uuid.lower()]}.uuid"
            else:
                uuids[network.uuid.lower()] = name
