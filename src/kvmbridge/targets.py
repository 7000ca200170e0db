"""The registry of generated files: all destination knowledge in one place.

A `Target` is a destination (a pattern, and the instances a profile asks
for), its template, its mode and its `Format` (parser, change description,
render check, validator, activation hint). Adding an output (a renderer)
means adding targets and a format here, not editing the pipeline.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from .formats import IFUPDOWN, IFUPDOWN2, LINK, NETPLAN, NETXML, SYSCTL, TEXT, UDEV, Format
from .formats.netplan import NETPLAN_FILE
from .formats.netxml import NETWORKS_DIR
from .model import HostProfile

# Fixed namespace so a network's UUID depends only on hostname and name.
UUID_NAMESPACE = uuid.UUID("6f1f3c2e-9a57-5d0b-8c1e-4b7a2d9e0f13")
BRIDGE_SYSCTL = "/etc/sysctl.d/bridge.conf"

Instance = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class Target:
    """`pattern` matches every destination this target can ever write (a glob; `*` stays in one folder).

    `instances` yields (destination, extra template context) for a profile;
    `keep_mode`: an existing file keeps its mode, unless the contract fixes it.
    """

    name: str
    pattern: str
    template: str
    mode: int
    format: Format
    instances: Callable[[HostProfile], Iterator[Instance]]
    keep_mode: bool = True
    renderers: frozenset[str] | None = None

    def wanted(self, profile: HostProfile) -> Iterator[Instance]:
        """This target's files for `profile`: none when it belongs to another renderer."""
        if self.renderers is None or profile.renderer in self.renderers:
            yield from self.instances(profile)


@dataclass(frozen=True)
class LinkTarget:
    """A symlink per instance: (destination, link text)."""

    name: str
    pattern: str
    links: Callable[[HostProfile], Iterator[tuple[str, str]]]
    format: Format = LINK


def network_uuid(profile: HostProfile, name: str) -> str:
    given = profile.networks[name].uuid
    return given.lower() if given else str(uuid.uuid5(UUID_NAMESPACE, f"{profile.hostname}/{name}"))


def _once(
    dest: str, when: Callable[[HostProfile], bool], extra: dict[str, Any] | None = None
) -> Callable[[HostProfile], Iterator[Instance]]:
    def instances(profile: HostProfile) -> Iterator[Instance]:
        if when(profile):
            yield dest, dict(extra or {})

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


def _forwarding(profile: HostProfile) -> bool:
    return profile.sysctl.ip_forward or profile.sysctl.ipv6_forward


TARGETS: tuple[Target, ...] = (
    Target(
        "interfaces",
        "/etc/network/interfaces",
        "etc/network/interfaces.j2",
        0o644,
        IFUPDOWN,
        _once("/etc/network/interfaces", lambda p: True),
        renderers=frozenset({"ifupdown"}),
    ),
    Target(
        "interfaces_ifupdown2",
        "/etc/network/interfaces",
        "etc/network/interfaces.ifupdown2.j2",
        0o644,
        IFUPDOWN2,
        _once("/etc/network/interfaces", lambda p: True),
        renderers=frozenset({"ifupdown2"}),
    ),
    # netplan warns about (and may ignore) a YAML file others can read: it holds the whole network config.
    Target(
        "netplan",
        NETPLAN_FILE,
        "etc/netplan/60-kvmbridge.yaml.j2",
        0o600,
        NETPLAN,
        _once(NETPLAN_FILE, lambda p: True),
        keep_mode=False,
        renderers=frozenset({"netplan"}),
    ),
    Target(
        "ip_forward",
        "/etc/sysctl.d/ip_forward.conf",
        "etc/sysctl.d/ip_forward.conf.j2",
        0o644,
        SYSCTL,
        _once("/etc/sysctl.d/ip_forward.conf", _forwarding),
    ),
    Target(
        "bridge_sysctl",
        BRIDGE_SYSCTL,
        "etc/sysctl.d/bridge.conf.j2",
        0o644,
        SYSCTL,
        _once(BRIDGE_SYSCTL, _bridge_filter_off),
    ),
    Target(
        "udev_rule",
        "/etc/udev/rules.d/99-bridge.rules",
        "etc/udev/rules.d/99-bridge.rules.j2",
        0o644,
        UDEV,
        _once("/etc/udev/rules.d/99-bridge.rules", _bridge_filter_off, {"sysctl_file": BRIDGE_SYSCTL}),
    ),
    # libvirt writes network XML 0600; ours stays so even over a looser existing file.
    Target(
        "network",
        f"{NETWORKS_DIR}/*.xml",
        "etc/libvirt/qemu/networks/network.xml.j2",
        0o600,
        NETXML,
        _networks,
        keep_mode=False,
    ),
)

LINK_TARGETS: tuple[LinkTarget, ...] = (LinkTarget("autostart", f"{NETWORKS_DIR}/autostart/*.xml", _autostart),)


def target_of(path: str, renderer: str | None = None) -> Target | LinkTarget | None:
    """The target that can write `path`, for any profile (`renderer`'s first); None: kvmbridge never writes it."""
    pure = PurePosixPath(path)
    every: tuple[Target | LinkTarget, ...] = (*TARGETS, *LINK_TARGETS)
    found = [target for target in every if pure.match(target.pattern)]
    for target in found:
        if isinstance(target, Target) and target.renderers is not None and renderer in target.renderers:
            return target
    return found[0] if found else None


def renderable(path: str) -> bool:
    """Whether some profile could make kvmbridge write `path` (confinement of state and manifests)."""
    return target_of(path) is not None


def format_of(path: str, renderer: str | None = None) -> Format:
    """The format of a destination, by the registry's patterns; `renderer` picks among dialects of one path.

    By path, not by the current render, because files a profile no longer
    renders (in the state, or another renderer's) still need parsing.
    """
    target = target_of(path, renderer)
    return target.format if target is not None else TEXT
