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
    gateway: str | None = None
    dns: tuple[str, ...] = ()


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
    ip_forward: bool = True
    ipv6_forward: bool = False


class Netfilter(_Model, frozen=True):
    filter_bridged_traffic: bool = False


class Interfaces(_Model, frozen=True):
    source: tuple[str, ...] = ("/etc/network/interfaces.d/*",)


class HostProfile(_Model, frozen=True):
    """A validated profile; `source_name` is the profile's file name, for headers."""

    hostname: str
    source_name: str
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
