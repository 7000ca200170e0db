"""Safety checks against the target system: what would lock the administrator out
or fight our files at boot. Read-only; every finding needs evidence on the root.

Checks about the running host (SSH session, existing NICs) take a `LiveHost`,
which the CLI passes only when the root is `/`.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import os
import posixpath
import re
from collections.abc import Callable, Iterator
from typing import Any

from .errors import KvmbridgeError
from .fileset import RenderedSet
from .findings import Finding, Report
from .formats import NETXML, ifupdown2
from .formats import interfaces as interfaces_format
from .formats.ifupdown_sources import expand_source
from .hostscan import LiveHost
from .model import Bridge, HostProfile
from .netplanchecks import interfaces_also_applied, netplan_files
from .plan import parse_or_none
from .renderers import RENDERERS
from .root import Root
from .state import State


def check_target(profile: HostProfile, files: RenderedSet, root: Root, state: State, live: LiveHost | None) -> Report:
    notes: list[str] = []
    packages = read_dpkg_status(root)
    findings = [
        *_other_managers(profile, root),
        *(interfaces_also_applied(root, state, _names(profile)) if profile.renderer == "netplan" else ()),
        *_sourced_files(
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
        findings += _live_host(profile, live, lambda nic: _dropped_stanza(profile, files, root, dialect, nic))
    return Report(tuple(findings), tuple(notes))


def read_dpkg_status(root: Root) -> set[str] | None:
    """Installed package names, or None when the root has no dpkg database (a staging folder)."""
    status = root.read("/var/lib/dpkg/status")
    if status.kind != "file" or status.data is None:
        return None
    installed: set[str] = set()
    for paragraph in status.data.decode("utf-8", "replace").split("\n\n"):
        fields = dict(line.split(": ", 1) for line in paragraph.splitlines() if ": " in line and line[0] != " ")
        if fields.get("Status", "").endswith(" installed") and "Package" in fields:
            installed.add(fields["Package"])
    return installed


def _names(profile: HostProfile) -> dict[str, str]:
    """Every interface the profile owns → what it is, for messages."""
    owned = {name: "bridge" for name in profile.bridges}
    for name, bridge in profile.bridges.items():
        owned |= {port: f"port of {name}" for port in bridge.ports}
    return owned


def _files(root: Root, pattern: str) -> list[tuple[str, bytes]]:
    found = []
    for dest in root.glob(pattern):
        on_disk = root.read(dest)
        if on_disk.kind == "file" and on_disk.data is not None:
            found.append((dest, on_disk.data))
    return found


def _other_managers(profile: HostProfile, root: Root) -> Iterator[Finding]:
    owned = _names(profile)
    yield from netplan_files(profile, root, owned)
    for path, data in _files(root, "/etc/NetworkManager/system-connections/*"):
        found = re.search(r"^interface-name\s*=\s*(\S+)", data.decode("utf-8", "replace"), re.M)
        if found and found[1] in owned:
            yield Finding(
                "KB102",
                "error",
                found[1],
                f"NetworkManager profile {path} manages this {owned[found[1]]}",
                f"delete {path}, or mark the device unmanaged",
            )
    for path, data in _files(root, "/etc/NetworkManager/NetworkManager.conf") if _reads_interfaces(profile) else ():
        if re.search(r"^\s*\[ifupdown\][^\[]*^\s*managed\s*=\s*true", data.decode("utf-8", "replace"), re.M | re.S):
            yield Finding(
                "KB102",
                "error",
                path,
                "NetworkManager manages interfaces from /etc/network/interfaces "
                "([ifupdown] managed=true) and fights ifupdown over the bridge",
                "set managed=false in [ifupdown], or remove NetworkManager",
            )
    for path, data in _files(root, "/etc/systemd/network/*.network"):
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


def _reads_interfaces(profile: HostProfile) -> bool:
    return profile.renderer in ("ifupdown", "ifupdown2")


def _sourced_files(profile: HostProfile, root: Root, dialect: str) -> Iterator[Finding]:
    """Files our `source` lines pull in still configuring what the profile owns.

    Read with the rules of the host's tool (ifupdown: `source` goes through
    wordexp and globs, `source-directory` reads only `[A-Za-z0-9_-]` names;
    ifupdown2 when the target has it installed); a file that tool refuses is
    a finding of its own, never skipped.
    """
    if not _reads_interfaces(profile):
        return
    load = ifupdown2.load if dialect == "ifupdown2" else interfaces_format.load
    owned = _names(profile)
    ours = {
        _ip(block.address)
        for b in profile.bridges.values()
        for block in (b.ipv4, b.ipv6)
        if block is not None and block.address is not None
    } - {None}
    files = RootFiles(root)
    for pattern in profile.interfaces.source:
        for path in expand_source("/etc/network/interfaces", pattern, files):
            try:
                if files.read(path) is None:
                    continue
                parsed = load(path, files)
            except interfaces_format.InterfacesError as exc:
                yield Finding(
                    "KB110",
                    "error",
                    exc.file,
                    f"{dialect} refuses this sourced file ({exc.reason}, line {exc.line}); "
                    "what it configures cannot be checked",
                    f"fix or remove {exc.file}",
                )
                continue
            yield from _sourced_findings(parsed, owned, ours)


def _sourced_findings(
    parsed: interfaces_format.Interfaces, owned: dict[str, str], ours: set[IPAddress | None]
) -> Iterator[Finding]:
    for stanza in parsed.stanzas:
        name = stanza.name
        if name in owned:
            yield Finding(
                "KB110",
                "error",
                name,
                f"{stanza.file} (sourced by interfaces) still configures this {owned[name]} (line {stanza.line})",
                f"remove the {name} stanza from {stanza.file}",
            )
        for address in (stanza.get("address") or "").split("\n"):
            if address and _ip(address) in ours and name not in owned:
                yield Finding(
                    "KB109",
                    "error",
                    name,
                    f"{stanza.file} still assigns {address.split('/')[0]}, which the profile moves to the bridge",
                    f"remove that address from {stanza.file}",
                )
    named = {s.name for s in parsed.stanzas}
    for cls, names in parsed.allow.items():
        for name in names:
            if name in owned and name not in named:
                word = "auto" if cls == "auto" else f"allow-{cls}"
                yield Finding(
                    "KB110",
                    "error",
                    name,
                    f"{parsed.marked_in(cls, name)} marks this {owned[name]} {word}",
                    f"remove `{word} {name}` from {parsed.marked_in(cls, name)}",
                )


class RootFiles:
    """ifupdown's view of the files under a root: links resolved inside the root, never out of it."""

    def __init__(self, root: Root) -> None:
        self.root = root

    def read(self, path: str) -> bytes | None:
        # ifupdown opens `interfaces.d/../extra` as the kernel resolves it; Root refuses `..`,
        # and with no link on the way (Root refuses those) the lexical form is the same file.
        path = posixpath.normpath(path)
        for _ in range(16):
            try:
                on_disk = self.root.read(path)
            except KvmbridgeError as exc:
                raise interfaces_format.InterfacesError(path, 0, str(exc)) from None
            if on_disk.kind == "symlink" and on_disk.link is not None:
                path = posixpath.normpath(posixpath.join(posixpath.dirname(path), on_disk.link))
                continue
            if on_disk.kind == "missing" or (on_disk.kind == "other" and self.root.kind(path) == "dir"):
                return None  # for a folder ifupdown says "Is a directory" and reads on without it
            if on_disk.kind != "file" or on_disk.data is None:
                raise interfaces_format.InterfacesError(path, 0, "not a regular file")
            return on_disk.data
        raise interfaces_format.InterfacesError(path, 0, "too many levels of symbolic links")

    def glob(self, pattern: str) -> list[str]:
        if not pattern.startswith("/"):
            return []
        try:
            return self.root.glob(posixpath.normpath(pattern))
        except KvmbridgeError:  # not a safe path pattern: nothing can match it under the root
            return []

    def listdir(self, path: str) -> list[str] | None:
        try:
            folder = self.root.path(posixpath.normpath(path))
        except KvmbridgeError:
            return None
        if folder.is_symlink() or not folder.is_dir():
            return None
        try:
            return os.listdir(folder)
        except OSError:
            return None


