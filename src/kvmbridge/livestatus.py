"""Did it come up? The running host compared with a profile.

`livefacts.gather_facts` is the only part that looks at the machine (`ip -j`, `/proc/sys`,
`virsh`, the installed files); `compare` is a pure function of the profile, its
render and those facts, so tests feed it facts captured from namespaces.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .fileset import RenderedSet
from .livefacts import Facts, sysctl_values
from .model import Bridge, HostProfile

FILE_STATUS = {
    "create": "missing",
    "update": "different",
    "drift": "changed by someone else (drift)",
    "remove": "no longer rendered but still there",
}
# The boot guard's self-check judges the files against the hashes its install recorded, not a render.
INSTALLED_STATUS = {"changed": "different", "gone": "missing", "kept": "there (the install removed it)"}


@dataclass(frozen=True)
class Mismatch:
    """One way the running host differs from the profile: `subject` is a bridge, key, network or file."""

    subject: str
    check: str
    expected: str
    found: str

    def line(self) -> str:
        return f"{self.subject}: {self.check}: expected {self.expected}, found {self.found}"

    def as_dict(self) -> dict[str, str]:
        return {**vars(self), "line": self.line()}


@dataclass(frozen=True)
class Status:
    mismatches: tuple[Mismatch, ...]
    notes: tuple[str, ...]
    checked: dict[str, int]
    # notes about something still settling (an address in duplicate address detection):
    # as profiled for `status`, but auto-confirm waits for them to clear
    pending: tuple[str, ...] = ()

    @property
    def as_profiled(self) -> bool:
        return not self.mismatches


def compare(profile: HostProfile, files: RenderedSet, facts: Facts) -> Status:
    """Every mismatch between the profile (and its render) and the running host."""
    mismatches: list[Mismatch] = []
    notes: list[str] = []
    for name, bridge in profile.bridges.items():
        mismatches += _bridge(name, bridge, facts)
        if bridge.ipv6 is not None and facts.link(name) is not None:
            mismatches += _ipv6_conf(name, bridge, profile.sysctl.ipv6_forward, facts, profile.renderer)
    notes += stp_settling(profile, facts)
    pending = list(tentative_addresses(profile, facts))
    notes += pending
    mismatches += _routes(profile, facts)
    wanted = sysctl_values(files)
    for key, value in wanted.items():
        found = facts.sysctl.get(key)
        if found is None:
            if key.startswith("net.bridge.") and not facts.br_netfilter:
                notes.append(f"{key}: not checked: br_netfilter is not loaded (the udev rule applies it when it loads)")
                continue
            mismatches.append(Mismatch(key, "value", value, "no such key"))
        elif found.split() != value.split():
            mismatches.append(Mismatch(key, "value", value, found))
    mismatches += _networks(profile, facts)
    for path, status in facts.files:
        if status in INSTALLED_STATUS:
            mismatches.append(Mismatch(path.lstrip("/"), "installed file", "as installed", INSTALLED_STATUS[status]))
        else:
            mismatches.append(
                Mismatch(path.lstrip("/"), "installed file", "as rendered", FILE_STATUS.get(status, status))
            )
    checked = {
        "bridges": len(profile.bridges),
        "sysctl": len(wanted),
        "networks": len(profile.networks),
        "files": len(files),
    }
    return Status(tuple(mismatches), tuple(notes), checked, tuple(pending))


def _bridge(name: str, bridge: Bridge, facts: Facts) -> Iterator[Mismatch]:
    link = facts.link(name)
    if link is None:
        yield Mismatch(name, "bridge", "present", "no such interface")
        return
    info = link.get("linkinfo", {})
    if info.get("info_kind") != "bridge":
        yield Mismatch(name, "kind", "bridge", str(info.get("info_kind") or "not a bridge"))
        return
    if "UP" not in link.get("flags", []):
        yield Mismatch(name, "state", "up", "down")
    members = [m for m in facts.members(name) if m in bridge.ports or not _guest_interface(facts.link(m) or {})]
    if members != sorted(bridge.ports):
        yield Mismatch(name, "ports", _words(sorted(bridge.ports)), _words(members))
    for port in bridge.ports:
        port_link = facts.link(port)
        if port_link is None or port not in members:
            continue
        if "UP" not in port_link.get("flags", []):
            yield Mismatch(port, "state", "up", "down")
        elif not _carrier(port_link):
            yield Mismatch(port, "carrier", "up", _no_carrier(port_link))
    yield from _bridge_carrier(name, bridge, link, facts, members)
    data = info.get("info_data", {})
    stp = data.get("stp_state", 0) != 0
    if stp != bridge.stp:
        yield Mismatch(name, "stp", _on(bridge.stp), _on(stp))
    # `ip -j -d` gives the timers in centiseconds.
    timers = {"forward_delay": bridge.forward_delay, "hello_time": bridge.hello_time, "max_age": bridge.max_age}
    for key, seconds in timers.items():
        if seconds is not None and data.get(key) != seconds * 100:
            yield Mismatch(name, key, f"{seconds}s", _seconds(data.get(key)))
    if bridge.ageing is not None:
        # 802.1D: during a topology change the kernel ages entries after 2 * forward_delay instead.
        changing = data.get("topology_change") or data.get("topology_change_detected")
        expected = 2 * bridge.forward_delay if changing else bridge.ageing
        if data.get("ageing_time") != expected * 100:
            yield Mismatch(name, "ageing", f"{expected}s", _seconds(data.get("ageing_time")))
    if bridge.priority is not None and data.get("priority") != bridge.priority:
        yield Mismatch(name, "priority", str(bridge.priority), str(data.get("priority")))
    if bridge.mtu is not None and link.get("mtu") != bridge.mtu:
        yield Mismatch(name, "mtu", str(bridge.mtu), str(link.get("mtu")))
    if bridge.hwaddress is not None:
        expected_mac = bridge.hwaddress.lower()
        if bridge.hwaddress in bridge.ports:
            port_link = facts.link(bridge.hwaddress)
            expected_mac = str(port_link.get("address")) if port_link else f"the MAC of {bridge.hwaddress}"
        if str(link.get("address", "")).lower() != expected_mac:
            yield Mismatch(name, "mac", expected_mac, str(link.get("address")))
    yield from _addresses(name, bridge, facts)


# Operational states (RFC 2863, as `ip` shows them) in which an interface that is up passes no traffic.
_DOWN_OPERSTATES = frozenset({"DOWN", "LOWERLAYERDOWN", "NOTPRESENT", "DORMANT", "TESTING"})
# A port with a link walks listening -> learning -> forwarding, forward_delay each, when STP is on.
_STP_TRANSIENT = frozenset({"listening", "learning"})


def _carrier(link: dict[str, Any]) -> bool:
    """Up in the operational sense: a link partner (carrier) and an operstate that passes traffic."""
    return "NO-CARRIER" not in link.get("flags", []) and link.get("operstate") not in _DOWN_OPERSTATES


def _no_carrier(link: dict[str, Any]) -> str:
    if "NO-CARRIER" in link.get("flags", []):
        return "no carrier"
    return f"operstate {str(link.get('operstate')).lower()}"


def _stp_state(link: dict[str, Any]) -> str:
    return str(link.get("linkinfo", {}).get("info_slave_data", {}).get("state", "unknown"))


def _bridge_carrier(
    name: str, bridge: Bridge, link: dict[str, Any], facts: Facts, members: list[str]
) -> Iterator[Mismatch]:
    """A bridge has carrier once one of its ports forwards. A port with a link that STP still holds in
    listening or learning (2 x forward_delay after it came up, at every boot) is on its way, not a fault:
    that is left to the note `status` prints and to auto-confirm's retries; anything else is a mismatch."""
    if not bridge.ports or "UP" not in link.get("flags", []) or _carrier(link):
        return
    ports = [(port, facts.link(port) or {}) for port in members if port in bridge.ports]
    if any(_carrier(port_link) and _stp_state(port_link) in _STP_TRANSIENT for _, port_link in ports):
        return
    why = ", ".join(f"{port} {_stp_state(port_link)}" for port, port_link in ports if _carrier(port_link))
    found = _no_carrier(link) + (f" (no port forwards: {why})" if why else " (no port has a link)")
    yield Mismatch(name, "carrier", "up", found)


