"""Cross-field rules of a profile: what types alone cannot say.

Each rule returns problems as (key path, message) so the loader can name the
file and the key. Rules are strict on purpose: every value ends up in files
that ifupdown's shell hooks, udev and libvirt read as root at boot.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterator

from .keypath import keypath
from .model import Bridge, HostProfile
from .renderers import RENDERERS
from .rules_address import Problem, check_accept_ra, check_ipv4, check_ipv6

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
            problems.extend(check_accept_ra(bridge.ipv6, ("bridges", name, "ipv6"), profile.sysctl.ipv6_forward))
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
    yield from check_ipv4(bridge.ipv4, at)
    if bridge.ipv6 is not None:
        yield from check_ipv6(bridge.ipv6, at)
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