def _pending_writers(profile: HostProfile, root: Root) -> Iterator[Finding]:
    if _reads_interfaces(profile) and root.read("/etc/network/interfaces.new").kind == "file":
        yield Finding(
            "KB111",
            "error",
            "/etc/network/interfaces.new",
            "a pending Proxmox network change: pvenetcommit moves it over /etc/network/interfaces early at boot",
            "apply or discard it in the Proxmox GUI (or delete it) before installing",
        )
    cloud = _files(root, "/etc/network/interfaces.d/50-cloud-init*")
    if profile.renderer == "netplan":
        cloud += _files(root, "/etc/netplan/50-cloud-init.yaml")
    if cloud:
        disabled = any(_cloud_init_network_disabled(data) for _, data in _files(root, "/etc/cloud/cloud.cfg.d/*.cfg"))
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


def _live_host(
    profile: HostProfile, live: LiveHost, dropped: Callable[[str], interfaces_format.Stanza | None]
) -> Iterator[Finding]:
    existing = live.link_names()
    for name, bridge in profile.bridges.items():
        for port in bridge.ports:
            if port not in existing:
                yield Finding(
                    "KB113",
                    "error",
                    port,
                    f"port of {name} does not exist on this host (renamed NIC?)",
                    f"check `ip link` and fix bridges.{name}.ports",
                )
    if not live.ssh_connection:
        return
    parts = live.ssh_connection.split()
    if len(parts) != 4:
        return
    local, _, scope = parts[2].partition("%")  # a link-local address comes with its link: fe80::2%eth0
    address = _ip(local)
    server = str(address) if address is not None else local  # sshd on :: shows IPv4 as ::ffff:a.b.c.d
    nic = scope if scope and scope in existing else live.nic_holding(server)
    owned = {port for bridge in profile.bridges.values() for port in bridge.ports} | set(profile.bridges)
    stanza = dropped(nic) if nic is not None and nic not in owned else None
    if stanza is not None:
        yield Finding(
            "KB101",
            "error",
            nic or server,
            f"your SSH session arrives on {server} at {nic}, which {stanza.file}:{stanza.line} configures "
            f"({' '.join(w for w in (stanza.family, stanza.method) if w) or 'iface'}); "
            "the new /etc/network/interfaces drops that: you would be locked out",
            f"move the {nic} stanza (and its auto line) to a file the profile sources, "
            f"e.g. /etc/network/interfaces.d/{nic}, or bridge {nic} in the profile",
        )
    for name, bridge in profile.bridges.items():
        if nic not in bridge.ports:
            continue
        keeps, caveat = _carries(bridge, server, live.link(nic) or {})
        if not keeps:
            yield Finding(
                "KB101",
                "error",
                nic or server,
                f"your SSH session arrives on {server} at {nic}, "
                f"which bridge {name} enslaves without carrying that address: you would be locked out",
                f"give {name} address {server} with its prefix (static), "
                f'or {"SLAAC or DHCP" if ":" in server else "DHCP"} with hwaddress = "{nic}"',
            )
        elif caveat:
            yield Finding(
                "KB101",
                "warning",
                nic or server,
                f"your SSH session arrives on {server} at {nic}; {caveat}",
                (f"reserve {server} for the kept MAC on the DHCPv6 server, or make it static"),
            )


