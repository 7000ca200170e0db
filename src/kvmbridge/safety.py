"""Safety checks against the target system: what would lock the administrator out
or fight our files at boot. Read-only; every finding needs evidence on the root.

`check_target` runs them all. Here: other network managers (KB102), pending
writers (Proxmox, cloud-init: KB111, KB112), libvirt networks (KB108) and
packages (KB103-KB107). Sourced `interfaces` files are `sourcedchecks`, the
running host (SSH session, existing NICs: KB101, KB113) `sessionchecks`, which
take a `LiveHost` that the preflight passes only when the root is `/`;
netplan targets add `netplanchecks`.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterator
from typing import Any

from .fileset import RenderedSet
from .findings import Finding, Report
from .formats import NETXML
from .livehost import LiveHost
from .model import HostProfile
from .netplanchecks import interfaces_also_applied, netplan_files
from .plan import parse_or_none
from .renderers import RENDERERS
from .root import Root
from .rootfiles import read_dpkg_status, root_files
from .sessionchecks import dropped_stanza, live_host
from .sourcedchecks import owned_names, reads_interfaces, sourced_files
from .state import State


def check_target(profile: HostProfile, files: RenderedSet, root: Root, state: State, live: LiveHost | None) -> Report:
    notes: list[str] = []
    packages = read_dpkg_status(root)
    findings = [
        *_other_managers(profile, root),
        *(interfaces_also_applied(root, state, owned_names(profile)) if profile.renderer == "netplan" else ()),
        *sourced_files(
            profile,
            root,
            "ifupdown2" if profile.renderer == "ifupdown2" or "ifupdown2" in (packages or ()) else "ifupdown",
        ),
        *_pending_writers(profile, root),
        *_libvirt_networks(files, root, state),
    ]
    if packages is None:
        notes.append(f"package checks skipped: no dpkg database at {root.path('/var/lib/dpkg/status')}")
    else:
        findings += _packages(profile, root, packages)
    if live is None:
        notes.append("running-host checks (SSH session, existing NICs) skipped: the root is not /")
    else:
        dialect = _dialect(profile, packages)
        findings += live_host(profile, live, lambda nic: dropped_stanza(profile, files, root, dialect, nic))
        if live.sessions_note:
            notes.append(live.sessions_note)
    return Report(tuple(findings), tuple(notes))


def _other_managers(profile: HostProfile, root: Root) -> Iterator[Finding]:
    owned = owned_names(profile)
    yield from netplan_files(profile, root, owned)
    for path, data in root_files(root, "/etc/NetworkManager/system-connections/*"):
        found = re.search(r"^interface-name\s*=\s*(\S+)", data.decode("utf-8", "replace"), re.M)
        if found and found[1] in owned:
            yield Finding(
                "KB102",
                "error",
                found[1],
                f"NetworkManager profile {path} manages this {owned[found[1]]}",
                f"delete {path}, or mark the device unmanaged",
            )
    for path, data in root_files(root, "/etc/NetworkManager/NetworkManager.conf") if reads_interfaces(profile) else ():
        if re.search(r"^\s*\[ifupdown\][^\[]*^\s*managed\s*=\s*true", data.decode("utf-8", "replace"), re.M | re.S):
            yield Finding(
                "KB102",
                "error",
                path,
                "NetworkManager manages interfaces from /etc/network/interfaces "
                "([ifupdown] managed=true) and fights ifupdown over the bridge",
                "set managed=false in [ifupdown], or remove NetworkManager",
            )
    for path, data in root_files(root, "/etc/systemd/network/*.network"):
        match = re.search(r"^\[Match\][^\[]*?^\s*Name\s*=\s*(.+)$", data.decode("utf-8", "replace"), re.M | re.S)
        if not match:
            continue
        patterns = match[1].split()
        for name, what in owned.items():
            if any(fnmatch.fnmatchcase(name, p) for p in patterns):
                yield Finding(
                    "KB102",
                    "error",
                    name,
                    f"systemd-networkd ({path}) matches this {what}",
                    f"remove {path} or narrow its [Match] Name=",
                )


def _dialect(profile: HostProfile, packages: set[str] | None) -> str:
    """Sourced files are read as the tool that will read them at boot reads them."""
    return "ifupdown2" if profile.renderer == "ifupdown2" or "ifupdown2" in (packages or set()) else "ifupdown"


def _pending_writers(profile: HostProfile, root: Root) -> Iterator[Finding]:
    if reads_interfaces(profile) and root.read("/etc/network/interfaces.new").kind == "file":
        yield Finding(
            "KB111",
            "error",
            "/etc/network/interfaces.new",
            "a pending Proxmox network change: pvenetcommit moves it over /etc/network/interfaces early at boot",
            "apply or discard it in the Proxmox GUI (or delete it) before installing",
        )
    cloud = root_files(root, "/etc/network/interfaces.d/50-cloud-init*")
    if profile.renderer == "netplan":
        cloud += root_files(root, "/etc/netplan/50-cloud-init.yaml")
    if cloud:
        disabled = any(
            _cloud_init_network_disabled(data) for _, data in root_files(root, "/etc/cloud/cloud.cfg.d/*.cfg")
        )
        if not disabled:
            yield Finding(
                "KB112",
                "error",
                cloud[0][0],
                "cloud-init rewrites this file at boot and has not been told to leave the network alone",
                "write /etc/cloud/cloud.cfg.d/99-disable-network-config.cfg with "
                "'network: {config: disabled}' and delete the 50-cloud-init file",
            )


def _cloud_init_network_disabled(data: bytes) -> bool:
    text = data.decode("utf-8", "replace")
    return bool(
        re.search(r"^network:\s*\{\s*config:\s*disabled\s*\}", text, re.M)
        or re.search(r"^network:\s*\n\s+config:\s*disabled\b", text, re.M)
    )


def _libvirt_networks(files: RenderedSet, root: Root, state: State) -> Iterator[Finding]:
    for f in files:
        if f.format != NETXML.name or f.path in state.files:
            continue
        existing = root.read(f.path)
        if existing.kind != "file":
            continue
        theirs: Any = parse_or_none(f.path, existing.data)
        ours: Any = parse_or_none(f.path, f.data)
        if theirs is None or ours is None:
            continue
        theirs_net, ours_net = dict(theirs.get("network", {})), dict(ours["network"])
        theirs_net.pop("uuid", None)
        ours_net.pop("uuid", None)
        if theirs_net != ours_net:
            name = ours["network"]["name"]
            yield Finding(
                "KB108",
                "error",
                name,
                f"libvirt already defines network {name} differently ({f.path})",
                "rename the network in the profile, or `virsh net-undefine` the old one",
            )


def _packages(profile: HostProfile, root: Root, packages: set[str]) -> Iterator[Finding]:
    for package in RENDERERS[profile.renderer].packages:
        if package.name not in packages:
            yield Finding(
                package.finding,
                "error",
                package.name,
                f"not installed on the target: {package.why}",
                f"apt-get install {package.name}",
            )
    if not packages & {"libvirt-daemon", "libvirt-daemon-system"}:
        yield Finding(
            "KB107",
            "warning",
            "libvirt",
            "libvirt is not installed on the target: the network XML will be read by nobody",
            "apt-get install libvirt-daemon-system",
        )
    kube = packages & {"kubelet", "kubeadm", "k3s"} or root.read("/var/lib/kubelet/config.yaml").kind == "file"
    if kube and not profile.netfilter.filter_bridged_traffic:
        yield Finding(
            "KB105",
            "warning",
            "netfilter.filter_bridged_traffic",
            "Kubernetes is present: bridge-nf-call-iptables = 0 breaks kube-proxy's service routing",
            "set filter_bridged_traffic = true",
        )
    docker = packages & {"docker-ce", "docker.io", "moby-engine"} or root.read("/etc/docker/daemon.json").kind == "file"
    if docker and profile.netfilter.filter_bridged_traffic:
        yield Finding(
            "KB106",
            "warning",
            "netfilter.filter_bridged_traffic",
            "Docker is present: its FORWARD policy DROP will drop bridged VM traffic that netfilter sees",
            "set filter_bridged_traffic = false",
        )