def stp_settling(profile: HostProfile, facts: Facts) -> Iterator[str]:
    """Notes for bridges not forwarding yet because STP still listens or learns on their ports."""
    for name, bridge in profile.bridges.items():
        link = facts.link(name)
        if link is None or _carrier(link) or "UP" not in link.get("flags", []):
            continue
        settling = [
            f"{port} {_stp_state(port_link)}"
            for port in bridge.ports
            if (port_link := facts.link(port)) is not None
            and port_link.get("master") == name
            and _carrier(port_link)
            and _stp_state(port_link) in _STP_TRANSIENT
        ]
        if settling:
            yield (
                f"{name}: not forwarding yet: STP is {', '.join(settling)}; "
                f"it forwards within 2 x forward_delay ({2 * bridge.forward_delay}s) of the port's link"
            )


def _guest_interface(link: dict[str, Any]) -> bool:
    """A VM's interface on the bridge (qemu's tap, libvirt's `vnetN`): a guest, not a port of the profile."""
    name = str(link.get("ifname", ""))
    kind = link.get("linkinfo", {}).get("info_kind")
    return kind == "tun" or (name.startswith("vnet") and name[4:].isdigit())


def _addresses(name: str, bridge: Bridge, facts: Facts) -> Iterator[Mismatch]:
    v4 = facts.addresses(name, "inet")
    if bridge.ipv4.method == "static" and bridge.ipv4.address:
        if _normal(bridge.ipv4.address) not in {_normal(c) for c in _cidrs(v4)}:
            yield Mismatch(name, "ipv4 address", bridge.ipv4.address, _words(_cidrs(v4)))
    elif bridge.ipv4.method == "dhcp" and not any(a.get("dynamic") for a in v4):
        yield Mismatch(name, "ipv4 address", "a DHCP lease (dynamic address)", _words(_cidrs(v4)))
    if bridge.ipv6 is None:
        return
    v6 = facts.addresses(name, "inet6")
    if bridge.ipv6.method == "static" and bridge.ipv6.address:
        failed = {_normal(c) for c in _cidrs([a for a in v6 if a.get("dadfailed")])}
        for address in bridge.ipv6.addresses:
            if _normal(address) in failed:
                yield Mismatch(name, "ipv6 address", address, f"{address} duplicate on the LAN (DAD failed: unused)")
            elif _normal(address) not in {_normal(c) for c in _cidrs(v6)}:
                yield Mismatch(name, "ipv6 address", address, _words(_cidrs(v6)))
        return
    v6 = [a for a in v6 if not a.get("dadfailed")]
    if bridge.ipv6.method == "auto" and not [a for a in v6 if _slaac(a)]:
        yield Mismatch(name, "ipv6 address", "a SLAAC address (dynamic, /64, from the advertised prefix)", _v6(v6))
    elif bridge.ipv6.method == "dhcp" and not [a for a in v6 if a.get("dynamic")]:
        yield Mismatch(name, "ipv6 address", "a DHCPv6 lease (dynamic address)", _v6(v6))


