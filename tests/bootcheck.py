"""Assertions that a rendered tree "boots": shared by the boot-time and init --from-host tests.

What the running host should look like is the product's own `kvmbridge status`
(run inside the host namespace, beside the running libvirtd); what is left here
is what only the lab can see: the LAN, the router and the VM reaching each
other, the lease's range, the IPv6 address the router handed out, libvirt
leaving our XML alone.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import shlex
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import msgspec

from kvmbridge.model import HostProfile

from .netns import (
    DHCP6_RANGE,
    DHCP_RANGE,
    GATEWAY,
    GATEWAY6,
    HOST6_ADDRESS,
    LAN6_NET,
    VM6_ADDRESS,
    VM_ADDRESS,
    Lab,
    uplink,
)

BRIDGE_KEYS = {
    "net.bridge.bridge-nf-call-arptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "net.bridge.bridge-nf-call-iptables",
}


def profile_toml(profile: HostProfile) -> str:
    """A profile as TOML again, so the real `kvmbridge status PROFILE` can read a test's changed profile."""
    raw: dict[str, Any] = msgspec.to_builtins(profile)
    raw.pop("source_name")
    lines = [f"hostname = {_value(raw.pop('hostname'))}"]
    for section in ("sysctl", "netfilter", "interfaces"):
        lines += ["", f"[{section}]", *(f"{k} = {_value(v)}" for k, v in raw[section].items())]
    for group in ("bridges", "networks"):
        for name, table in raw[group].items():
            lines += ["", f"[{group}.{_value(name)}]"]
            lines += [f"{k} = {_value(v)}" for k, v in table.items() if v is not None]
    return "\n".join(lines) + "\n"


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{ " + ", ".join(f"{k} = {_value(v)}" for k, v in value.items() if v is not None) + " }"


def status_command(lab: Lab, profile: HostProfile, root: Path) -> str:
    """`kvmbridge status PROFILE --root ROOT --json` for the host namespace (the profile file keeps its name)."""
    path = lab.work / "profiles" / profile.source_name
    path.parent.mkdir(exist_ok=True)
    path.write_text(profile_toml(profile))
    return shlex.join([sys.executable, "-m", "kvmbridge", "status", str(path), "--root", str(root), "--json"])


def live_status(lab: Lab, profile: HostProfile, root: Path) -> dict[str, Any]:
    """The product's status of the host namespace (libvirt networks are checked where libvirtd runs)."""
    result = lab.sh(lab.host, status_command(lab, profile, root), check=False)
    assert result.returncode in (0, 1), result.stderr
    return dict(json.loads(result.stdout))


def boot(profile: HostProfile, root: Path, lab: Lab | None = None) -> dict[str, object]:
    """Bring the tree at `root` up as a host would at boot; assert the bridged network works.

    Without `lab`, a fresh lab is wired for the profile (and a DHCP server started
    when it asks for DHCP); with one, the caller has wired it already.
    """
    if lab is None:
        with Lab() as fresh:
            up = fresh.wire_ports(profile)
            if profile.bridges[up].ipv4.method == "dhcp":
                fresh.start_dhcp_server()
            ipv6 = profile.bridges[up].ipv6
            if ipv6 is not None and ipv6.method in ("auto", "dhcp"):
                fresh.start_router_advertisements(dhcpv6=ipv6.method == "dhcp")
            return boot(profile, root, fresh)
    facts: dict[str, object] = {}
    up = uplink(profile)
    dhcp = profile.bridges[up].ipv4.method == "dhcp"
    # systemd-sysctl runs before networking.service: forwarding is on before the bridge exists.
    missing = lab.apply_sysctl(root)
    result = lab.ifup(root)
    assert result.returncode == 0, f"ifup -a failed: {result.stderr}"
    assert set(missing) <= BRIDGE_KEYS, missing  # only br_netfilter's keys may be absent here
    if missing:
        warnings.warn(f"sysctl keys this namespace lacks (br_netfilter not loaded): {', '.join(missing)}", stacklevel=2)
    facts["missing_sysctl"] = missing
    if dhcp:
        addresses = (lab.ip_json(lab.host, f"-4 addr show dev {up}") or [{"addr_info": []}])[0]["addr_info"]
        lease = [a["local"] for a in addresses if a.get("dynamic")]
        low, high = (int(a.rsplit(".", 1)[1]) for a in DHCP_RANGE)
        assert lease and low <= int(lease[0].rsplit(".", 1)[1]) <= high, addresses
        facts["lease"] = lease[0]
    if profile.bridges[up].ipv4.method != "manual":
        assert lab.wait_ping(lab.host, GATEWAY), "the gateway does not answer the host"
    ipv6 = profile.bridges[up].ipv6
    if ipv6 is not None and ipv6.method != "manual":
        facts["ipv6"] = _assert_ipv6(lab, profile, up)  # waits for the router's address before status looks
    if profile.networks:
        facts["networks"], status = _libvirt_and_status(lab, profile, root)
    else:
        status = live_status(lab, profile, root)
    assert status["as_profiled"], [m["line"] for m in status["mismatches"]]
    facts["status"] = status
    lab.attach_vm(up)
    assert lab.wait_ping(lab.lan, VM_ADDRESS), "the LAN cannot reach the VM across the bridge"
    assert lab.ping(lab.vm, GATEWAY), "the VM cannot reach the LAN"
    if ipv6 is not None:
        assert lab.wait_ping(lab.lan, VM6_ADDRESS), "the LAN cannot reach the VM over IPv6 across the bridge"
    return facts


