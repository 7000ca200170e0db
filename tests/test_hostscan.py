"""`init --from-host`: read a running host (a namespace built here), print a profile that
validates, then install and "reboot" it in the same namespaces: the host keeps its address."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kvmbridge.errors import KvmbridgeError
from kvmbridge.hostscan import starter_from_host
from kvmbridge.install import install
from kvmbridge.livehost import LiveHost
from kvmbridge.model import HostProfile
from kvmbridge.profile import parse_profile
from kvmbridge.render import render
from kvmbridge.root import Root
from kvmbridge.starter import starter_profile

from .bootcheck import boot
from .conftest import require_root, require_tool, run
from .netns import DHCP6_RANGE, GATEWAY, GATEWAY6, HOST6_ADDRESS, HOST_ADDRESS, Lab, lab_extras6

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
    lab.shutdown_host(root)
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
        "this host has no default route (IPv4 or IPv6): cannot tell which NIC to bridge; "
        "start from `kvmbridge init` instead",
    )


EXTRA6 = lab_extras6(1)[0]
OLD_DUAL_STACK = (
    OLD_STATIC
    + f"""
iface eth0 inet6 static
    address {HOST6_ADDRESS}/64
    gateway {GATEWAY6}

iface eth0 inet6 static
    address {EXTRA6}
"""
)
OLD_SLAAC = OLD_DHCP + "\niface eth0 inet6 auto\n"
OLD_DHCPV6_ONLY = "auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet6 dhcp\n"


def test_dual_stack_host_answers_on_both_families_at_its_old_addresses(tmp_path: Path) -> None:
    with Lab() as lab:
        lab.wire([("eth0", True), ("eth1", False)])
        root = tmp_path / "root"
        old_host(lab, root, OLD_DUAL_STACK)
        assert lab.wait_global6(lab.host, "eth0", lambda a: a["local"] == HOST6_ADDRESS)
        live = lab.capture_live(lab.host)
        profile, text = profile_from(live, OLD_DUAL_STACK, tmp_path)
        ipv6 = profile.bridges["br0"].ipv6
        assert ipv6 is not None and (ipv6.method, ipv6.address, ipv6.extra_addresses, ipv6.gateway) == (
            "static",
            f"{HOST6_ADDRESS}/64",
            (EXTRA6,),  # every static address is carried, not only the first
            GATEWAY6,
        )
        assert "fe80" not in text, "a link-local address was copied"
        assert profile.bridges["br0"].ipv4.address == f"{HOST_ADDRESS}/24"
        facts = reboot_into(lab, profile, root)
        assert facts["ipv6"] == HOST6_ADDRESS
        assert lab.ping(lab.lan, HOST_ADDRESS) and lab.ping(lab.lan, HOST6_ADDRESS)
        assert lab.ping(lab.lan, EXTRA6.split("/")[0])


def test_slaac_host_keeps_its_eui64_address_through_the_bridge(tmp_path: Path) -> None:
    """The kept MAC (hwaddress) gives the bridge the same EUI-64 interface ID, so the same address."""
    with Lab() as lab:
        lab.wire([("eth0", True)])
        lab.start_dhcp_server()
        lab.start_router_advertisements()
        root = tmp_path / "root"
        old_host(lab, root, OLD_SLAAC)
        before = lab.wait_global6(lab.host, "eth0", lambda a: a.get("dynamic"))
        assert before, "the old host got no SLAAC address"
        live = lab.capture_live(lab.host)
        profile, _ = profile_from(live, OLD_SLAAC, tmp_path)
        ipv6 = profile.bridges["br0"].ipv6
        # ifupdown's auto method sets accept_ra 2; the import keeps what the host had
        assert ipv6 is not None and (ipv6.method, ipv6.accept_ra) == ("auto", 2)
        facts = reboot_into(lab, profile, root)
        assert facts["ipv6"] == before[0]["local"], "the bridge's SLAAC address differs from the NIC's"
        assert lab.ping(lab.lan, before[0]["local"])


def test_ipv6_only_dhcpv6_host_keeps_its_address_with_a_mac_reservation(tmp_path: Path) -> None:
    """DHCPv6 leases follow the DUID. Each ifup here gets a fresh /var/lib/dhcp, so the bridge's dhclient
    makes a new DUID from the kept MAC and a reservation by MAC keeps the address; the DUID carried over
    from the port's lease file (the rendered pre-up) is proven in the image lab (test_image_ipv6)."""
    with Lab() as lab:
        lab.wire([("eth0", True)])
        mac = lab.ip_json(lab.host, "link show dev eth0")[0]["address"]
        lab.start_router_advertisements(dhcpv6=True, reserve={mac: f"{DHCP6_RANGE[0][:-3]}120"})
        root = tmp_path / "root"
        old_host(lab, root, OLD_DHCPV6_ONLY)
        before = lab.wait_global6(lab.host, "eth0", lambda a: a.get("dynamic"))
        assert [a["local"] for a in before] == [f"{DHCP6_RANGE[0][:-3]}120"]
        live = lab.capture_live(lab.host)
        profile, text = profile_from(live, OLD_DHCPV6_ONLY, tmp_path)
        bridge = profile.bridges["br0"]
        assert bridge.ipv4.method == "manual"
        assert bridge.ipv6 is not None and bridge.ipv6.method == "dhcp"
        assert bridge.hwaddress == mac
        assert "starts from eth0's DUID (/var/lib/dhcp/dhclient6.eth0.leases)" in text
        facts = reboot_into(lab, profile, root)
        assert facts["ipv6"] == before[0]["local"]