def _dropped_stanza(
    profile: HostProfile, files: RenderedSet, root: Root, dialect: str, nic: str
) -> interfaces_format.Stanza | None:
    """The stanza bringing up `nic` from the interfaces file that install replaces, when the new file
    (with what it sources from the root) no longer does: that NIC goes unconfigured after the reboot."""
    new = next((f.data for f in files if f.path == "/etc/network/interfaces" and f.data is not None), None)
    if new is None or not _reads_interfaces(profile):
        return None
    load = ifupdown2.load if dialect == "ifupdown2" else interfaces_format.load
    on_root = RootFiles(root)
    try:
        before = load("/etc/network/interfaces", on_root)
        after = load("/etc/network/interfaces", _Replaced(on_root, "/etc/network/interfaces", new))
    except interfaces_format.InterfacesError:  # KB110 reports what cannot be read
        return None
    stanza = next((s for s in before.stanzas if s.name == nic), None)
    if stanza is None:
        return None
    if not any(s.name == nic for s in after.stanzas) or (_at_boot(before, nic) and not _at_boot(after, nic)):
        return stanza
    return None


def _at_boot(parsed: interfaces_format.Interfaces, nic: str) -> bool:
    """ifup -a (auto) or udev (allow-hotplug) brings the NIC up at boot."""
    marked = (*parsed.allow.get("auto", ()), *parsed.allow.get("hotplug", ()))
    return nic in marked or any(s.auto for s in parsed.stanzas if s.name == nic)


