"""`init --from-host`: read a running host (a namespace built here), print a profile that
validates, then install and "reboot" it in the same namespaces: the host keeps its address."""

from __future__ import annotations

from pathlib import Path

import pytest

from kvmbridge.errors import KvmbridgeError
from kvmbridge.hostscan import LiveHost, starter_from_host
from kvmbridge.install import install
from kvmbridge.model import HostProfile
from kvmbridge.profile import parse_profile
from kvmbridge.render import render
from kvmbridge.root import Root
from kvmbridge.starter import starter_profile

from .bootcheck import boot
from .conftest import require_root, require_tool, run
from .netns import GATEWAY, HOST_ADDRESS, Lab

OLD_STATIC = f"""auto lo
iface lo inet loopback

auto eth0
iface eth0 inet static
    address {HOST_ADDRESS}/24
    gateway {GATEWAY}
    dns-nameservers {GATEWAY}

iface eth1 inet manual
"""
OLD_DHCP = "auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet dhcp\n"


@pytest.fixture(autouse=True)
def _system_tools() -> None:
    require_root()
    for tool in ("ip", "ifup", "brctl", "unshare", "ping", "dnsmasq", "dhclient", "libvirtd", "virsh"):
        require_tool(tool)


def profile_from(live: LiveHost, config: str, tmp_path: Path) -> tuple[HostProfile, str]:
    text = starter_profile(starter_from_host(live, {"/etc/network/interfaces": config.encode()}, b"", "kvm01", False))
    path = tmp_path / "kvm01.toml"
    path.write_text(text)
    result = run("validate", path)
    assert result.exit_code == 0, result.stderr
    return parse_profile(text, str(path), default_hostname="kvm01", source_name="kvm01.toml"), text


def old_host(lab: Lab, root: Path, config: str) -> None:
    (root / "etc/network").mkdir(parents=True)
    (root / "etc/network/interfaces").write_text(config)
    result = lab.ifup(root)
    assert result.returncode == 0, result.stderr


def reboot_into(lab: Lab, profile: HostProfile, root: Path) -> dict[str, object]:
    install(profile, render(profile), Root(root), profile_path=root / "kvm01.toml", force=False)
    lab.reboot_host()
    return boot(profile, root, lab)


def test_static_host_is_bridged_with_the_same_address_gateway_dns_and_mac(tmp_path: Path) -> None:
    with Lab() as lab:
        lab.wire([("eth0", True), ("eth1", False)])
        root = tmp_path / "root"
        old_host(lab, root, OLD_STATIC)
        live = lab.capture_live(lab.host)
        mac = live.link("eth0")["address"]  # type: ignore[index]
        profile, text = profile_from(live, OLD_STATIC, tmp_path)
        bridge = profile.bridges["br0"]
        assert bridge.ports == ("eth0",)
        assert bridge.hwaddress == mac
        assert (bridge.ipv4.method, bridge.ipv4.address, bridge.ipv4.gateway) == (
            "static",
            f"{HOST_ADDRESS}/24",
            GATEWAY,
        )
        assert bridge.ipv4.dns == (GATEWAY,)
        assert "# /etc/network/interfaces:10 also configures eth1 (inet); not carried over" in text
        reboot_into(lab, profile, root)
        assert lab.ping(lab.lan, HOST_ADDRESS), "the host is not reachable at its old address"
        assert lab.ip_json(lab.host, "link show dev br0")[0]["address"] == mac


def test_dhcp_host_keeps_its_lease_through_the_bridge(tmp_path: Path) -> None:
    with Lab() as lab:
        lab.wire([("eth0", True)])
        lab.start_dhcp_server()
        root = tmp_path / "root"
        old_host(lab, root, OLD_DHCP)
        live = lab.capture_live(lab.host)
        lease = live.ipv4("eth0")[0]["local"]
        profile, _ = profile_from(live, OLD_DHCP, tmp_path)
        bridge = profile.bridges["br0"]
        assert bridge.ipv4.method == "dhcp"
        assert bridge.hwaddress == live.link("eth0")["address"]  # type: ignore[index]
        facts = reboot_into(lab, profile, root)
        assert facts["lease"] == lease, "the bridge got a different lease than the NIC had"
        assert lab.ping(lab.lan, lease)


def test_already_bridged_host_keeps_its_bridge(tmp_path: Path) -> None:
    with Lab() as lab:
        lab.wire([("eth0", True)])
        lab.sh(
            lab.host,
            f"ip link add br7 type bridge && ip link set eth0 master br7 && ip link set eth0 up && "
            f"ip link set br7 up && ip addr add {HOST_ADDRESS}/24 dev br7 && ip route add default via {GATEWAY}",
        )
        profile, text = profile_from(lab.capture_live(lab.host), "", tmp_path)
        assert list(profile.bridges) == ["br7"] and profile.bridges["br7"].ports == ("eth0",)
        assert "br7 is already a bridge (ports: eth0); kept as it is" in text


def test_host_without_default_route_is_one_clear_error() -> None:
    with pytest.raises(KvmbridgeError) as caught:
        starter_from_host(LiveHost(links=[{"ifname": "lo"}]), {}, b"", "kvm01", False)
    assert caught.value.lines == (
        "this host has no IPv4 default route: cannot tell which NIC to bridge; start from `kvmbridge init` instead",
    )