# What the import leaves behind is said, not dropped silently (outside review findings F4, F8, F9).


@pytest.fixture(scope="module")
def bare_host() -> Iterator[Lab]:
    """A host with two NICs on the LAN; each test addresses them itself (addresses flushed first)."""
    with Lab() as lab:
        lab.wire([("eth0", True), ("eth1", True)])
        yield lab


def readdress(lab: Lab, script: str) -> LiveHost:
    lab.sh(
        lab.host,
        "for nic in eth0 eth1; do ip link set $nic up; ip addr flush dev $nic scope global; done; "
        "ip -4 route flush table main; while ip -6 route del default 2>/dev/null; do :; done; " + script,
    )
    return lab.capture_live(lab.host)


def test_ipv6_on_another_nic_than_ipv4_is_a_warning_not_a_silent_drop(bare_host: Lab, tmp_path: Path) -> None:
    """Dual stack split over two NICs: the bridge takes the IPv4 one; the IPv6 NIC's stanza would vanish
    with the replaced file, so the import says so loudly (the profile cannot move it by itself)."""
    live = readdress(
        bare_host,
        f"ip addr add {HOST6_ADDRESS}/64 dev eth0 nodad && ip -6 route add default via {GATEWAY6} dev eth0 && "
        f"ip addr add {HOST_ADDRESS}/24 dev eth1 && ip route add default via {GATEWAY}",
    )
    config = (
        f"auto eth0\niface eth0 inet6 static\n  address {HOST6_ADDRESS}/64\n  gateway {GATEWAY6}\n"
        f"auto eth1\niface eth1 inet static\n  address {HOST_ADDRESS}/24\n  gateway {GATEWAY}\n"
    )
    starter = starter_from_host(live, {"/etc/network/interfaces": config.encode()}, b"", "kvm01", False)
    assert starter.port == "eth1" and starter.address == f"{HOST_ADDRESS}/24"
    assert starter.warnings == (
        f"/etc/network/interfaces:2 also configures eth0 (inet6), which holds {HOST6_ADDRESS}/64, the IPv6 "
        "default route now: not carried over, and the new /etc/network/interfaces drops it, so eth0 loses them "
        "at the reboot; move that stanza (and its auto line) to /etc/network/interfaces.d/eth0 before installing",
    )
    assert f"# WARNING: {starter.warnings[0]}" in starter_profile(starter)


def test_a_deprecated_static_ipv6_address_is_not_preferred_over_the_live_one(bare_host: Lab) -> None:
    live = readdress(
        bare_host,
        "ip addr add 2001:db8:5163:1::6/64 dev eth0 nodad && "
        "ip addr add 2001:db8:5163:1::5/64 dev eth0 preferred_lft 0 nodad && "
        f"ip -6 route add default via {GATEWAY6} dev eth0",
    )
    assert live.ipv6("eth0")[0]["local"] == "2001:db8:5163:1::5", "ip no longer lists the deprecated one first"
    starter = starter_from_host(live, {}, b"", "kvm01", False)
    assert (starter.ipv6_method, starter.ipv6_address, starter.ipv6_gateway) == (
        "static",
        "2001:db8:5163:1::6/64",
        GATEWAY6,
    )
    assert "eth0's 2001:db8:5163:1::5/64 is deprecated (being renumbered away); not carried over" in starter.warnings


def test_a_dhcp_nic_says_what_it_drops_its_static_extra_and_its_own_commands(bare_host: Lab) -> None:
    live = readdress(
        bare_host,
        f"ip addr add {HOST_ADDRESS}/24 dev eth0 valid_lft 3600 preferred_lft 3600 && "
        "ip addr add 198.51.100.3/24 dev eth0 && "
        f"ip route add default via {GATEWAY} proto dhcp",
    )
    config = b"auto eth0\niface eth0 inet dhcp\n  up ip addr add 198.51.100.3/24 dev eth0\n"
    starter = starter_from_host(live, {"/etc/network/interfaces": config}, b"", "kvm01", False)
    assert starter.method == "dhcp"
    assert starter.warnings == (
        "/etc/network/interfaces:3: `up ip addr add 198.51.100.3/24 dev eth0` in eth0's inet stanza is not "
        "carried over; add it to a file the profile sources, for the bridge",
        "eth0 also has 198.51.100.3/24 beside its DHCP lease; a DHCP bridge holds only the lease, "
        "so it is not carried over",
    )
