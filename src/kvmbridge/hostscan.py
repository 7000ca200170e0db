"""Read the running host (`ip -j`) into plain facts, and turn them into a starter profile.

Reading (`read_live_host`) is separate from interpreting (`starter_from_host`)
so tests feed `ip -j` output captured from namespaces they build.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
from dataclasses import dataclass, field
from typing import Any

from .errors import KvmbridgeError
from .formats import interfaces as interfaces_format
from .formats.ifupdown_sources import DictFiles, HostFiles, SourceFiles
from .rules import check_hostname, check_ifname
from .starter import Starter


@dataclass(frozen=True)
class LiveHost:
    """The running host's links, addresses and routes as `ip -j` prints them."""

    links: list[dict[str, Any]] = field(default_factory=list)
    addrs: list[dict[str, Any]] = field(default_factory=list)
    routes: list[dict[str, Any]] = field(default_factory=list)
    ssh_connection: str | None = None

    def link_names(self) -> set[str]:
        return {link["ifname"] for link in self.links}

    def link(self, name: str) -> dict[str, Any] | None:
        return next((link for link in self.links if link["ifname"] == name), None)

    def nic_holding(self, address: str) -> str | None:
        for entry in self.addrs:
            for info in entry.get("addr_info", []):
                if info.get("local") == address:
                    return str(entry["ifname"])
        return None

    def default_route(self) -> dict[str, Any] | None:
        return next((r for r in self.routes if r.get("dst") == "default"), None)

    def ipv4(self, name: str) -> list[dict[str, Any]]:
        entry: dict[str, Any] = next((a for a in self.addrs if a["ifname"] == name), {"addr_info": []})
        return [i for i in entry["addr_info"] if i.get("family") == "inet" and i.get("scope") == "global"]

    def members(self, bridge: str) -> list[str]:
        return sorted(link["ifname"] for link in self.links if link.get("master") == bridge)


def read_live_host() -> LiveHost:
    def ip_json(*args: str) -> list[dict[str, Any]]:
        try:
            out = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError) as exc:
            raise KvmbridgeError(f"ip -j {' '.join(args)}: cannot read the running host ({exc})") from None
        return list(json.loads(out or "[]"))

    return LiveHost(
        links=ip_json("-d", "link", "show"),
        addrs=ip_json("addr", "show"),
        routes=ip_json("-4", "route", "show"),
        ssh_connection=os.environ.get("SSH_CONNECTION"),
    )


def scan_host() -> Starter:
    """`init --from-host` on this machine."""
    try:
        with open("/etc/resolv.conf", "rb") as handle:
            resolv = handle.read()
    except OSError:
        resolv = b""
    with open("/proc/sys/net/ipv4/ip_forward", "rb") as handle:
        forwarding = handle.read().strip() == b"1"
    return starter_from_host(read_live_host(), HostFiles("/"), resolv, socket.gethostname(), forwarding)


def starter_from_host(
    live: LiveHost, config: dict[str, bytes] | SourceFiles, resolv: bytes, hostname: str, ip_forward: bool
) -> Starter:
    """Bridge the NIC that carries the default route, keeping its address, gateway and MAC."""
    route = live.default_route()
    if route is None or "dev" not in route:
        raise KvmbridgeError(
            "this host has no IPv4 default route: cannot tell which NIC to bridge; start from `kvmbridge init` instead"
        )
    nic = str(route["dev"])
    link = live.link(nic) or {}
    notes: list[str] = [f"read from the running host: default route via {route.get('gateway', '?')} on {nic}"]
    if link.get("linkinfo", {}).get("info_kind") == "bridge":
        bridge, ports = nic, live.members(nic)
        notes.append(f"{nic} is already a bridge (ports: {', '.join(ports) or 'none'}); kept as it is")
    else:
        bridge, ports = _free_bridge_name(live), [nic]
    port = ports[0] if ports else nic
    addresses = live.ipv4(nic)
    dynamic = bool(addresses and addresses[0].get("dynamic")) or route.get("protocol") == "dhcp"
    parsed, problem = read_config(DictFiles(config) if isinstance(config, dict) else config)
    if problem:
        notes.append(problem)
    dns = _dns(parsed, nic, resolv)
    others = [s for s in parsed.stanzas if s.name not in (nic, "lo", bridge, *ports)]
    for stanza in others:
        notes.append(
            f"{stanza.file}:{stanza.line} also configures {_printable(stanza.name)} ({stanza.family}); not carried over"
        )
    mac = str(link.get("address", "")) or None
    values: dict[str, Any] = {
        "hostname": hostname.split(".", maxsplit=1)[0] if check_hostname(hostname) is None else "kvm01",
        "bridge": bridge,
        "port": port,
        "hwaddress": mac if mac and mac != "00:00:00:00:00:00" else None,
        "ip_forward": ip_forward,
        "dns": tuple(dns),
        "notes": tuple(notes),
    }
    if dynamic or not addresses:
        values["method"] = "dhcp"
        if not addresses:
            notes.append(f"{nic} has no IPv4 address now; DHCP assumed")
    else:
        info = addresses[0]
        values |= {
            "method": "static",
            "address": f"{info['local']}/{info['prefixlen']}",
            "gateway": str(route.get("gateway", "")),
        }
        if len(addresses) > 1:
            notes.append(f"{nic} has {len(addresses)} IPv4 addresses; only {values['address']} is carried over")
    if check_ifname(port) is not None:
        raise KvmbridgeError(f"{port}: the NIC's name cannot be used in a profile ({check_ifname(port)})")
    return Starter(**values)


def _free_bridge_name(live: LiveHost) -> str:
    names = live.link_names()
    return next(f"br{i}" for i in range(100) if f"br{i}" not in names)


def read_config(files: SourceFiles) -> tuple[interfaces_format.Interfaces, str | None]:
    """/etc/network/interfaces and what it sources, as ifupdown reads them; never raises.

    A file ifupdown refuses gives an empty reading and one line saying where and why.
    """
    try:
        return interfaces_format.load("/etc/network/interfaces", files), None
    except interfaces_format.InterfacesError as exc:
        if exc.line == 0 and exc.reason == "couldn't open interfaces file" and exc.file == "/etc/network/interfaces":
            return interfaces_format.Interfaces(), None
        return (
            interfaces_format.Interfaces(),
            f"{_printable(str(exc))} (ifupdown refuses this file; nothing carried over from it)",
        )


def _printable(text: str) -> str:
    return text if text.isprintable() else ascii(text)[1:-1]


def _dns(parsed: interfaces_format.Interfaces, nic: str, resolv: bytes) -> list[str]:
    """The NIC's dns-nameservers from ifupdown's config, else resolv.conf's (not a local stub)."""
    for stanza in parsed.named(nic):
        servers = stanza.get("dns-nameservers") if stanza.family == "inet" else None
        if servers is not None:
            return [s for s in servers.split() if _is_ip(s)]
    found = []
    for line in resolv.decode("utf-8", "replace").splitlines():
        parts = line.split()
        if (
            len(parts) >= 2
            and parts[0] == "nameserver"
            and _is_ip(parts[1])
            and not ipaddress.ip_address(parts[1]).is_loopback
        ):
            found.append(parts[1])
    return found[:3]


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
