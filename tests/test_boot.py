"""Boot-time activation, for real: ifupdown, sysctl and libvirtd bring up the rendered files
in network namespaces, and a VM namespace is reachable from the LAN across the bridge."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from kvmbridge.install import install
from kvmbridge.model import HostProfile
from kvmbridge.profile import load_profile
from kvmbridge.render import environment, render
from kvmbridge.root import Root

from .conftest import GOLDEN, GOLDEN_CASES, require_root, require_tool
from .netns import DHCP_RANGE, GATEWAY, HOST_ADDRESS, VM_ADDRESS, Lab, readdress, render_tree, uplink
from .roots import seed_old_host

BRIDGE_KEYS = {
    "net.bridge.bridge-nf-call-arptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "net.bridge.bridge-nf-call-iptables",
}


@pytest.fixture(autouse=True)
def _system_tools() -> None:
    require_root()
    for tool in (
        "ip",
        "ifup",
        "ifquery",
        "brctl",
        "unshare",
        "ping",
        "dnsmasq",
        "dhclient",
        "libvirtd",
        "virsh",
        "sysctl",
    ):
        require_tool(tool)


def boot(profile: HostProfile, root: Path) -> dict[str, object]:
    """Bring the tree at `root` up as a host would at boot; assert the bridged network works."""
    facts: dict[str, object] = {}
    with Lab() as lab:
        up = lab.wire_ports(profile)
        dhcp = profile.bridges[up].ipv4.method == "dhcp"
        if dhcp:
            lab.start_dhcp_server()
        result = lab.ifup(root)
        assert result.returncode == 0, f"ifup -a failed: {result.stderr}"
        missing = lab.apply_sysctl(root)
        assert set(missing) <= BRIDGE_KEYS, missing  # only br_netfilter's keys may be absent here
        facts["missing_sysctl"] = missing
        forward = lab.sh(lab.host, "sysctl -n net.ipv4.ip_forward").stdout.strip()
        assert forward == ("1" if profile.sysctl.ip_forward else "0")
        for name, bridge in profile.bridges.items():
            _assert_bridge(lab, name, bridge, profile)
        addresses = lab.ip_json(lab.host, f"-4 addr show dev {up}")[0]["addr_info"]
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
        assert lab.wait_ping(lab.host, GATEWAY), "the gateway does not answer the host"
        lab.attach_vm(up)
        assert lab.wait_ping(lab.lan, VM_ADDRESS), "the LAN cannot reach the VM across the bridge"
        assert lab.ping(lab.vm, GATEWAY), "the VM cannot reach the LAN"
        if profile.networks:
            facts["networks"] = _assert_libvirt(lab, profile, root)
    return facts


def _assert_bridge(lab: Lab, name: str, bridge: object, profile: HostProfile) -> None:
    from kvmbridge.model import Bridge

    assert isinstance(bridge, Bridge)
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


@pytest.mark.parametrize("case", GOLDEN_CASES)
def test_golden_profile_boots_bridged_with_vm_reachable_and_networks_autostarted(case: str, tmp_path: Path) -> None:
    profile = readdress(load_profile(GOLDEN / f"{case}.toml"))
    root = tmp_path / "root"
    render_tree(profile, root)
    facts = boot(profile, root)
    if profile.bridges[uplink(profile)].ipv4.method == "dhcp":
        assert "lease" in facts


def test_installed_tree_over_an_old_configuration_boots(tmp_path: Path) -> None:
    root = seed_old_host(tmp_path / "root")
    profile = readdress(load_profile(GOLDEN / "article.toml"))
    install(profile, render(profile), Root(root), profile_path=GOLDEN / "article.toml", force=False)
    assert (root / "var/lib/kvmbridge/state.json").exists()
    networks = boot(profile, root)["networks"]
    assert isinstance(networks, dict)
    assert networks["default"]["Active"] == "no"  # the old NAT network stays defined and inactive


def test_broken_template_without_bridge_ports_fails_the_boot(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    source = environment().loader.get_source(environment(), "etc/network/interfaces.j2")[0]  # type: ignore[union-attr]
    broken = "\n".join(line for line in source.splitlines() if "bridge_ports" not in line) + "\n"
    (templates / "etc/network").mkdir(parents=True)
    (templates / "etc/network/interfaces.j2").write_text(broken)
    profile = readdress(load_profile(GOLDEN / "article.toml"))
    root = tmp_path / "root"
    from kvmbridge.tree import write_tree

    write_tree(render(profile, templates), root)
    assert b"bridge_ports" not in (root / "etc/network/interfaces").read_bytes()
    with pytest.raises(AssertionError):
        boot(profile, root)
