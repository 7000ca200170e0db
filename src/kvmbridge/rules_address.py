"""The address rules of a bridge: its ipv4 and ipv6 blocks, their DNS servers and router ads.

Split from `rules` by job: everything here reads one address block (and the
bridge's forwarding switch), nothing reads the whole profile.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

from .keypath import keypath
from .model import IPv4, IPv6

Problem = tuple[str, str]


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


def check_ipv4(block: IPv4, bridge_at: tuple[str, ...]) -> Iterator[Problem]:
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


def check_ipv6(block: IPv6, bridge_at: tuple[str, ...]) -> Iterator[Problem]:
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


def check_accept_ra(block: IPv6, at: tuple[str, ...], forwarding: bool) -> Iterator[Problem]:
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
