"""`kvmbridge status`: the running host against the profile.

The comparison is pure, so each check gets a failing and a passing case on
hand-made facts; the real thing runs in a namespace host booted from the
rendered tree, then broken on purpose, through the CLI.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from kvmbridge.guardrun import Check
from kvmbridge.livefacts import Facts, sysctl_values
from kvmbridge.livestatus import compare
from kvmbridge.model import Bridge, HostProfile, IPv4, IPv6, Network
from kvmbridge.profile import load_profile
from kvmbridge.render import render

from .bootcheck import boot, live_status, profile_toml
from .conftest import GOLDEN, require_root, require_tool
from .netns import GATEWAY, HOST6_ADDRESS, HOST_ADDRESS, VM6_ADDRESS, Lab, readdress, render_tree

MAC = "52:54:00:12:34:56"


def article() -> HostProfile:
    return readdress(load_profile(GOLDEN / "article.toml"))


def good_facts(profile: HostProfile) -> dict[str, Any]:
    """Facts of a host that came up exactly as `profile` says (single bridge br0 on eth0)."""
    bridge = profile.bridges["br0"]
    data = {"stp_state": 0, "forward_delay": bridge.forward_delay * 100, "priority": 32768, "ageing_time": 30000}
    return {
        "links": [
            {"ifname": "eth0", "flags": ["UP"], "master": "br0", "address": MAC},
            {
                "ifname": "br0",
                "flags": ["UP"],
                "mtu": 1500,
                "address": MAC,
                "linkinfo": {"info_kind": "bridge", "info_data": data},
            },
        ],
        "addrs": [
            {
                "ifname": "br0",
                "addr_info": [{"family": "inet", "local": HOST_ADDRESS, "prefixlen": 24, "scope": "global"}],
            }
        ],
        "routes4": [{"dst": "default", "gateway": GATEWAY, "dev": "br0"}],
        "sysctl": dict(sysctl_values(render(profile))),
        "br_netfilter": True,
        "networks": {"bridge-network": {"Persistent": "yes", "Autostart": "yes", "Active": "yes", "Bridge": "br0"}},
    }


def lines(profile: HostProfile, facts: dict[str, Any]) -> list[str]:
    result = compare(profile, render(profile), Facts(**facts))
    return [m.line() for m in result.mismatches]


def test_a_host_as_profiled_has_no_mismatch() -> None:
    assert lines(article(), good_facts(article())) == []


def with_link(facts: dict[str, Any], name: str, **changes: Any) -> dict[str, Any]:
    for link in facts["links"]:
        if link["ifname"] == name:
            link.update(changes)
    return facts


def with_bridge_data(facts: dict[str, Any], **changes: Any) -> dict[str, Any]:
    facts["links"][1]["linkinfo"]["info_data"].update(changes)
    return facts


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (lambda f: f.update(links=f["links"][:1]), ["br0: bridge: expected present, found no such interface"]),
        (lambda f: with_link(f, "br0", linkinfo={"info_kind": "veth"}), ["br0: kind: expected bridge, found veth"]),
        (lambda f: with_link(f, "br0", flags=["BROADCAST"]), ["br0: state: expected up, found down"]),
        (lambda f: with_link(f, "eth0", master=None), ["br0: ports: expected eth0, found none"]),
        (
            lambda f: f["links"].append({"ifname": "eth9", "flags": ["UP"], "master": "br0"}),
            ["br0: ports: expected eth0, found eth0 eth9"],
        ),
        (lambda f: with_link(f, "eth0", flags=[]), ["eth0: state: expected up, found down"]),
        (  # a guest's tap (qemu) or libvirt's vnetN is a VM on the bridge, not a port
            lambda f: f["links"].extend(
                [
                    {"ifname": "vnet3", "master": "br0", "linkinfo": {"info_kind": "veth"}},
                    {"ifname": "guesttap", "master": "br0", "linkinfo": {"info_kind": "tun"}},
                ]
            ),
            [],
        ),
        (lambda f: with_bridge_data(f, stp_state=1), ["br0: stp: expected off, found on"]),
        (lambda f: with_bridge_data(f, forward_delay=1500), ["br0: forward_delay: expected 0s, found 15s"]),
        (
            lambda f: f["addrs"][0].update(addr_info=[]),
            [f"br0: ipv4 address: expected {HOST_ADDRESS}/24, found none"],
        ),
        (
            lambda f: f.update(routes4=[{"dst": "default", "gateway": "198.51.100.9", "dev": "br0"}]),
            [f"br0: ipv4 default route: expected via {GATEWAY}, found via 198.51.100.9 dev br0"],
        ),
        (
            lambda f: f.update(routes4=[]),
            [f"br0: ipv4 default route: expected via {GATEWAY}, found no default route"],
        ),
        (
            lambda f: f["sysctl"].update({"net.ipv4.ip_forward": "0"}),
            ["net.ipv4.ip_forward: value: expected 1, found 0"],
        ),
        (
            lambda f: f["sysctl"].update({"net.bridge.bridge-nf-call-iptables": None}),
            ["net.bridge.bridge-nf-call-iptables: value: expected 0, found no such key"],
        ),
        (
            lambda f: f["networks"]["bridge-network"].update(Active="no"),
            ["network bridge-network: active: expected yes, found no"],
        ),
        (
            lambda f: f["networks"]["bridge-network"].update(Autostart="no"),
            ["network bridge-network: autostart: expected yes, found no"],
        ),
        (
            lambda f: f["networks"]["bridge-network"].update(Bridge="virbr0"),
            ["network bridge-network: bridge: expected br0, found virbr0"],
        ),
        (lambda f: f.update(networks={}), ["network bridge-network: defined: expected yes, found no"]),
        (
            lambda f: f.update(networks=None, libvirt_error="virsh is not installed"),
            ["network bridge-network: libvirt: expected defined, found unknown: virsh is not installed"],
        ),
        (
            lambda f: f.update(files=(("/etc/network/interfaces", "drift"), ("/etc/sysctl.d/bridge.conf", "create"))),
            [
                "etc/network/interfaces: installed file: expected as rendered, found changed by someone else (drift)",
                "etc/sysctl.d/bridge.conf: installed file: expected as rendered, found missing",
            ],
        ),
    ],
)
def test_each_difference_is_one_line(breakage: Any, expected: list[str]) -> None:
    facts = good_facts(article())
    breakage(facts)
    assert lines(article(), facts) == expected


def port_and_bridge(facts: dict[str, Any], port: dict[str, Any], bridge: dict[str, Any]) -> dict[str, Any]:
    with_link(facts, "eth0", **port)
    return with_link(facts, "br0", **bridge)


NO_CARRIER = {"flags": ["NO-CARRIER", "BROADCAST", "MULTICAST", "UP"], "operstate": "DOWN"}


def stp_port(state: str, carrier: bool = True) -> dict[str, Any]:
    flags = ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"] if carrier else ["NO-CARRIER", "BROADCAST", "UP"]
    return {
        "flags": flags,
        "operstate": "UP" if carrier else "LOWERLAYERDOWN",
        "linkinfo": {"info_slave_kind": "bridge", "info_slave_data": {"state": state}},
    }


@pytest.mark.parametrize(
    ("port", "bridge", "expected"),
    [
        (  # outside review finding F7: the cable is out, yet status said "running as profiled"
            stp_port("disabled", carrier=False),
            NO_CARRIER,
            [
                "eth0: carrier: expected up, found no carrier",
                "br0: carrier: expected up, found no carrier (no port has a link)",
            ],
        ),
        (
            {"flags": ["BROADCAST", "UP"], "operstate": "DORMANT"},
            {"flags": ["BROADCAST", "UP"], "operstate": "LOWERLAYERDOWN"},
            [
                "eth0: carrier: expected up, found operstate dormant",
                "br0: carrier: expected up, found operstate lowerlayerdown (no port has a link)",
            ],
        ),
        (  # STP holds the only port: a loop, or another bridge wins: the host is cut off
            stp_port("blocking"),
            NO_CARRIER,
            ["br0: carrier: expected up, found no carrier (no port forwards: eth0 blocking)"],
        ),
        (stp_port("listening"), NO_CARRIER, []),  # at every boot with STP on: a note, not a fault
        (stp_port("learning"), NO_CARRIER, []),
        (stp_port("forwarding"), {"flags": ["BROADCAST", "UP", "LOWER_UP"], "operstate": "UP"}, []),
        ({"flags": ["UP", "LOWER_UP"], "operstate": "UNKNOWN"}, {"flags": ["UP"], "operstate": "UNKNOWN"}, []),
    ],
)
def test_a_port_or_bridge_without_carrier_is_a_mismatch_but_stp_settling_is_a_note(
    port: dict[str, Any], bridge: dict[str, Any], expected: list[str]
) -> None:
    facts = port_and_bridge(good_facts(article()), port, bridge)
    result = compare(article(), render(article()), Facts(**facts))
    assert [m.line() for m in result.mismatches] == expected
    state = port.get("linkinfo", {}).get("info_slave_data", {}).get("state")
    settling = [note for note in result.notes if "not forwarding yet" in note]
    if state in ("listening", "learning"):
        assert settling == [
            f"br0: not forwarding yet: STP is eth0 {state}; it forwards within 2 x forward_delay (0s) of the port's link"
        ]
    else:
        assert settling == []


def test_a_bridge_without_ports_needs_no_carrier() -> None:
    profile = tuned(article(), ports=())
    facts = good_facts(profile)
    facts["links"] = facts["links"][1:]
    with_link(facts, "br0", **NO_CARRIER)
    assert lines(profile, facts) == []


def test_bridge_sysctl_keys_count_as_fine_while_br_netfilter_is_not_loaded() -> None:
    facts = good_facts(article())
    for key in list(facts["sysctl"]):
        if key.startswith("net.bridge."):
            facts["sysctl"][key] = None
    facts["br_netfilter"] = False
    result = compare(article(), render(article()), Facts(**facts))
    assert result.as_profiled
    assert any("br_netfilter is not loaded" in note for note in result.notes)


def tuned(profile: HostProfile, **changes: Any) -> HostProfile:
    bridge = msgspec.structs.replace(profile.bridges["br0"], **changes)
    return msgspec.structs.replace(profile, bridges={"br0": bridge})


def test_timers_priority_mtu_and_mac_are_compared_as_written() -> None:
    profile = tuned(
        article(),
        stp=True,
        forward_delay=4,
        hello_time=2,
        max_age=6,
        ageing=300,
        priority=4096,
        mtu=9000,
        hwaddress=MAC,
    )
    facts = good_facts(profile)
    with_bridge_data(facts, stp_state=1, forward_delay=400, hello_time=200, max_age=600, priority=4096)
    with_link(facts, "br0", mtu=9000)
    assert lines(profile, facts) == []
    with_bridge_data(facts, hello_time=100, max_age=2000, priority=32768, ageing_time=1000)
    with_link(facts, "br0", mtu=1500, address="52:54:00:00:00:01")
    assert lines(profile, facts) == [
        "br0: hello_time: expected 2s, found 1s",
        "br0: max_age: expected 6s, found 20s",
        "br0: ageing: expected 300s, found 10s",
        "br0: priority: expected 4096, found 32768",
        "br0: mtu: expected 9000, found 1500",
        f"br0: mac: expected {MAC}, found 52:54:00:00:00:01",
    ]
    with_bridge_data(facts, topology_change=1, ageing_time=800)  # 802.1D: 2 * forward_delay while it changes
    assert "br0: ageing: expected 8s, found 8s" not in lines(profile, facts)
    assert not [line for line in lines(profile, facts) if "ageing" in line]


def test_hwaddress_naming_a_port_means_that_port_s_mac() -> None:
    profile = tuned(article(), hwaddress="eth0")
    facts = good_facts(profile)
    assert lines(profile, facts) == []
    with_link(facts, "eth0", address="52:54:00:aa:bb:cc")
    assert lines(profile, facts) == [f"br0: mac: expected 52:54:00:aa:bb:cc, found {MAC}"]


def test_dhcp_wants_a_dynamic_address_and_a_default_route_on_the_bridge() -> None:
    profile = tuned(article(), ipv4=IPv4(method="dhcp"))
    facts = good_facts(profile)
    assert lines(profile, facts) == [
        f"br0: ipv4 address: expected a DHCP lease (dynamic address), found {HOST_ADDRESS}/24"
    ]
    facts["addrs"][0]["addr_info"][0]["dynamic"] = True
    assert lines(profile, facts) == []
    facts["routes4"] = [{"dst": "default", "gateway": GATEWAY, "dev": "eth1"}]
    assert lines(profile, facts) == [
        f"br0: ipv4 default route: expected via the DHCP server's router, found via {GATEWAY} dev eth1"
    ]


def test_ipv6_static_address_and_gateway() -> None:
    profile = tuned(article(), ipv6=IPv6(method="static", address="2001:db8:0:1::20/64", gateway="fe80::1", dns=()))
    facts = good_facts(profile)
    facts["addrs"][0]["addr_info"].append(
        {"family": "inet6", "local": "2001:db8:0:1:0::20", "prefixlen": 64, "scope": "global"}
    )
    facts["routes6"] = [{"dst": "default", "gateway": "fe80::1", "dev": "br0"}]
    facts["ipv6_conf"] = {"br0": {"accept_ra": "1", "autoconf": "0", "forwarding": "0"}}
    assert lines(profile, facts) == []
    facts["routes6"] = []
    assert lines(profile, facts) == ["br0: ipv6 default route: expected via fe80::1, found no default route"]
    facts["ipv6_conf"] = {}
    assert "br0: ipv6: expected enabled, found disabled (no /proc/sys/net/ipv6/conf entry)" in lines(profile, facts)


def test_every_extra_static_ipv6_address_is_checked() -> None:
    block = IPv6(method="static", address="2001:db8:0:1::20/64", extra_addresses=("2001:db8:77::20/64",))
    profile = tuned(article(), ipv6=block)
    facts = good_facts(profile)
    facts["addrs"][0]["addr_info"].append(
        {"family": "inet6", "local": "2001:db8:0:1::20", "prefixlen": 64, "scope": "global"}
    )
    facts["ipv6_conf"] = {"br0": {"accept_ra": "0", "autoconf": "0", "forwarding": "0"}}
    assert lines(profile, facts) == ["br0: ipv6 address: expected 2001:db8:77::20/64, found 2001:db8:0:1::20/64"]
    facts["addrs"][0]["addr_info"].append(
        {"family": "inet6", "local": "2001:db8:77::20", "prefixlen": 64, "scope": "global"}
    )
    assert lines(profile, facts) == []


def test_a_dad_failed_static_ipv6_address_is_a_mismatch_and_a_tentative_one_is_pending() -> None:
    """ATTACK14b F11: the kernel never uses a `dadfailed` address (another LAN host holds it); status
    counted it as present, and auto-confirm confirmed on it. Still `tentative` = DAD running: a note
    that auto-confirm waits out (Status.pending), not a mismatch."""
    block = IPv6(method="static", address="2001:db8:0:1::20/64", extra_addresses=("2001:db8:77::20/64",))
    profile = tuned(article(), ipv6=block)
    facts = good_facts(profile)
    primary = {"family": "inet6", "local": "2001:db8:0:1::20", "prefixlen": 64, "scope": "global"}
    extra = {"family": "inet6", "local": "2001:db8:77::20", "prefixlen": 64, "scope": "global"}
    facts["addrs"][0]["addr_info"] += [primary, extra]
    facts["ipv6_conf"] = {"br0": {"accept_ra": "0", "autoconf": "0", "forwarding": "0"}}
    assert lines(profile, facts) == []
    extra.update(tentative=True, dadfailed=True)
    assert lines(profile, facts) == [
        "br0: ipv6 address: expected 2001:db8:77::20/64, found 2001:db8:77::20/64 duplicate on the LAN (DAD failed: unused)"
    ]
    del extra["dadfailed"]
    result = compare(profile, render(profile), Facts(**facts))
    assert result.as_profiled
    note = "br0: ipv6 address 2001:db8:77::20/64 is still tentative (duplicate address detection running)"
    assert result.pending == (note,) and note in result.notes
    assert not Check(result, ()).passed and list(Check(result, ()).lines()) == [note]  # auto-confirm tries again
    del extra["tentative"]
    assert Check(compare(profile, render(profile), Facts(**facts)), ()).passed


def test_status_in_a_namespace_reports_a_static_ipv6_address_another_host_holds(tmp_path: Path) -> None:
    """The same for real: the guest already holds the extra address, the kernel marks the bridge's copy
    dadfailed, and `kvmbridge status` exits 1 naming it."""
    require_root()
    for tool in ("ip", "ifup", "brctl", "unshare"):
        require_tool(tool)
    block = IPv6(method="static", address=f"{HOST6_ADDRESS}/64", extra_addresses=(f"{VM6_ADDRESS}/64",))
    profile = tuned(article(), ipv6=block)
    alone = tuned(article(), ipv6=IPv6(method="static", address=f"{HOST6_ADDRESS}/64"))
    root, root_alone = tmp_path / "root", tmp_path / "alone"
    render_tree(profile, root)
    render_tree(alone, root_alone)
    with Lab() as lab:
        lab.wire_ports(profile)
        assert lab.ifup(root_alone).returncode == 0
        lab.attach_vm("br0")
        lab.sh(lab.host, f"ip -6 addr add {VM6_ADDRESS}/64 dev br0")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            found = lab.ip_json(lab.host, f"-6 addr show dev br0 to {VM6_ADDRESS}/128")
            if found and found[0]["addr_info"][0].get("dadfailed"):
                break
            time.sleep(0.2)
        status = live_status(lab, profile, root)
    subjects = [(m["subject"], m["check"], m["expected"]) for m in status["mismatches"]]
    assert ("br0", "ipv6 address", f"{VM6_ADDRESS}/64") in subjects, status
    assert not status["as_profiled"]


SLAAC = {"family": "inet6", "local": "2001:db8:0:1:5054:ff:fe12:3456", "prefixlen": 64, "scope": "global"}


def test_slaac_wants_a_dynamic_address_the_router_s_default_route_and_accept_ra_as_rendered() -> None:
    profile = msgspec.structs.replace(
        tuned(article(), ipv6=IPv6(method="auto")), sysctl=msgspec.structs.replace(article().sysctl, ipv6_forward=True)
    )
    facts = good_facts(profile)
    facts["addrs"][0]["addr_info"].append({**SLAAC, "dynamic": True, "mngtmpaddr": True})
    facts["routes6"] = [{"dst": "default", "gateway": "fe80::1", "dev": "br0", "protocol": "ra"}]
    facts["ipv6_conf"] = {"br0": {"accept_ra": "2", "autoconf": "1", "forwarding": "1"}}
    assert lines(profile, facts) == []
    facts["addrs"][0]["addr_info"][-1] = SLAAC  # static, not from an RA
    facts["routes6"] = []
    facts["ipv6_conf"] = {"br0": {"accept_ra": "1", "autoconf": "1", "forwarding": "1"}}
    assert lines(profile, facts) == [
        "br0: ipv6 address: expected a SLAAC address (dynamic, /64, from the advertised prefix), "
        f"found {SLAAC['local']}/64",
        "br0: accept_ra: expected 2, found 1",
        "br0: router advertisements: expected accepted (accept_ra 2 on a forwarding interface), "
        "found ignored (accept_ra 1, forwarding 1)",
        "br0: ipv6 default route: expected via the advertising router, found no default route",
    ]


def test_netplan_slaac_is_judged_by_its_address_and_route_not_the_kernel_s_accept_ra() -> None:
    """systemd-networkd takes RAs in user space and sets accept_ra 0 itself (seen in the netplan image boot)."""
    slaac = tuned(article(), ipv6=IPv6(method="auto"), hwaddress=MAC)
    profile = msgspec.structs.replace(
        slaac, renderer="netplan", sysctl=msgspec.structs.replace(article().sysctl, ipv6_forward=True)
    )
    facts = good_facts(profile)
    facts["addrs"][0]["addr_info"].append({**SLAAC, "dynamic": True})
    facts["routes6"] = [{"dst": "default", "gateway": "fe80::1", "dev": "br0", "protocol": "ra"}]
    facts["ipv6_conf"] = {"br0": {"accept_ra": "0", "autoconf": "0", "forwarding": "1"}}
    assert lines(profile, facts) == []
    facts["addrs"][0]["addr_info"].pop()
    facts["routes6"] = []
    assert lines(profile, facts) == [
        "br0: ipv6 address: expected a SLAAC address (dynamic, /64, from the advertised prefix), found none",
        "br0: ipv6 default route: expected via the advertising router, found no default route",
    ]


def test_dhcpv6_wants_a_lease_and_forwarding_as_written() -> None:
    profile = msgspec.structs.replace(
        tuned(article(), ipv6=IPv6(method="dhcp")), sysctl=msgspec.structs.replace(article().sysctl, ipv6_forward=True)
    )
    facts = good_facts(profile)
    lease = {"family": "inet6", "local": "2001:db8:0:1::1c9", "prefixlen": 128, "scope": "global", "dynamic": True}
    facts["addrs"][0]["addr_info"].append(lease)
    facts["routes6"] = [{"dst": "default", "gateway": "fe80::1", "dev": "br0", "protocol": "ra"}]
    facts["ipv6_conf"] = {"br0": {"accept_ra": "2", "autoconf": "1", "forwarding": "1"}}
    assert lines(profile, facts) == []
    facts["addrs"][0]["addr_info"].pop()
    facts["ipv6_conf"] = {"br0": {"accept_ra": "2", "autoconf": "1", "forwarding": "0"}}
    assert lines(profile, facts) == [
        "br0: ipv6 address: expected a DHCPv6 lease (dynamic address), found none",
        "br0: ipv6 forwarding: expected 1, found 0",
    ]


def test_a_network_not_autostarted_need_not_be_active() -> None:
    profile = msgspec.structs.replace(article(), networks={"bridge-network": Network(bridge="br0", autostart=False)})
    facts = good_facts(profile)
    facts["networks"]["bridge-network"].update(Autostart="no", Active="no")
    assert lines(profile, facts) == []


# --- the real thing: a namespace host booted from the rendered tree, through the CLI ---


def status_cli(lab: Lab, profile_path: Path, root: Path, *extra: str) -> tuple[int, str, str]:
    command = [sys.executable, "-m", "kvmbridge", "status", str(profile_path), "--root", str(root), *extra]
    result = lab.sh(lab.host, shlex.join(command), check=False)
    return result.returncode, result.stdout, result.stderr


@pytest.fixture
def booted(tmp_path: Path) -> Any:
    require_root()
    for tool in ("ip", "ifup", "brctl", "unshare", "ping", "sysctl"):
        require_tool(tool)
    profile = msgspec.structs.replace(article(), networks={})
    root = tmp_path / "root"
    render_tree(profile, root)
    path = tmp_path / profile.source_name
    path.write_text(profile_toml(profile))
    with Lab() as lab:
        lab.wire_ports(profile)
        boot(profile, root, lab)
        yield lab, path, root


def test_status_of_a_booted_host_exits_0_then_1_with_one_line_per_difference(booted: Any) -> None:
    lab, path, root = booted
    code, out, err = status_cli(lab, path, root)
    assert (code, err) == (0, ""), out
    assert out.splitlines()[-2:] == [
        "boot guard: not armed",
        "kvm01: running as " + str(path) + " says (1 bridges, 4 sysctl, 0 networks, 4 files checked)",
    ]
    lab.sh(lab.host, "ip link set eth0 nomaster && ip route del default && sysctl -qw net.ipv4.ip_forward=0")
    (root / "etc/sysctl.d/ip_forward.conf").write_text("net.ipv4.ip_forward = 0\n")
    code, out, _ = status_cli(lab, path, root)
    assert code == 1
    assert [line for line in out.splitlines() if not line.startswith("note: ")] == [
        "br0: ports: expected eth0, found none",
        f"br0: ipv4 default route: expected via {GATEWAY}, found no default route",
        "net.ipv4.ip_forward: value: expected 1, found 0",
        "etc/sysctl.d/ip_forward.conf: installed file: expected as rendered, found different",
        "boot guard: not armed",
        "kvm01: 4 difference(s) from " + str(path) + " (1 bridges, 4 sysctl, 0 networks, 4 files checked)",
    ]
    code, out, _ = status_cli(lab, path, root, "--json")
    report = json.loads(out)
    assert code == 1 and report["as_profiled"] is False
    assert report["mismatches"][0] == {
        "subject": "br0",
        "check": "ports",
        "expected": "eth0",
        "found": "none",
        "line": "br0: ports: expected eth0, found none",
    }
    assert report["guard"] == {"armed": False}


def settled(lab: Lab, path: Path, root: Path, expected: list[str]) -> list[str]:
    """Status lines (notes aside) once they match, or after 5 s: the kernel reports carrier at once, but
    a bridge learns of its ports' carrier through linkwatch, a moment later."""
    deadline = time.monotonic() + 5
    while True:
        code, out, _ = status_cli(lab, path, root)
        found = [line for line in out.splitlines() if not line.startswith("note: ")]
        if found == expected or time.monotonic() > deadline:
            assert code == 1
            return found
        time.sleep(0.5)


