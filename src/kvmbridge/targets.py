"""The registry of generated files: which template goes where, when, with what mode.

Adding an output (netplan YAML, systemd-networkd) means adding a `Target`
here, not editing the pipeline.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .model import HostProfile

NETWORKS_DIR = "/etc/libvirt/qemu/networks"
# Fixed namespace so a network's UUID depends only on hostname and name.
UUID_NAMESPACE = uuid.UUID("6f1f3c2e-9a57-5d0b-8c1e-4b7a2d9e0f13")

Instance = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class Target:
    """`instances` yields (destination, extra template context) for a profile."""

    name: str
    template: str
    mode: int
    instances: Callable[[HostProfile], Iterator[Instance]]
    keep_mode: bool = True


@dataclass(frozen=True)
class LinkTarget:
    """A symlink per instance: (destination, link text)."""

    name: str
    links: Callable[[HostProfile], Iterator[tuple[str, str]]]


def network_uuid(profile: HostProfile, name: str) -> str:
    given = profile.networks[name].uuid
    return given.lower() if given else str(uuid.uuid5(UUID_NAMESPACE, f"{profile.hostname}/{name}"))


def _once(dest: str, when: Callable[[HostProfile], bool]) -> Callable[[HostProfile], Iterator[Instance]]:
    def instances(profile: HostProfile) -> Iterator[Instance]:
        if when(profile):
            yield dest, {}

    return instances


def _networks(profile: HostProfile) -> Iterator[Instance]:
    for name, network in profile.networks.items():
        yield f"{NETWORKS_DIR}/{name}.xml", {"name": name, "network": network, "uuid": network_uuid(profile, name)}


def _autostart(profile: HostProfile) -> Iterator[tuple[str, str]]:
    for name, network in profile.networks.items():
        if network.autostart:
            yield f"{NETWORKS_DIR}/autostart/{name}.xml", f"../{name}.xml"


def _bridge_filter_off(profile: HostProfile) -> bool:
    return not profile.netfilter.filter_bridged_traffic


TARGETS: tuple[Target, ...] = (
    Target("interfaces", "etc/network/interfaces.j2", 0o644, _once("/etc/network/interfaces", lambda p: True)),
    Target(
        "ip_forward",
        "etc/sysctl.d/ip_forward.conf.j2",
        0o644,
        _once("/etc/sysctl.d/ip_forward.conf", lambda p: p.sysctl.ip_forward or p.sysctl.ipv6_forward),
    ),
    Target(
        "bridge_sysctl",
        "etc/sysctl.d/bridge.conf.j2",
        0o644,
        _once("/etc/sysctl.d/bridge.conf", _bridge_filter_off),
    ),
    Target(
        "udev_rule",
        "etc/udev/rules.d/99-bridge.rules.j2",
        0o644,
        _once("/etc/udev/rules.d/99-bridge.rules", _bridge_filter_off),
    ),
    # libvirt writes network XML 0600; ours stays so even over a looser existing file.
    Target("network", "etc/libvirt/qemu/networks/network.xml.j2", 0o600, _networks, keep_mode=False),
)

LINK_TARGETS: tuple[LinkTarget, ...] = (LinkTarget("autostart", _autostart),)


def format_of(path: str) -> str:
    """The parser for a destination path (`interfaces`, `sysctl`, `udev`, `netxml`).

    By path, not by target, because files a profile no longer renders still need parsing.
    """
    if path == "/etc/network/interfaces":
        return "interfaces"
    if path.startswith("/etc/sysctl.d/"):
        return "sysctl"
    if path.startswith("/etc/udev/"):
        return "udev"
    if path.startswith(NETWORKS_DIR):
        return "netxml"
    return "text"
