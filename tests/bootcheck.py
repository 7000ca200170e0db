"""Assertions that a rendered tree "boots": shared by the boot-time and init --from-host tests."""

from __future__ import annotations

import hashlib
import ipaddress
import time
import warnings
from pathlib import Path

from kvmbridge.formats import sysctl
from kvmbridge.model import Bridge, HostProfile

from .netns import (
    DHCP6_RANGE,
    DHCP_RANGE,
    GATEWAY,
    GATEWAY6,
    HOST6_ADDRESS,
    HOST_ADDRESS,
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
    for conf in sorted((root / "etc/sysctl.d").glob("*.conf")):
        for key, value in sysctl.parse(conf.read_bytes()).items():
            if key not in missing:
                assert lab.sh(lab.host, f"sysctl -n {key}").stdout.strip() == value, (conf.name, key)
    forward = lab.sh(lab.host, "sysctl -n net.ipv4.ip_forward").stdout.strip()
    assert forward == ("1" if profile.sysctl.ip_forward else "0")
    for name, bridge in profile.bridges.items():
        _assert_bridge(lab, name, bridge)
    addresses = (lab.ip_json(lab.host, f"-4 addr show dev {up}") or [{"addr_info": []}])[0]["addr_info"]
    if dhcp:
        lease = [a["local"] for a in addresses if a.get("dynamic")]
        low, high = (int(a.rsplit(".", 1)[1]) for a in DHCP_RANGE)
        assert lease and low <= int(lease[0].rsplit(".", 1)[1]) <= high, addresses
        facts["lease"] = lease[0]
    elif profile.bridges[up].ipv4.method == "static":
        assert [(a["local"], a["prefixlen"]) for a in addresses] == [(HOST_ADDRESS, 24)]
    if profile.bridges[up].ipv4.gateway is not None or dhcp:
        routes = lab.ip_json(lab.host, "-4 route show default")
        assert [(r["gateway"], r["dev"]) for r in routes] == [(GATEWAY, up)], routes
    if profile.bridges[up].ipv4.method != "manual":
        assert lab.wait_ping(lab.host, GATEWAY), "the gateway does not answer the host"
    ipv6 = profile.bridges[up].ipv6
    if ipv6 is not None and ipv6.method != "manual":
        facts["ipv6"] = _assert_ipv6(lab, profile, up)
    lab.attach_vm(up)
    assert lab.wait_ping(lab.lan, VM_ADDRESS), "the LAN cannot reach the VM across the bridge"
    assert lab.ping(lab.vm, GATEWAY), "the VM cannot reach the LAN"
    if ipv6 is not None:
        assert lab.wait_ping(lab.lan, VM6_ADDRESS), "the LAN cannot reach the VM over IPv6 across the bridge"
    if profile.networks:
        facts["networks"] = _assert_libvirt(lab, profile, root)
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


def _assert_bridge(lab: Lab, name: str, bridge: Bridge) -> None:
    link = lab.ip_json(lab.host, f"-d link show dev {name}")[0]
    info = link["linkinfo"]
    assert info["info_kind"] == "bridge"
    assert "UP" in link["flags"], link["flags"]
    data = info["info_data"]
    assert data["stp_state"] == (1 if bridge.stp else 0)
    assert data["forward_delay"] == bridge.forward_delay * 100
    if bridge.hello_time is not None:
        assert data["hello_time"] == bridge.hello_time * 100
    if bridge.max_age is not None:
        assert data["max_age"] == bridge.max_age * 100
    if bridge.ageing is not None:
        # 802.1D: during a topology change the kernel ages entries after 2 * forward_delay instead.
        changing = data["topology_change"] or data["topology_change_detected"]
        assert data["ageing_time"] == (2 * bridge.forward_delay if changing else bridge.ageing) * 100
    if bridge.priority is not None:
        assert data["priority"] == bridge.priority
    if bridge.mtu is not None:
        assert link["mtu"] == bridge.mtu
    if bridge.hwaddress is not None:
        expected = bridge.hwaddress.lower()
        if expected in bridge.ports:
            expected = lab.ip_json(lab.host, f"link show dev {bridge.hwaddress}")[0]["address"]
        assert link["address"] == expected
    members = {m["ifname"] for m in lab.ip_json(lab.host, f"link show master {name}")}
    assert members == set(bridge.ports), (name, members)


def _assert_libvirt(lab: Lab, profile: HostProfile, root: Path) -> dict[str, dict[str, str]]:
    xml_dir = root / "etc/libvirt/qemu/networks"
    ours = [xml_dir / f"{name}.xml" for name in profile.networks]  # libvirt may rewrite others (no <uuid>)
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in ours}
    info = lab.start_libvirtd(root)
    for name, network in profile.networks.items():
        assert name in info, (name, sorted(info))
        fields = info[name]
        assert fields["Persistent"] == "yes"
        assert fields["Autostart"] == ("yes" if network.autostart else "no")
        assert fields["Active"] == ("yes" if network.autostart else "no")
        assert fields["Bridge"] == network.bridge
        assert "<forward mode='bridge'/>" in fields["xml"]
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in ours}
    assert after == before, "libvirtd rewrote our network XML"
    return info
