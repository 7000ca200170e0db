"""The accept_ra trap, for real in network namespaces: with ipv6_forward on, a bridge takes router
advertisements only at accept_ra 2, which the ifupdown template writes; at 1 the same RAs are ignored."""

from __future__ import annotations

from pathlib import Path

import pytest

from kvmbridge.model import HostProfile
from kvmbridge.profile import load_profile
from kvmbridge.render import environment, render
from kvmbridge.tree import write_tree

from .bootcheck import boot
from .conftest import override_template, require_root, require_tool
from .netns import GATEWAY6, HOST6_ADDRESS, LAN6_PREFIX, ROUTER_LL, Lab, lab_extras6, render_tree


@pytest.fixture(autouse=True)
def _system_tools() -> None:
    require_root()
    for tool in ("ip", "ifup", "brctl", "unshare", "ping", "dnsmasq", "sysctl"):
        require_tool(tool)


SLAAC_FORWARDING = """hostname = "kvm6"
[sysctl]
ip_forward = false
ipv6_forward = true
[bridges.br0]
ports = ["eth0"]
hwaddress = "eth0"
ipv4 = { method = "manual" }
ipv6 = { method = "auto" }
"""


def slaac_forwarding_profile(tmp_path: Path) -> HostProfile:
    path = tmp_path / "kvm6.toml"
    path.write_text(SLAAC_FORWARDING)
    return load_profile(path)


def test_slaac_on_a_forwarding_host_configures_because_accept_ra_2_is_rendered(tmp_path: Path) -> None:
    profile = slaac_forwarding_profile(tmp_path)
    root = tmp_path / "root"
    render_tree(profile, root)
    assert "    accept_ra 2\n" in (root / "etc/network/interfaces").read_text()
    facts = boot(profile, root)  # asserts accept_ra 2, a SLAAC address, the RA default route, pings both ways
    assert str(facts["ipv6"]).startswith(LAN6_PREFIX + ":")


def test_with_accept_ra_1_a_forwarding_bridge_ignores_router_advertisements(tmp_path: Path) -> None:
    """The trap the rendering avoids, shown for real: same boot, accept_ra 1, no SLAAC address."""
    source = environment().loader.get_source(environment(), "etc/network/interfaces.j2")[0]  # type: ignore[union-attr]
    assert "accept_ra {{ accept_ra }}" in source
    templates = override_template(
        tmp_path / "templates", "etc/network/interfaces.j2", source.replace("accept_ra {{ accept_ra }}", "accept_ra 1")
    )
    profile = slaac_forwarding_profile(tmp_path)
    root = tmp_path / "root"
    write_tree(render(profile, templates), root)
    with Lab() as lab:
        lab.wire_ports(profile)
        lab.start_router_advertisements()
        lab.apply_sysctl(root)
        assert lab.ifup(root).returncode == 0
        conf = lab.ipv6_conf(lab.host)["br0"]
        assert (conf["forwarding"], conf["accept_ra"]) == ("1", "1")
        assert lab.wait_global6(lab.host, "br0", lambda a: True, seconds=6) == []
        assert lab.ip_json(lab.host, "-6 route show default") == []
        # control: only accept_ra differs; re-solicit (link down/up) and the same RAs configure the bridge
        lab.sh(lab.host, "sysctl -qw net.ipv6.conf.br0.accept_ra=2 && ip link set br0 down && ip link set br0 up")
        assert lab.wait_global6(lab.host, "br0", lambda a: bool(a.get("dynamic")))


STP_STATIC6 = f"""hostname = "kvm6"
[bridges.br0]
ports = ["eth0"]
hwaddress = "eth0"
stp = true
forward_delay = 4
ipv4 = {{ method = "manual" }}
ipv6 = {{ method = "static", address = "{HOST6_ADDRESS}/64", gateway = "{ROUTER_LL}", extra_addresses = {list(lab_extras6(2))!r} }}
""".replace("'", '"')


def test_with_stp_the_first_ipv6_stanza_waits_out_listening_and_learning_and_extras_come_up(tmp_path: Path) -> None:
    """ATTACK14b F5: STP keeps the bridge without carrier for 2 x forward_delay (8 s here), longer than
    ifupdown's default DAD wait (60 x 0.1 s): the first inet6 stanza timed out, ifup failed br0 and no
    extra address was added. The rendered dad-attempts covers listening + learning; DAD itself stays on."""
    path = tmp_path / "kvm6.toml"
    path.write_text(STP_STATIC6)
    profile = load_profile(path)
    root = tmp_path / "root"
    render_tree(profile, root)
    with Lab() as lab:
        lab.wire_ports(profile)
        lab.apply_sysctl(root)
        result = lab.ifup(root)
        assert result.returncode == 0, result.stderr
        assert "Timed out" not in result.stdout + result.stderr
        found = {a["local"]: a for a in lab.global6(lab.host, "br0")}
        wanted = [HOST6_ADDRESS, *(extra.split("/")[0] for extra in lab_extras6(2))]
        assert sorted(found) == sorted(wanted), found
        assert not [a for a in found.values() if a.get("tentative") or a.get("dadfailed")], found
        assert lab.wait_ping(lab.host, GATEWAY6)


def test_with_stp_dhcpv6_waits_out_listening_and_learning_for_its_link_local_address(tmp_path: Path) -> None:
    """The same STP trap for `inet6 dhcp`: ifupdown waits 60 x 0.1 s for a non-tentative link-local
    address before dhclient -6 (wait-for-ll6.sh), then fails br0 without a lease. The rendered
    ll-attempts covers 2 x forward_delay."""
    path = tmp_path / "kvm6.toml"
    path.write_text(
        'hostname = "kvm6"\n[bridges.br0]\nports = ["eth0"]\nhwaddress = "eth0"\nstp = true\nforward_delay = 4\n'
        'ipv4 = { method = "manual" }\nipv6 = { method = "dhcp" }\n'
    )
    profile = load_profile(path)
    root = tmp_path / "root"
    render_tree(profile, root)
    facts = boot(profile, root)  # asserts ifup -a succeeded, a DHCPv6 lease, the RA default route, pings
    assert str(facts["ipv6"]).startswith(LAN6_PREFIX + ":")