class _Replaced:
    """The root's files as they will be after install: one file swapped for its new bytes."""

    def __init__(self, files: RootFiles, path: str, data: bytes) -> None:
        self.files, self.path, self.data = files, path, data

    def read(self, path: str) -> bytes | None:
        return self.data if posixpath.normpath(path) == self.path else self.files.read(path)

    def glob(self, pattern: str) -> list[str]:
        return self.files.glob(pattern)

    def listdir(self, path: str) -> list[str] | None:
        return self.files.listdir(path)


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _ip(text: str) -> IPAddress | None:
    """An address as a value, so 2001:db8::2 and 2001:0db8:0::2 are the same (and ::ffff:a.b.c.d is IPv4)."""
    try:
        address = ipaddress.ip_interface(text.strip()).ip
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _carries(bridge: Bridge, server: str, nic_link: dict[str, Any]) -> tuple[bool, str | None]:
    """Whether the bridge will hold `server` after the reboot, and what that hangs on.

    Both families count alike: a static address must be the same; DHCPv4 keeps
    its lease through the kept MAC (we send no client-id); SLAAC and link-local
    addresses keep their EUI-64 interface identifier only with the same MAC;
    DHCPv6 leases follow the client's DUID, which the bridge's dhclient makes anew.
    """
    address = _ip(server)
    if address is None:
        return True, None
    kept_mac = bridge.hwaddress is not None and (
        bridge.hwaddress in bridge.ports or bridge.hwaddress.lower() == str(nic_link.get("address", "")).lower()
    )
    if address.version == 4:
        block4 = bridge.ipv4
        static = block4.method == "static" and block4.address is not None and _ip(block4.address) == address
        return static or (block4.method == "dhcp" and bridge.hwaddress is not None), None
    block = bridge.ipv6
    eui64 = kept_mac and _eui64(address, str(nic_link.get("address", "")))
    if address.is_link_local:
        return bool(eui64), None
    if block is None or block.method == "manual":
        return False, None
    if block.method == "static":
        return block.address is not None and _ip(block.address) == address, None
    if block.method == "auto":
        return bool(eui64), None
    if not kept_mac:
        return False, None
    return True, (
        "DHCPv6 leases follow the client's DUID, which changes with the bridge: the server must hand this "
        "address to the kept MAC (a reservation), or the session is lost after the reboot"
    )


def _eui64(address: ipaddress.IPv6Address, mac: str) -> bool:
    """Whether the address's interface identifier is the modified EUI-64 of `mac` (RFC 4291)."""
    parts = mac.split(":")
    if len(parts) != 6:
        return False
    try:
        octets = [int(p, 16) for p in parts]
    except ValueError:
        return False
    octets[0] ^= 0x02
    iid = bytes([*octets[:3], 0xFF, 0xFE, *octets[3:]])
    return address.packed[8:] == iid


def _same_ip(cidr: str, address: str) -> bool:
    try:
        return ipaddress.ip_interface(cidr).ip == ipaddress.ip_address(address)
    except ValueError:
        return False
