"""Warnings: choices that are legal but risky, printed without changing exit codes."""

from __future__ import annotations

from .keypath import keypath
from .model import HostProfile
from .renderers import RENDERERS
from .rules import Problem


def profile_warnings(profile: HostProfile) -> list[Problem]:
    found: list[Problem] = []
    for name, bridge in profile.bridges.items():
        at = ("bridges", name)
        if bridge.ipv4.method == "dhcp" and bridge.hwaddress is None:
            found.append(
                (
                    keypath(*at, "hwaddress"),
                    "DHCP without hwaddress: the bridge gets a new MAC and so maybe a new lease and address; "
                    f'set hwaddress = "{bridge.ports[0]}" to keep the port\'s'
                    if bridge.ports
                    else "DHCP without hwaddress: the bridge's MAC, and so its lease, may change at every boot",
                )
            )
        if bridge.ipv6 is not None and bridge.ipv6.method in ("auto", "dhcp") and bridge.hwaddress is None:
            how = (
                "SLAAC without hwaddress: the address's interface ID comes from the bridge's MAC"
                if bridge.ipv6.method == "auto"
                else "DHCPv6 without hwaddress: dhclient's DUID comes from the bridge's MAC"
            )
            found.append(
                (
                    keypath(*at, "hwaddress"),
                    f"{how}, not the port's, so the host's IPv6 address changes with the move to the bridge"
                    + (f'; set hwaddress = "{bridge.ports[0]}" to keep the port\'s' if bridge.ports else ""),
                )
            )
        if bridge.max_wait and RENDERERS[profile.renderer].max_wait is None:
            found.append(
                (
                    keypath(*at, "max_wait"),
                    f"{profile.renderer} has no bridge_maxwait, so {bridge.max_wait} s is not written: at boot "
                    f"systemd-networkd-wait-online waits for {name} until a port forwards, up to its own timeout "
                    "(120 s); set max_wait = 0 to say so",
                )
            )
        if not bridge.stp and len(bridge.ports) > 1:
            found.append((keypath(*at, "stp"), "two or more ports without STP: a loop between them floods the LAN"))
        if bridge.stp and not _timers_consistent(bridge.forward_delay, bridge.hello_time, bridge.max_age):
            found.append(
                (
                    keypath(*at, "max_age"),
                    "STP timers break 802.1D's 2*(forward_delay-1) >= max_age >= 2*(hello_time+1); "
                    "other switches may reject this bridge's BPDUs",
                )
            )
    if profile.sysctl.ip_forward:
        found.append(
            (
                keypath("sysctl", "ip_forward"),
                "bridged VM traffic is switched, not routed: IP forwarding is only needed if this host also routes "
                "(set ip_forward = false otherwise)",
            )
        )
    return found


def _timers_consistent(forward_delay: int, hello_time: int | None, max_age: int | None) -> bool:
    hello = 2 if hello_time is None else hello_time
    age = 20 if max_age is None else max_age
    return 2 * (forward_delay - 1) >= age >= 2 * (hello + 1)