def tentative_addresses(profile: HostProfile, facts: Facts) -> Iterator[str]:
    """Profiled static IPv6 addresses still in duplicate address detection: not usable yet, not wrong yet."""
    for name, bridge in profile.bridges.items():
        if bridge.ipv6 is None or bridge.ipv6.method != "static":
            continue
        wanted = {_normal(address): address for address in bridge.ipv6.addresses}
        for live in facts.addresses(name, "inet6"):
            address = wanted.get(_normal(f"{live.get('local')}/{live.get('prefixlen')}"))
            if address is not None and live.get("tentative") and not live.get("dadfailed"):
                yield f"{name}: ipv6 address {address} is still tentative (duplicate address detection running)"


def _slaac(address: dict[str, Any]) -> bool:
    """An address the kernel made from a router advertisement: it expires, spans the /64, is not a privacy one."""
    return bool(address.get("dynamic")) and address.get("prefixlen") == 64 and not address.get("temporary")


def _v6(addresses: list[dict[str, Any]]) -> str:
    return _words(
        [f"{a.get('local')}/{a.get('prefixlen')}" + (" (dynamic)" if a.get("dynamic") else "") for a in addresses]
    )


def _ipv6_conf(name: str, bridge: Bridge, forwarding: bool, facts: Facts, renderer: str) -> Iterator[Mismatch]:
    """accept_ra and forwarding as written, and the trap between them: RAs ignored on a forwarding bridge.

    systemd-networkd (netplan) takes router advertisements in user space and sets the kernel's
    accept_ra to 0 itself: there the SLAAC address and the RA default route are the evidence.
    """
    assert bridge.ipv6 is not None
    conf = facts.ipv6_conf.get(name)
    if conf is None:
        if bridge.ipv6.method != "manual":
            yield Mismatch(name, "ipv6", "enabled", "disabled (no /proc/sys/net/ipv6/conf entry)")
        return
    if forwarding and conf.get("forwarding") != "1":
        yield Mismatch(name, "ipv6 forwarding", "1", conf.get("forwarding", "unknown"))
    if renderer == "netplan":
        return
    accept_ra = bridge.ipv6.effective_accept_ra(forwarding)
    if accept_ra is not None and conf.get("accept_ra") != str(accept_ra):
        yield Mismatch(name, "accept_ra", str(accept_ra), conf.get("accept_ra", "unknown"))
    if bridge.ipv6.method in ("auto", "dhcp") and conf.get("forwarding") == "1" and conf.get("accept_ra") != "2":
        yield Mismatch(
            name,
            "router advertisements",
            "accepted (accept_ra 2 on a forwarding interface)",
            f"ignored (accept_ra {conf.get('accept_ra', 'unknown')}, forwarding 1)",
        )