def test_status_of_a_booted_host_whose_cable_is_out_exits_1(booted: Any) -> None:
    """Outside review finding F7: the only port without carrier, the gateway unreachable, and exit 0."""
    lab, path, root = booted
    lab.sh(lab.lan, "ip link set l0 down")  # the switch end of eth0: the cable is pulled
    assert not lab.ping(lab.host, GATEWAY)
    summary = f" from {path} (1 bridges, 4 sysctl, 0 networks, 4 files checked)"
    expected = [
        "eth0: carrier: expected up, found no carrier",
        "boot guard: not armed",
        "kvm01: 1 difference(s)" + summary,
    ]
    assert settled(lab, path, root, expected) == expected  # the VM's vnet0 still gives br0 carrier
    lab.sh(lab.host, "ip link del vnet0")  # the guest goes: nothing forwards on br0 any more
    expected = [
        "eth0: carrier: expected up, found no carrier",
        "br0: carrier: expected up, found no carrier (no port has a link)",
        "boot guard: not armed",
        "kvm01: 2 difference(s)" + summary,
    ]
    assert settled(lab, path, root, expected) == expected
    lab.sh(lab.lan, "ip link set l0 up")
    assert lab.wait_ping(lab.host, GATEWAY)
    assert status_cli(lab, path, root)[0] == 0