def _assert_ipv6(lab: Lab, profile: HostProfile, up: str) -> str:
    """The bridge's IPv6 address as the method promises, a default route, and the LAN reaching it."""
    ipv6 = profile.bridges[up].ipv6
    assert ipv6 is not None
    accept_ra = ipv6.effective_accept_ra(profile.sysctl.ipv6_forward)
    if accept_ra is not None:
        assert lab.sh(lab.host, f"sysctl -n net.ipv6.conf.{up}.accept_ra").stdout.strip() == str(accept_ra)
    net = ipaddress.IPv6Network(LAN6_NET)
    if ipv6.method == "static":
        found = lab.wait_global6(lab.host, up, lambda a: a["local"] == HOST6_ADDRESS and a["prefixlen"] == 64)
    elif ipv6.method == "auto":
        found = lab.wait_global6(
            lab.host,
            up,
            lambda a: a.get("dynamic") and ipaddress.IPv6Address(a["local"]) in net and a["prefixlen"] == 64,
        )
    else:
        low, high = (ipaddress.IPv6Address(a) for a in DHCP6_RANGE)
        found = lab.wait_global6(
            lab.host, up, lambda a: a.get("dynamic") and low <= ipaddress.IPv6Address(a["local"]) <= high
        )
    assert found, (ipv6.method, lab.ip_json(lab.host, f"-6 addr show dev {up}"))
    address = str(found[0]["local"])
    routes: list[dict[str, object]] = []
    for _ in range(30):
        routes = lab.ip_json(lab.host, "-6 route show default")
        if routes:
            break
        time.sleep(0.3)
    if ipv6.method == "static" and ipv6.gateway is None:
        assert not [r for r in routes if r.get("protocol") != "ra"], routes
    elif ipv6.method == "static":
        assert [(r["gateway"], r["dev"]) for r in routes] == [(ipv6.gateway, up)], routes
    else:
        assert [(r["dev"], r.get("protocol")) for r in routes] == [(up, "ra")], routes
    if routes:
        assert lab.wait_ping(lab.host, GATEWAY6), "the router does not answer the host over IPv6"
    assert lab.wait_ping(lab.lan, address), f"the LAN cannot reach the host at {address}"
    return address


def _libvirt_and_status(lab: Lab, profile: HostProfile, root: Path) -> tuple[dict[str, dict[str, str]], dict[str, Any]]:
    """Start libvirtd over the tree, run `kvmbridge status` while it runs; our XML must stay as written."""
    xml_dir = root / "etc/libvirt/qemu/networks"
    ours = [xml_dir / f"{name}.xml" for name in profile.networks]  # libvirt may rewrite others (no <uuid>)
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in ours}
    info = lab.start_libvirtd(root, status_command(lab, profile, root))
    status_out = (lab.work / "status.json").read_text()
    assert status_out, (lab.work / "status.err").read_text()
    for name in profile.networks:
        assert "<forward mode='bridge'/>" in info[name]["xml"]
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in ours}
    assert after == before, "libvirtd rewrote our network XML"
    return info, dict(json.loads(status_out))
