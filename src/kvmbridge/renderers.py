"""The network stacks a profile can be rendered for: what each one reads at boot and needs.

`renderer = "..."` in a profile names one of these; its files are the
targets registered for it in `targets`. Plain data, so the profile rules,
the safety checks and the README speak of the same stacks.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Package:
    """A Debian package the stack needs on the target; `finding` is the safety check's ID."""

    name: str
    finding: str
    why: str


@dataclass(frozen=True)
class Renderer:
    """`copies_port_mac`: the stack can give a bridge a port's MAC by the port's name at boot.
    `max_wait`: how the stack honours a bridge's `max_wait` (bridge_maxwait), or None where it has no
    such setting (then a profile asking for a wait gets a warning saying what happens instead)."""

    name: str
    read_by: str
    copies_port_mac: bool
    packages: tuple[Package, ...]
    ipv6_methods: tuple[str, ...] = ("auto", "dhcp", "static", "manual")
    max_wait: str | None = "bridge_maxwait"


RENDERERS: dict[str, Renderer] = {
    "ifupdown": Renderer(
        "ifupdown",
        "networking.service (ifupdown)",
        copies_port_mac=True,
        packages=(
            Package("ifupdown", "KB104", "nothing reads /etc/network/interfaces at boot"),
            Package(
                "bridge-utils", "KB103", "ifupdown will not understand bridge_ports and the bridge will not come up"
            ),
        ),
    ),
    "ifupdown2": Renderer(
        "ifupdown2",
        "networking.service (ifupdown2)",
        copies_port_mac=False,
        packages=(
            Package("ifupdown2", "KB104", "nothing reads /etc/network/interfaces in ifupdown2's dialect at boot"),
        ),
        # ifupdown2 3.0 (Debian 12) refuses inet6 `auto` and reads no accept-ra keyword (its dhcp addon
        # looks for `accept_ra`, a name its parser rewrites to accept-ra): SLAAC is written as
        # `inet6 manual` with `up sysctl` lines for accept_ra and autoconf, which every version runs.
        max_wait="bridge-maxwait",
    ),
    "netplan": Renderer(
        "netplan",
        "netplan's systemd generator, then systemd-networkd",
        copies_port_mac=False,
        packages=(Package("netplan.io", "KB104", "nothing turns /etc/netplan/*.yaml into network units at boot"),),
        # netplan has no per-link wait: systemd-networkd-wait-online waits for every non-`optional` link
        # (a bridge is online once a port forwards) up to its own --timeout, 120 s by default.
        max_wait=None,
    ),
}
