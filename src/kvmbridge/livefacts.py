"""The running host's facts, read for `status` and the boot guard's self-check.

The only part of the live comparison that looks at the machine (`ip -j`,
`/proc/sys`, `virsh`, the installed files under a root); `livestatus.compare`
judges what this returns without reading anything itself.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import KvmbridgeError
from .fileset import RenderedSet
from .formats import sysctl as sysctl_format
from .livehost import read_ipv6_conf
from .model import HostProfile
from .plan import make_plan
from .root import Root
from .state import read_state

VIRSH_URI = "qemu:///system"
SYSCTL_DIR = "/etc/sysctl.d/"


@dataclass(frozen=True)
class Facts:
    """What the running host says; `networks` is None when virsh is not installed."""

    links: list[dict[str, Any]] = field(default_factory=list)
    addrs: list[dict[str, Any]] = field(default_factory=list)
    routes4: list[dict[str, Any]] = field(default_factory=list)
    routes6: list[dict[str, Any]] = field(default_factory=list)
    sysctl: dict[str, str | None] = field(default_factory=dict)
    br_netfilter: bool = False
    networks: dict[str, dict[str, str] | None] | None = None
    libvirt_error: str | None = None
    files: tuple[tuple[str, str], ...] = ()
    # /proc/sys/net/ipv6/conf/BRIDGE/{accept_ra,autoconf,forwarding} of the profile's bridges
    ipv6_conf: dict[str, dict[str, str]] = field(default_factory=dict)

    def link(self, name: str) -> dict[str, Any] | None:
        return next((link for link in self.links if link.get("ifname") == name), None)

    def members(self, bridge: str) -> list[str]:
        return sorted(str(link["ifname"]) for link in self.links if link.get("master") == bridge)

    def addresses(self, name: str, family: str) -> list[dict[str, Any]]:
        entry = next((a for a in self.addrs if a.get("ifname") == name), {})
        return [
            info
            for info in entry.get("addr_info", [])
            if info.get("family") == family and info.get("scope", "global") == "global"
        ]


def sysctl_values(files: RenderedSet) -> dict[str, str]:
    """Every key the rendered sysctl.d files set, as systemd-sysctl applies them (later files win)."""
    values: dict[str, str] = {}
    for rendered in sorted(files, key=lambda f: f.path):
        if rendered.path.startswith(SYSCTL_DIR) and rendered.data is not None:
            values.update(sysctl_format.parse(rendered.data))
    return values


# --- the edge: reading the running host -------------------------------------------------


def gather_facts(
    profile: HostProfile, files: RenderedSet, root: Root, *, installed: tuple[tuple[str, str], ...] | None = None
) -> Facts:
    """Read the running host (this network namespace) and the installed files under `root`.

    `installed`: the files already judged (path, status) another way, instead of against `files`.
    """
    if installed is None:
        plan = make_plan(files, root, read_state(root))
        installed = tuple((c.path, "blocked" if c.blocked else c.status) for c in plan.changes if c.writes or c.blocked)
    return Facts(
        links=_ip_json("-d", "link", "show"),
        addrs=_ip_json("addr", "show"),
        routes4=_ip_json("-4", "route", "show"),
        routes6=_ip_json("-6", "route", "show"),
        sysctl={key: read_sysctl(key) for key in sysctl_values(files)},
        br_netfilter=Path("/proc/sys/net/bridge").is_dir(),
        **_libvirt(list(profile.networks)),
        files=installed,
        ipv6_conf=read_ipv6_conf([name for name, bridge in profile.bridges.items() if bridge.ipv6 is not None]),
    )


def read_sysctl(key: str) -> str | None:
    """A key's value in /proc/sys, or None where this kernel (or namespace) lacks it."""
    if ".." in key.split(".") or "/" in key or not key:
        return None
    try:
        with open(os.path.join("/proc/sys", *key.split(".")), "rb") as handle:
            return handle.read(4096).decode("utf-8", "replace").strip()
    except OSError:
        return None


def _ip_json(*args: str) -> list[dict[str, Any]]:
    try:
        out = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=True, timeout=30).stdout
        return list(json.loads(out or "[]"))
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        raise KvmbridgeError(f"ip -j {' '.join(args)}: cannot read the running host ({exc})") from None


def _libvirt(names: list[str]) -> dict[str, Any]:
    """`virsh net-info` of each profiled network; None when it cannot be asked at all."""
    if not names:
        return {"networks": {}}
    virsh = shutil.which("virsh")
    if virsh is None:
        return {"networks": None, "libvirt_error": "virsh is not installed"}
    listed = _virsh(virsh, "net-list", "--all", "--name")
    if listed.returncode != 0:
        reason = (listed.stderr.strip().splitlines() or ["no answer"])[-1]
        return {"networks": None, "libvirt_error": f"cannot reach libvirt ({VIRSH_URI}): {reason}"}
    defined = set(listed.stdout.split())
    networks: dict[str, dict[str, str] | None] = {}
    for name in names:
        if name not in defined:
            continue
        result = _virsh(virsh, "net-info", name)
        fields: dict[str, str] = {}
        for line in result.stdout.splitlines():
            key, _, value = line.partition(":")
            if key.strip():
                fields[key.strip()] = value.strip()
        networks[name] = fields
    return {"networks": networks}


def _virsh(virsh: str, *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [virsh, "-q", "-c", VIRSH_URI, *args], capture_output=True, text=True, check=False, timeout=60
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return subprocess.CompletedProcess([virsh], 1, "", str(exc))