def test_status_while_stp_still_learns_at_boot_is_a_note_then_nothing(tmp_path: Path) -> None:
    """With STP on, the port of a freshly started bridge listens, then learns, 2 x forward_delay without
    carrier on the bridge: every boot passes through it, so it is no fault (auto-confirm's gateway check
    retries through it); once forwarding, nothing is left to say."""
    require_root()
    for tool in ("ip", "ifup", "brctl", "unshare", "ping", "sysctl"):
        require_tool(tool)
    profile = tuned(msgspec.structs.replace(article(), networks={}), stp=True, forward_delay=6, max_wait=0)
    root = tmp_path / "root"
    render_tree(profile, root)
    path = tmp_path / profile.source_name
    path.write_text(profile_toml(profile))
    with Lab() as lab:
        lab.wire_ports(profile)
        lab.apply_sysctl(root)
        assert lab.ifup(root).returncode == 0
        code, out, _ = status_cli(lab, path, root)
        assert code == 0, out
        settling = [line for line in out.splitlines() if "not forwarding yet" in line]
        assert len(settling) == 1 and settling[0].startswith("note: br0: not forwarding yet: STP is eth0 l"), out
        assert settling[0].endswith("it forwards within 2 x forward_delay (12s) of the port's link")
        assert lab.wait_ping(lab.host, GATEWAY, 20)
        code, out, _ = status_cli(lab, path, root)
        assert code == 0 and "not forwarding yet" not in out, out


def test_status_of_a_bad_profile_is_one_line_and_exit_2(tmp_path: Path) -> None:
    from .conftest import run

    bad = tmp_path / "bad.toml"
    bad.write_text('hostname = "kvm01"\n[bridges.br0]\nports = ["eth0"]\nstpp = true\n')
    result = run("status", bad, "--root", tmp_path)
    assert result.exit_code == 2
    assert result.stderr == f"{bad}: bridges.br0.stpp: unknown key; did you mean 'stp'?\n"


def test_bridge_model_defaults_are_what_status_expects() -> None:
    assert Bridge().forward_delay == 0 and Bridge().stp is False
