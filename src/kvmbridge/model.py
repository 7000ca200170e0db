"""The host profile as typed, frozen values: the single source of truth.

Only shapes and types live here; the cross-field rules are in `rules`, so
the loader can report every broken rule with its key path.
"""

from __future__ import annotations

from typing import Literal

from msgspec import Struct


class _Model(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class IPv4(_Model, frozen=True):
    method: Literal["dhcp", "static", "manual"]
    address: str | None = None
    gateway: str | None = None
    dns: tuple[str, ...] = ()


class IPv6(_Model, frozen=True):
    method: Literal["auto", "dhcp", "static", "manual"]
    address: str | None = None
    extra_addresses: tuple[str, ...] = ()  # static only: more global/ULA addresses beside `address`
    gateway: str | None = None
    dns: tuple[str, ...] = ()
    accept_ra: int | None = None  # net.ipv6.conf.BRIDGE.accept_ra: 0 off, 1 on, 2 on even when forwarding

    @property
    def addresses(self) -> tuple[str, ...]:
        """Every static address, `address` first: what the bridge holds besides its link-local one."""
        return ((self.address,) if self.address is not None else ()) + self.extra_addresses

    def effective_accept_ra(self, forwarding: bool) -> int | None:
        """What every renderer writes: with forwarding on, RAs count only at accept_ra = 2.

        The kernel drops router advertisements on a forwarding interface whose
        accept_ra is 1, so SLAAC and DHCPv6 (whose default route comes from RAs)
        would silently get no address or no route; the rules refuse an explicit
        1 there, and an unset value becomes 2. None: leave the stack's default.
        """
        if self.accept_ra is not None or self.method not in ("auto", "dhcp"):
            return self.accept_ra
        return 2 if forwarding else None


class Bridge(_Model, frozen=True):
    ports: tuple[str, ...] = ()
    stp: bool = False
    forward_delay: int = 0
    max_wait: int = 0
    hello_time: int | None = None
    max_age: int | None = None
    ageing: int | None = None
    priority: int | None = None
    mtu: int | None = None
    hwaddress: str | None = None
    ipv4: IPv4 = IPv4(method="manual")
    ipv6: IPv6 | None = None


class Network(_Model, frozen=True):
    bridge: str
    autostart: bool = True
    uuid: str | None = None


class Sysctl(_Model, frozen=True):
    ip_forward: bool = False
    ipv6_forward: bool = False


class Netfilter(_Model, frozen=True):
    filter_bridged_traffic: bool = False


class Interfaces(_Model, frozen=True):
    source: tuple[str, ...] = ("/etc/network/interfaces.d/*",)


class HostProfile(_Model, frozen=True):
    """A validated profile; `source_name` is the profile's file name, for headers."""

    hostname: str
    source_name: str
    renderer: str = "ifupdown"
    sysctl: Sysctl = Sysctl()
    netfilter: Netfilter = Netfilter()
    interfaces: Interfaces = Interfaces()
    bridges: dict[str, Bridge] = {}
    networks: dict[str, Network] = {}


SECTIONS: dict[str, type[_Model]] = {
    "sysctl": Sysctl,
    "netfilter": Netfilter,
    "interfaces": Interfaces,
}
