"""The running host as `init --from-host` and the safety checks see it: links, addresses,
routes (`ip -j`), per-link IPv6 settings (/proc/sys) and the SSH sessions (`ss`).

Split from `hostscan` by job: this only reads the machine; hostscan turns the
reading into a starter profile.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass, field
from typing import Any

from .errors import KvmbridgeError
from .rules import check_ifname


@dataclass(frozen=True)
class LiveHost:
    """The running host's links, addresses and routes as `ip -j` prints them."""

    links: list[dict[str, Any]] = field(default_factory=list)
    addrs: list[dict[str, Any]] = field(default_factory=list)
    routes: list[dict[str, Any]] = field(default_factory=list)
    ssh_connection: str | None = None
    routes6: list[dict[str, Any]] = field(default_factory=list)
    # /proc/sys/net/ipv6/conf/NAME/{accept_ra,autoconf,forwarding} per link, plus "all"
    ipv6_conf: dict[str, dict[str, str]] = field(default_factory=dict)
    # every established session on a port sshd listens on, as SSH_CONNECTION spells one: sudo drops that variable
    ssh_sessions: tuple[str, ...] = ()
    # why ssh_sessions may be incomplete (a note for the report), None when it is not
    sessions_note: str | None = None

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

    def default_route6(self) -> dict[str, Any] | None:
        return next((r for r in self.routes6 if r.get("dst") == "default"), None)

    def ipv4(self, name: str) -> list[dict[str, Any]]:
        return self._global(name, "inet")

    def ipv6(self, name: str) -> list[dict[str, Any]]:
        """Global (and ULA) addresses; link-local ones belong to the link, not to a profile."""
        return self._global(name, "inet6")

    def _global(self, name: str, family: str) -> list[dict[str, Any]]:
        entry: dict[str, Any] = next((a for a in self.addrs if a["ifname"] == name), {"addr_info": []})
        return [i for i in entry["addr_info"] if i.get("family") == family and i.get("scope") == "global"]

    def members(self, bridge: str) -> list[str]:
        return sorted(link["ifname"] for link in self.links if link.get("master") == bridge)


def read_live_host() -> LiveHost:
    def ip_json(*args: str) -> list[dict[str, Any]]:
        try:
            out = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError) as exc:
            raise KvmbridgeError(f"ip -j {' '.join(args)}: cannot read the running host ({exc})") from None
        return list(json.loads(out or "[]"))

    links = ip_json("-d", "link", "show")
    return LiveHost(
        links=links,
        addrs=ip_json("addr", "show"),
        routes=ip_json("-4", "route", "show"),
        ssh_connection=os.environ.get("SSH_CONNECTION"),
        routes6=ip_json("-6", "route", "show"),
        ipv6_conf=read_ipv6_conf(["all", *(str(link["ifname"]) for link in links)]),
        ssh_sessions=read_ssh_sessions(),
        sessions_note=None
        if os.geteuid() == 0
        else "SSH sessions: not root, so ss cannot see which sockets are sshd's; only $SSH_CONNECTION was checked",
    )


SSHD = {"sshd", "sshd-session"}  # OpenSSH 9.8 split the per-session process out as sshd-session
_USER = re.compile(r'\("((?:[^"\\]|\\.)*)",pid=')


def read_ssh_sessions() -> tuple[str, ...]:
    """The established TCP connections on a port an sshd process listens on, each as
    "PEER PEERPORT LOCAL[%LINK] PORT" (SSH_CONNECTION's form), read with iproute2's `ss`.

    `sudo` and Ansible's become drop $SSH_CONNECTION, so the environment alone cannot say
    whether the install would cut a session; this sees every admin's, not only ours.
    """
    ports = set()
    for line in _ss("-Htlnp"):
        fields = line.split()
        if len(fields) >= 5 and SSHD & set(_USER.findall(line)):
            ports.add(fields[3].rpartition(":")[2])
    sessions = []
    for line in _ss("-Htn", "state", "established"):
        fields = line.split()
        if len(fields) < 4:
            continue
        local, _, port = fields[2].rpartition(":")
        peer, _, peer_port = fields[3].rpartition(":")
        if port in ports:
            sessions.append(f"{_ss_address(peer)} {peer_port} {_ss_address(local)} {port}")
    return tuple(sessions)


def _ss(*args: str) -> list[str]:
    try:
        out = subprocess.run(["ss", *args], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise KvmbridgeError(f"ss {' '.join(args)}: cannot read the running host's SSH sessions ({exc})") from None
    return out.splitlines()


def _ss_address(text: str) -> str:
    """`[fe80::1]%br0` -> `fe80::1%br0`, `[2001:db8::2]` -> `2001:db8::2`, `198.51.100.2` as is."""
    address, _, scope = text.removeprefix("[").partition("]")
    return address + scope if text.startswith("[") else text


IPV6_CONF_KEYS = ("accept_ra", "autoconf", "forwarding")


def read_ipv6_conf(names: list[str], proc: str = "/proc/sys/net/ipv6/conf") -> dict[str, dict[str, str]]:
    """Per-link IPv6 settings; a link without IPv6 (disabled, or no such folder) is left out."""
    conf: dict[str, dict[str, str]] = {}
    for name in names:
        if check_ifname(name) is not None and name != "all":
            continue
        values = {}
        for key in IPV6_CONF_KEYS:
            try:
                with open(os.path.join(proc, name, key), encoding="ascii") as handle:
                    values[key] = handle.read().strip()
            except (OSError, UnicodeDecodeError):
                continue
        if values:
            conf[name] = values
    return conf
