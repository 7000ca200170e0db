"""The profile rules' warnings: choices that are legal but risky, as findings that never change an exit code.

IDs KB201-KB206 are stable like the safety checks' KB1xx; the subject is the key path
(`run_preflight` prefixes the profile's file name, so the printed line names file and key).
"""

from __future__ import annotations

from .findings import Finding
from .keypath import keypath
from .model import HostProfile
from .renderers import RENDERERS


def _warning(id_: str, key: str, message: str, fix: str) -> Finding:
    return Finding(id_, "warning", key, message, fix)


def profile_findings(profile: HostProfile) -> list[Finding]:
    found: list[Finding] = []
    for name, bridge in profile.bridges.items():
        at = ("bridges", name)
        keep_mac = (
            f'set hwaddress = "{bridge.ports[0]}" to keep the port\'s MAC'
            if bridge.ports
            else "set hwaddress to a fixed unicast MAC"
        )
        if bridge.ipv4.method == "dhcp" and bridge.hwaddress is None:
            found.append(
                _warning(
                    "KB201",
                    keypath(*at, "hwaddress"),
                    "DHCP without hwaddress: the bridge gets a new MAC and so maybe a new lease and address"
                    if bridge.ports
                    else "DHCP without hwaddress: the bridge's MAC, and so its lease, may change at every boot",
                    keep_mac,
                )
            )
        if bridge.ipv6 is not None and bridge.ipv6.method in ("auto", "dhcp") and bridge.hwaddress is None:
            how = (
                "SLAAC without hwaddress: the address's interface ID comes from the bridge's MAC"
                if bridge.ipv6.method == "auto"
                else "DHCPv6 without hwaddress: dhclient's DUID comes from the bridge's MAC"
            )
            found.append(
                _warning(
                    "KB202",
                    keypath(*at, "hwaddress"),
                    f"{how}, not the port's, so the host's IPv6 address changes with the move to the bridge",
                    keep_mac,
                )
            )
        if bridge.max_wait and RENDERERS[profile.renderer].max_wait is None:
            found.append(
                _warning(
                    "KB203",
                    keypath(*at, "max_wait"),
                    f"{profile.renderer} has no bridge_maxwait, so {bridge.max_wait} s is not written: at boot "
                    f"systemd-networkd-wait-online waits for {name} until a port forwards, up to its own timeout "
                    "(120 s)",
                    "set max_wait = 0 to say so",
                )
            )
        if not bridge.stp and len(bridge.ports) > 1:
            found.append(
                _warning(
                    "KB204",
                    keypath(*at, "stp"),
                    "two or more ports without STP: a loop between them floods the LAN",
                    "set stp = true, or keep one port",
                )
            )
        if bridge.stp and not _timers_consistent(bridge.forward_delay, bridge.hello_time, bridge.max_age):
            found.append(
                _warning(
                    "KB205",
                    keypath(*at, "max_age"),
                    "STP timers break 802.1D's 2*(forward_delay-1) >= max_age >= 2*(hello_time+1); "
                    "other switches may reject this bridge's BPDUs",
                    "choose forward_delay, hello_time and max_age that keep it (e.g. 802.1D's defaults 15, 2 and 20)",
                )
            )
    if profile.sysctl.ip_forward:
        found.append(
            _warning(
                "KB206",
                keypath("sysctl", "ip_forward"),
                "bridged VM traffic is switched, not routed: IP forwarding is only needed if this host also routes",
                "set ip_forward = false unless it does",
            )
        )
    return found


def _timers_consistent(forward_delay: int, hello_time: int | None, max_age: int | None) -> bool:
    hello = 2 if hello_time is None else hello_time
    age = 20 if max_age is None else max_age
    return 2 * (forward_delay - 1) >= age >= 2 * (hello + 1)