def _routes(profile: HostProfile, facts: Facts) -> Iterator[Mismatch]:
    static_gateway = any(b.ipv4.gateway for b in profile.bridges.values())
    static_gateway6 = any(b.ipv6.gateway for b in profile.bridges.values() if b.ipv6 is not None)
    for name, bridge in profile.bridges.items():
        if facts.link(name) is None:
            continue  # already reported once, as missing
        if bridge.ipv4.gateway:
            if not _default_via(facts.routes4, name, bridge.ipv4.gateway):
                yield Mismatch(name, "ipv4 default route", f"via {bridge.ipv4.gateway}", _defaults(facts.routes4))
        elif bridge.ipv4.method == "dhcp" and not static_gateway and not _default_via(facts.routes4, name, None):
            yield Mismatch(name, "ipv4 default route", "via the DHCP server's router", _defaults(facts.routes4))
        v6_gateway = bridge.ipv6.gateway if bridge.ipv6 is not None else None
        if v6_gateway and not _default_via(facts.routes6, name, v6_gateway):
            yield Mismatch(name, "ipv6 default route", f"via {v6_gateway}", _defaults(facts.routes6))
        elif (
            bridge.ipv6 is not None
            and bridge.ipv6.method in ("auto", "dhcp")
            and not static_gateway6
            and not any(r.get("dst") == "default" and r.get("dev") == name for r in facts.routes6)
        ):
            yield Mismatch(name, "ipv6 default route", "via the advertising router", _defaults(facts.routes6))


def _networks(profile: HostProfile, facts: Facts) -> Iterator[Mismatch]:
    if not profile.networks:
        return
    if facts.networks is None:
        reason = facts.libvirt_error or "virsh is not installed"
        for name in profile.networks:
            yield Mismatch(f"network {name}", "libvirt", "defined", f"unknown: {reason}")
        return
    for name, network in profile.networks.items():
        info = facts.networks.get(name)
        subject = f"network {name}"
        if info is None:
            yield Mismatch(subject, "defined", "yes", "no")
            continue
        wanted = {"Persistent": True, "Autostart": network.autostart}
        if network.autostart:
            wanted["Active"] = True
        for key, value in wanted.items():
            if (info.get(key) == "yes") != value:
                yield Mismatch(subject, key.lower(), _yes(value), info.get(key, "unknown"))
        if info.get("Bridge") != network.bridge:
            yield Mismatch(subject, "bridge", network.bridge, info.get("Bridge", "none"))


def _default_via(routes: list[dict[str, Any]], dev: str, gateway: str | None) -> bool:
    return any(
        r.get("dst") == "default"
        and r.get("dev") == dev
        and (gateway is None or _normal(str(r.get("gateway", ""))) == _normal(gateway))
        for r in routes
    )


def _defaults(routes: list[dict[str, Any]]) -> str:
    found = [f"via {r.get('gateway', '(none)')} dev {r.get('dev')}" for r in routes if r.get("dst") == "default"]
    return ", ".join(found) or "no default route"


def _cidrs(addresses: list[dict[str, Any]]) -> list[str]:
    return [f"{a.get('local')}/{a.get('prefixlen')}" for a in addresses]


def _normal(address: str) -> str:
    import ipaddress

    try:
        if "/" in address:
            return str(ipaddress.ip_interface(address))
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address


def _words(items: list[str]) -> str:
    return " ".join(items) or "none"


def _on(value: bool) -> str:
    return "on" if value else "off"


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _seconds(centiseconds: Any) -> str:
    return f"{centiseconds / 100:g}s" if isinstance(centiseconds, int) else "unknown"
