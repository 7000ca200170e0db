"""Safety checks: each fires on its situation (fake roots in tests/data/roots) and stays silent
on a clean Debian root; running-host checks use `ip -j` captured from namespaces."""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from kvmbridge.findings import Report
from kvmbridge.livehost import LiveHost
from kvmbridge.profile import load_profile
from kvmbridge.render import render
from kvmbridge.root import Root
from kvmbridge.safety import check_target
from kvmbridge.state import State

from .conftest import GOLDEN, require_root, require_tool, run, write_profile
from .netns import GATEWAY, GATEWAY6, HOST6_ADDRESS, LAN6_NET, Lab

DATA = Path(__file__).parent / "data/roots"
ARTICLE = GOLDEN / "article.toml"


def make_root(tmp_path: Path, *overlays: str, base: str = "debian") -> Path:
    root = tmp_path / "root"
    for layer in (base, *overlays):
        shutil.copytree(DATA / layer, root, dirs_exist_ok=True)
    return root


def findings(profile: Path, root: Path, live: LiveHost | None = None) -> Report:
    model = load_profile(profile)
    return check_target(model, render(model), Root(root), State(), live)


def ids(report: Report) -> list[tuple[str, str, str]]:
    return sorted((f.id, f.severity, f.subject) for f in report.findings)


def test_clean_debian_root_has_no_findings(tmp_path: Path) -> None:
    report = findings(ARTICLE, make_root(tmp_path))
    assert report.findings == ()
    assert report.notes == ("running-host checks (SSH session, existing NICs) skipped: the root is not /",)


def test_empty_staging_folder_stays_a_valid_target(tmp_path: Path) -> None:
    (tmp_path / "staging").mkdir()
    result = run("validate", ARTICLE, "--root", tmp_path / "staging")
    assert result.exit_code == 0, result.stderr
    assert f"note: package checks skipped: no dpkg database at {tmp_path / 'staging/var/lib/dpkg/status'}" in (
        result.stderr
    )


SITUATIONS = [
    ("netplan", ARTICLE, [("KB102", "error", "eth0")]),
    ("nm", ARTICLE, [("KB102", "error", "eth0")]),
    ("nm-ifupdown", ARTICLE, [("KB102", "error", "/etc/NetworkManager/NetworkManager.conf")]),
    ("networkd", ARTICLE, [("KB102", "error", "eth0")]),
    ("no-bridge-utils", ARTICLE, [("KB103", "error", "bridge-utils")]),
    ("kubernetes", ARTICLE, [("KB105", "warning", "netfilter.filter_bridged_traffic")]),
    ("kubernetes", GOLDEN / "filter-on.toml", []),
    ("docker", GOLDEN / "filter-on.toml", [("KB106", "warning", "netfilter.filter_bridged_traffic")]),
    ("docker", ARTICLE, []),
    ("proxmox", ARTICLE, [("KB111", "error", "/etc/network/interfaces.new")]),
    (
        "cloud-init",
        ARTICLE,
        [("KB110", "error", "eth0"), ("KB112", "error", "/etc/network/interfaces.d/50-cloud-init")],
    ),
    ("cloud-init-disabled", ARTICLE, [("KB110", "error", "eth0")]),
    ("sourced-port", ARTICLE, [("KB110", "error", "eth0")]),
    # an alias of the port: the bridge's address, and any address at all, lands on the enslaved eth0
    ("sourced-address", ARTICLE, [("KB109", "error", "eth0:1"), ("KB110", "error", "eth0:1")]),
    ("sourced-address6", GOLDEN / "ipv6.toml", [("KB109", "error", "eth1")]),  # same address, other spelling
    # ATTACK14b F10: ::ffff:203.0.113.20 on eth1 is another kernel address than the bridge's 203.0.113.20
    ("sourced-mapped6", GOLDEN / "ipv6.toml", []),
    ("libvirt-conflict", ARTICLE, [("KB108", "error", "bridge-network")]),
]


@pytest.mark.parametrize(
    ("situation", "profile", "expected"), SITUATIONS, ids=[f"{s[0]}-{s[1].stem}" for s in SITUATIONS]
)
def test_each_check_fires_on_its_situation(
    tmp_path: Path, situation: str, profile: Path, expected: list[tuple[str, str, str]]
) -> None:
    base = "no-bridge-utils" if situation == "no-bridge-utils" else "debian"
    overlays = () if situation == "no-bridge-utils" else (situation,)
    report = findings(profile, make_root(tmp_path, *overlays, base=base))
    assert ids(report) == sorted(expected)
    for finding in report.findings:
        assert "\n" not in finding.line() and "(fix: " in finding.line()


def test_missing_ifupdown_and_libvirt(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "var/lib/dpkg").mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text("Package: bash\nStatus: install ok installed\n\n")
    assert ids(findings(ARTICLE, root)) == [
        ("KB103", "error", "bridge-utils"),
        ("KB104", "error", "ifupdown"),
        ("KB107", "warning", "libvirt"),
    ]


def test_libvirt_network_defined_the_same_way_is_not_a_conflict(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    xml = root / "etc/libvirt/qemu/networks/bridge-network.xml"
    xml.parent.mkdir(parents=True)
    xml.write_text(
        "<network><name>bridge-network</name><uuid>3e3fce45-4f53-4fa7-bb32-11f34168b82b</uuid>"
        "<forward mode='bridge'/><bridge name='br0'/></network>\n"
    )
    assert findings(ARTICLE, root).findings == ()


def test_validate_root_exits_3_on_an_error_and_0_on_warnings_only(tmp_path: Path) -> None:
    netplan = make_root(tmp_path / "a", "netplan")
    result = run("validate", ARTICLE, "--root", netplan)
    assert result.exit_code == 3
    assert (
        "error: KB102 eth0: netplan (/etc/netplan/50-cloud-init.yaml) also configures this port of br0; "
        "netplan's renderer would own it at boot, not ifupdown (fix: remove eth0 from "
        "/etc/netplan/50-cloud-init.yaml (or remove netplan))"
    ) in result.stderr.splitlines()
    kube = make_root(tmp_path / "b", "kubernetes")
    result = run("validate", ARTICLE, "--root", kube)
    assert result.exit_code == 0
    assert "warning: KB105 netfilter.filter_bridged_traffic:" in result.stderr


def test_validate_root_json_lists_findings(tmp_path: Path) -> None:
    result = run("validate", ARTICLE, "--root", make_root(tmp_path, "proxmox"), "--json")
    data = json.loads(result.stdout)
    assert [f["id"] for f in data["findings"]] == ["KB206", "KB111"]  # the profile rules' warning, then safety's
    assert data["findings"][1:] == [
        {
            "id": "KB111",
            "severity": "error",
            "subject": "/etc/network/interfaces.new",
            "message": "a pending Proxmox network change: pvenetcommit moves it over /etc/network/interfaces early at boot",
            "fix": "apply or discard it in the Proxmox GUI (or delete it) before installing",
        }
    ]


def test_install_refuses_on_an_error_finding_unless_forced(tmp_path: Path) -> None:
    root = make_root(tmp_path, "networkd")
    before = sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
    result = run("install", ARTICLE, "--root", root)
    assert result.exit_code == 3
    assert result.stderr.splitlines()[-1] == (
        f"{root}: 1 safety error(s) above; nothing was changed (fix them, or install --force if you are sure)"
    )
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == before
    forced = run("install", ARTICLE, "--root", root, "--force")
    assert forced.exit_code == 0
    assert "safety checks: 1 error(s), 0 warning(s), 1 skipped (running-host checks" in forced.stdout


def test_install_report_has_a_safety_summary_line(tmp_path: Path) -> None:
    result = run("install", ARTICLE, "--root", make_root(tmp_path, "kubernetes"))
    assert result.exit_code == 0
    assert "safety checks: 0 error(s), 1 warning(s), 1 skipped" in result.stdout
    assert "warning: KB105" in result.stderr


def test_diff_shows_findings_and_keeps_its_exit_code(tmp_path: Path) -> None:
    result = run("diff", ARTICLE, "--root", make_root(tmp_path, "cloud-init"), "--json")
    assert result.exit_code == 1
    assert {f["id"] for f in json.loads(result.stdout)["findings"]} == {"KB206", "KB110", "KB112"}


# Running-host checks, fed with `ip -j` captured in a namespace.


@pytest.fixture(scope="module")
def captured() -> LiveHost:
    require_root()
    require_tool("ip")
    with Lab() as lab:
        lab.wire([("eth0", True)])
        lab.sh(
            lab.host,
            f"ip link set eth0 up && ip addr add 198.51.100.2/24 dev eth0 && ip route add default via {GATEWAY}",
        )
        mac = lab.ip_json(lab.host, "link show dev eth0")[0]["address"]
        lab.sh(
            lab.host,
            f"ip -6 addr add {HOST6_ADDRESS}/64 dev eth0 nodad && "
            f"ip -6 addr add {eui64(mac)}/64 dev eth0 nodad valid_lft 3600 preferred_lft 3600",
        )
        return lab.capture_live(lab.host)


def eui64(mac: str) -> str:
    """The SLAAC address a NIC with `mac` takes in the lab's prefix (modified EUI-64)."""
    octets = [int(p, 16) for p in mac.split(":")]
    octets[0] ^= 2
    iid = bytes([*octets[:3], 0xFF, 0xFE, *octets[3:]])
    return str(ipaddress.IPv6Address(ipaddress.IPv6Network(LAN6_NET).network_address.packed[:8] + iid))


SSH = "198.51.100.77 50022 198.51.100.2 22"


def live_findings(tmp_path: Path, live: LiveHost, bridge: str) -> list[tuple[str, str, str]]:
    profile = write_profile(tmp_path, f"[sysctl]\nip_forward = false\n[bridges.br0]\n{bridge}\n", name="kvm01.toml")
    return ids(findings(profile, make_root(tmp_path), live))


@pytest.mark.parametrize(
    ("bridge", "expected"),
    [
        ('ports = ["eth0"]\nipv4 = { method = "static", address = "198.51.100.2/24", gateway = "198.51.100.1" }', []),
        (
            'ports = ["eth0"]\nipv4 = { method = "static", address = "198.51.100.3/24", gateway = "198.51.100.1" }',
            [("KB101", "error", "eth0")],
        ),
        ('ports = ["eth0"]\nipv4 = { method = "dhcp" }', [("KB101", "error", "eth0")]),
        ('ports = ["eth0"]\nhwaddress = "eth0"\nipv4 = { method = "dhcp" }', []),
        ('ports = ["eth0"]', [("KB101", "error", "eth0")]),
    ],
    ids=["static-same", "static-other", "dhcp-no-hwaddress", "dhcp-hwaddress", "manual"],
)
def test_ssh_session_through_the_port_is_protected(
    tmp_path: Path, captured: LiveHost, bridge: str, expected: list[tuple[str, str, str]]
) -> None:
    live = LiveHost(captured.links, captured.addrs, captured.routes, ssh_connection=SSH)
    assert live_findings(tmp_path, live, bridge) == expected


def test_ssh_session_on_another_nic_is_no_concern(tmp_path: Path, captured: LiveHost) -> None:
    live = LiveHost(captured.links, captured.addrs, captured.routes, ssh_connection="198.51.100.77 1 127.0.0.1 22")
    assert live_findings(tmp_path, live, 'ports = ["eth0"]\nipv4 = { method = "dhcp" }') == []


def test_port_missing_on_the_running_host(tmp_path: Path, captured: LiveHost) -> None:
    assert live_findings(tmp_path, captured, 'ports = ["eth0", "enp9s0"]\nstp = true\nforward_delay = 15') == [
        ("KB113", "error", "enp9s0")
    ]


STATIC6 = 'ipv4 = { method = "dhcp" }\nipv6 = { method = "static", address = "%s" }'


@pytest.mark.parametrize(
    ("bridge", "on_slaac", "expected"),
    [
        (STATIC6 % f"{HOST6_ADDRESS}/64", False, []),
        (STATIC6 % "2001:0db8:5163:0001:0::2/64", False, []),
        (STATIC6 % "2001:db8:5163:1::3/64", False, [("KB101", "error", "eth0")]),
        (
            'ipv4 = { method = "dhcp" }\nipv6 = { method = "static", address = "2001:db8:5163:1::3/64", '
            f'extra_addresses = ["{HOST6_ADDRESS}/64"] }}',
            False,
            [],
        ),
        ('ipv4 = { method = "static", address = "198.51.100.2/24" }', False, [("KB101", "error", "eth0")]),
        ('hwaddress = "eth0"\nipv4 = { method = "dhcp" }', False, [("KB101", "error", "eth0")]),
        ('hwaddress = "eth0"\nipv6 = { method = "auto" }', True, []),
        ('ipv6 = { method = "auto" }', True, [("KB101", "error", "eth0")]),
        ('hwaddress = "eth0"\nipv6 = { method = "dhcp" }', False, [("KB101", "warning", "eth0")]),
        ('ipv6 = { method = "dhcp" }', False, [("KB101", "error", "eth0")]),
    ],
    ids=[
        "static-same",
        "static-same-spelled-long",
        "static-other",
        "static-extra-same",
        "ipv4-only",
        "dhcpv4-hwaddress-only",
        "slaac-hwaddress",
        "slaac-new-mac",
        "dhcpv6-hwaddress",
        "dhcpv6-new-mac",
    ],
)
def test_ssh_session_over_ipv6_is_protected_like_ipv4(
    tmp_path: Path, captured: LiveHost, bridge: str, on_slaac: bool, expected: list[tuple[str, str, str]]
) -> None:
    mac = captured.link("eth0")["address"]  # type: ignore[index]
    server = eui64(mac) if on_slaac else HOST6_ADDRESS
    ssh = f"2001:db8:5163:1::77 50022 {server} 22"
    live = LiveHost(captured.links, captured.addrs, captured.routes, ssh_connection=ssh)
    assert live_findings(tmp_path, live, f'ports = ["eth0"]\n{bridge}') == expected


def test_ipv4_session_seen_through_an_ipv6_socket_counts_as_ipv4(tmp_path: Path, captured: LiveHost) -> None:
    ssh = "::ffff:198.51.100.77 1 ::ffff:198.51.100.2 22"
    live = LiveHost(captured.links, captured.addrs, captured.routes, ssh_connection=ssh)
    same = 'ports = ["eth0"]\nipv4 = { method = "static", address = "198.51.100.2/24" }'
    other = 'ports = ["eth0"]\nipv4 = { method = "static", address = "198.51.100.3/24" }'
    for folder in ("same", "other"):
        (tmp_path / folder).mkdir()
    assert live_findings(tmp_path / "same", live, same) == []
    assert live_findings(tmp_path / "other", live, other) == [("KB101", "error", "eth0")]


def test_a_port_reached_through_dot_dot_in_a_nested_source_directory_is_still_seen(tmp_path: Path) -> None:
    """Outside review finding: paths with `..` were refused by the reader, so KB110 saw nothing and install went on."""
    root = make_root(tmp_path)
    (root / "etc/network/interfaces.d").mkdir(parents=True)
    (root / "etc/network/interfaces.d/nest").write_text("source-directory /etc/network/interfaces.d/../extra\n")
    (root / "etc/network/extra").mkdir()
    (root / "etc/network/extra/eth0").write_text("iface eth0 inet static\n  address 198.51.100.9/24\n")
    assert ids(findings(ARTICLE, root)) == [("KB110", "error", "eth0")]


def test_a_folder_inside_interfaces_d_is_skipped_as_ifupdown_skips_it(tmp_path: Path) -> None:
    """Outside review finding: a sub-folder was reported as a file ifupdown refuses, blocking install."""
    root = make_root(tmp_path)
    (root / "etc/network/interfaces.d/old").mkdir(parents=True)
    (root / "etc/network/interfaces.d/ok").write_text("source ../interfaces.d/old\n")
    assert findings(ARTICLE, root).findings == ()


SPLIT_STACK = (
    f"auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet6 static\n  address {HOST6_ADDRESS}/64\n"
    f"  gateway {GATEWAY6}\n\nauto eth1\niface eth1 inet static\n  address 198.51.100.2/24\n  gateway {GATEWAY}\n"
)
BRIDGE_ETH1 = 'ports = ["eth1"]\nipv4 = { method = "static", address = "198.51.100.2/24", gateway = "198.51.100.1" }'


@pytest.fixture(scope="module")
def split_stack() -> LiveHost:
    """IPv6 on eth0, IPv4 on eth1 (outside review finding F8)."""
    require_root()
    require_tool("ip")
    with Lab() as lab:
        lab.wire([("eth0", True), ("eth1", True)])
        lab.sh(
            lab.host,
            f"ip link set eth0 up && ip link set eth1 up && ip addr add {HOST6_ADDRESS}/64 dev eth0 nodad && "
            f"ip -6 route add default via {GATEWAY6} dev eth0 && "
            f"ip addr add 198.51.100.2/24 dev eth1 && ip route add default via {GATEWAY}",
        )
        return lab.capture_live(lab.host)


def split_root(tmp_path: Path, config: str, sourced: dict[str, str] | None = None) -> Path:
    root = make_root(tmp_path)
    (root / "etc/network/interfaces.d").mkdir(parents=True)
    (root / "etc/network/interfaces").write_text(config)
    for name, text in (sourced or {}).items():
        (root / "etc/network/interfaces.d" / name).write_text(text)
    return root


def split_findings(tmp_path: Path, live: LiveHost, root: Path) -> Report:
    profile = write_profile(
        tmp_path, f"[sysctl]\nip_forward = false\n[bridges.br0]\n{BRIDGE_ETH1}\n", name="kvm01.toml"
    )
    return findings(profile, root, live)


def test_ssh_on_a_nic_whose_stanza_the_new_interfaces_file_drops_is_a_lockout(
    tmp_path: Path, split_stack: LiveHost
) -> None:
    ssh = f"2001:db8:5163:1::77 50022 {HOST6_ADDRESS} 22"
    live = LiveHost(split_stack.links, split_stack.addrs, split_stack.routes, ssh_connection=ssh)
    report = split_findings(tmp_path, live, split_root(tmp_path, SPLIT_STACK))
    assert ids(report) == [("KB101", "error", "eth0")]
    assert report.findings[0].message == (
        f"your SSH session arrives on {HOST6_ADDRESS} at eth0, which /etc/network/interfaces:5 configures "
        "(inet6 static); the new /etc/network/interfaces drops that: you would be locked out"
    )


def test_ssh_on_a_nic_configured_in_a_sourced_file_is_kept(tmp_path: Path, split_stack: LiveHost) -> None:
    ssh = f"2001:db8:5163:1::77 50022 {HOST6_ADDRESS} 22"
    live = LiveHost(split_stack.links, split_stack.addrs, split_stack.routes, ssh_connection=ssh)
    moved = SPLIT_STACK.split("\n\n")
    main = "\n\n".join([moved[0], moved[2]]) + "source /etc/network/interfaces.d/*\n"
    eth0 = moved[1] + "\n"
    assert eth0.startswith("auto eth0\n")
    assert ids(split_findings(tmp_path, live, split_root(tmp_path, main, {"eth0": eth0}))) == []
    # ...but a stanza kept in a sourced file whose `auto` line lived in the replaced file no longer comes up
    (tmp_path / "late").mkdir()
    late = split_root(tmp_path / "late", main + "\nauto eth0\n", {"eth0": eth0.removeprefix("auto eth0\n")})
    assert ids(split_findings(tmp_path / "late", live, late)) == [("KB101", "error", "eth0")]


def test_ssh_over_a_link_local_address_with_its_scope_is_checked(tmp_path: Path, captured: LiveHost) -> None:
    """sshd writes fe80::…%eth0: the scope names the NIC (it used to match no NIC, and KB101 failed open)."""
    mac = captured.link("eth0")["address"]  # type: ignore[index]
    link_local = str(ipaddress.IPv6Address(b"\xfe\x80" + bytes(6) + ipaddress.IPv6Address(eui64(mac)).packed[8:]))
    held = [i.get("local") for e in captured.addrs for i in e["addr_info"]]
    assert link_local in held, "the namespace's eth0 has no EUI-64 link-local address"
    ssh = f"fe80::77%eth0 50022 {link_local}%eth0 22"
    live = LiveHost(captured.links, captured.addrs, captured.routes, ssh_connection=ssh)
    (tmp_path / "new-mac").mkdir()
    (tmp_path / "kept-mac").mkdir()
    dhcp = 'ports = ["eth0"]\nipv4 = { method = "dhcp" }'
    assert live_findings(tmp_path / "new-mac", live, dhcp) == [("KB101", "error", "eth0")]
    assert live_findings(tmp_path / "kept-mac", live, 'hwaddress = "eth0"\n' + dhcp) == []


# Sourced-file lines that name what the profile owns without an `iface` stanza of that name (outside
# review of #13, F6 and F7): each with what ifupdown then does, shown for real below.
SOURCED_LINES = [
    ("mapping br0\n  script /usr/local/sbin/site-map\n\niface lan inet dhcp\n", [("KB110", "error", "br0")]),
    ("mapping eth*\n  script /usr/local/sbin/site-map\n", [("KB110", "error", "eth0")]),
    ("mapping en*\n  script /usr/local/sbin/site-map\n", []),
    ("no-scripts br0\n", [("KB110", "error", "br0")]),
    ("rename eth0=lan0\n", [("KB110", "error", "eth0")]),
    ("rename enp1s0=eth0\n", [("KB110", "error", "eth0")]),
    ("no-auto-down eth0\n", [("KB110", "warning", "eth0")]),
    ("auto eth0:1\niface eth0:1 inet static\n  address 198.51.100.9/24\n", [("KB110", "error", "eth0:1")]),
    ("iface eth0.100 inet static\n  address 198.51.100.9/24\n", [("KB110", "warning", "eth0.100")]),
    # the bridge's own alias or VLAN is a legitimate extra, kept by the `source` line for that
    ("auto br0:1\niface br0:1 inet static\n  address 198.51.100.9/24\n", []),
    ("iface br0.100 inet manual\n", []),
    # interfaces(5) patterns and PHYSICAL=LOGICAL words, as ifupdown 0.8's config.c reads them (ATTACK14b F2, F3)
    ("auto eth0=lan\niface lan inet dhcp\n", [("KB110", "error", "eth0")]),
    ("auto br0=lan\niface lan inet dhcp\n", [("KB110", "error", "br0")]),
    ("auto /eth*=lan\niface lan inet dhcp\n", [("KB110", "error", "eth0")]),
    ("allow-hotplug /e?h0\n", [("KB110", "error", "eth0")]),
    ("auto /en*=lan\niface lan inet dhcp\n", []),
    ("auto mac/52:54:00:*=lan\niface lan inet dhcp\n", [("KB110", "warning", "br0"), ("KB110", "warning", "eth0")]),
    ("rename /eth0=lan0\nauto lan0\niface lan0 inet dhcp\n", [("KB110", "error", "eth0")]),
    ("rename /e*=lan0\n", [("KB110", "error", "eth0")]),
    ("no-scripts br*\n", [("KB110", "error", "br0")]),
    ("no-scripts [[:alpha:]]r0\n", [("KB110", "error", "br0")]),
    ("mapping [[:alpha:]]r0\n  script /usr/local/sbin/site-map\n", [("KB110", "error", "br0")]),
    ("mapping [^x]r0\n  script /usr/local/sbin/site-map\n", [("KB110", "error", "br0")]),
    ("mapping [^b]r0\n  script /usr/local/sbin/site-map\n", []),
    # another stanza taking the profile's port (ATTACK14b F4)
    ("auto vmbr1\niface vmbr1 inet manual\n  bridge_ports eth0\n", [("KB110", "error", "eth0")]),
    ("iface vmbr1 inet manual\n  bridge-ports eth9 eth0\n", [("KB110", "error", "eth0")]),
    ("iface vmbr1 inet manual\n  bridge_ports all\n", [("KB110", "error", "eth0")]),
    ("iface vmbr1 inet manual\n  bridge_ports regex et.*\n", [("KB110", "error", "eth0")]),
    ("iface bond0 inet manual\n  bond-slaves eth0\n", [("KB110", "error", "eth0")]),
    ("iface vmbr1 inet manual\n  bridge_ports eth9\n", []),
]


@pytest.mark.parametrize(("text", "expected"), SOURCED_LINES, ids=[t.split("\n")[0] for t, _ in SOURCED_LINES])
def test_sourced_mapping_no_scripts_rename_and_port_aliases_are_kb110(
    tmp_path: Path, text: str, expected: list[tuple[str, str, str]]
) -> None:
    root = make_root(tmp_path)
    (root / "etc/network/interfaces.d").mkdir(parents=True, exist_ok=True)
    (root / "etc/network/interfaces.d/site").write_text(text)
    report = findings(ARTICLE, root)
    assert ids(report) == sorted(expected)
    for finding in report.findings:
        assert finding.subject in finding.line() and "/etc/network/interfaces.d/site" in finding.line()


def test_what_ifupdown_does_with_those_lines_is_real(tmp_path: Path) -> None:
    """The real ifup, dry run (-n -v) over the rendered interfaces plus the sourced file: a mapping
    configures what its script prints instead of br0, no-scripts drops the hooks that build the
    bridge, an alias stanza adds its address to the port itself."""
    ifup = require_tool("ifup")
    tree = tmp_path / "tree"
    assert run("render", ARTICLE, "-o", tree).exit_code == 0
    site = tmp_path / "site"
    rendered = (tree / "etc/network/interfaces").read_text()
    interfaces = tmp_path / "interfaces"
    interfaces.write_text(rendered.replace("source /etc/network/interfaces.d/*", f"source {site}"))
    script = tmp_path / "site-map"
    script.write_text("#!/bin/sh\necho lan\n")
    script.chmod(0o755)

    def dry_run(text: str, *names: str) -> str:
        site.write_text(text)
        state = tmp_path / "state"
        state.mkdir(exist_ok=True)
        result = subprocess.run(
            [ifup, "-n", "-v", "--state-dir", state, "-i", interfaces, *names],
            capture_output=True,
            text=True,
            check=False,
        )
        return result.stdout + result.stderr

    mapped = dry_run(f"mapping br0\n  script {script}\n\niface lan inet dhcp\n", "br0")
    assert "br0=lan" in mapped and "bridge_ports" not in mapped and "10.0.0.2" not in mapped, mapped
    hooks = [line for line in dry_run("", "br0").splitlines() if "if-pre-up.d" in line]
    assert hooks, "bridge-utils' hook runs from if-pre-up.d"
    no_scripts = dry_run("no-scripts br0\n", "br0")
    assert not [line for line in no_scripts.splitlines() if "if-pre-up.d" in line], no_scripts
    alias = dry_run("iface eth0:1 inet static\n  address 198.51.100.9/24\n", "eth0:1")
    assert "dev eth0:1" in alias and "198.51.100.9" in alias, alias
    # patterns as ifupdown 0.8's config.c reads them: fnmatch(3) brackets, PHYSICAL=LOGICAL (ATTACK14b F2, F3)
    for pattern in ("[[:alpha:]]r0", "[^x]r0"):
        mapped = dry_run(f"mapping {pattern}\n  script {script}\n\niface lan inet dhcp\n", "br0")
        assert "br0=lan" in mapped and "bridge_ports" not in mapped, mapped
    no_scripts = dry_run("no-scripts br*\n", "br0")
    assert not [line for line in no_scripts.splitlines() if "if-pre-up.d" in line], no_scripts
    logical = dry_run("auto eth0=lan\niface lan inet dhcp\n", "-a")
    assert "eth0=lan" in logical and "dhclient" in logical, logical


@pytest.fixture(scope="module")
def bridged_already() -> LiveHost:
    """A host bridged before kvmbridge: br0 (port eth0) holds the address the SSH session arrives on."""
    require_root()
    require_tool("ip")
    with Lab() as lab:
        lab.wire([("eth0", True)])
        lab.sh(
            lab.host,
            "ip link add br0 type bridge && ip link set eth0 master br0 && ip link set eth0 up && "
            f"ip link set br0 up && ip addr add 198.51.100.2/24 dev br0 && ip route add default via {GATEWAY}",
        )
        return lab.capture_live(lab.host, ssh_connection=SSH)


@pytest.mark.parametrize(
    ("bridge", "expected"),
    [
        ('ports = ["eth0"]\nipv4 = { method = "static", address = "198.51.100.2/24", gateway = "198.51.100.1" }', []),
        (
            'ports = ["eth0"]\nipv4 = { method = "static", address = "198.51.100.3/24", gateway = "198.51.100.1" }',
            [("KB101", "error", "br0")],
        ),
        ('ports = ["eth0"]', [("KB101", "error", "br0")]),
    ],
    ids=["same", "readdressed", "manual"],
)
def test_ssh_session_on_an_existing_bridge_the_profile_readdresses_is_a_lockout(
    tmp_path: Path, bridged_already: LiveHost, bridge: str, expected: list[tuple[str, str, str]]
) -> None:
    assert live_findings(tmp_path, bridged_already, bridge) == expected


EXTRA6 = "2001:db8:5163:1::5"


@pytest.fixture(scope="module")
def bridged_dual() -> LiveHost:
    """A host bridged before kvmbridge, dual stack: br0 (port eth0, its MAC) holds an IPv4 address,
    a primary and an extra IPv6 address, and its link-local one; the sessions arrive on br0."""
    require_root()
    require_tool("ip")
    with Lab() as lab:
        lab.wire([("eth0", True)])
        lab.sh(
            lab.host,
            "ip link add br0 type bridge && ip link set eth0 master br0 && ip link set eth0 up && "
            f"ip link set br0 up && ip addr add 198.51.100.2/24 dev br0 && ip route add default via {GATEWAY} && "
            f"ip -6 addr add {HOST6_ADDRESS}/64 dev br0 nodad && ip -6 addr add {EXTRA6}/64 dev br0 nodad",
        )
        return lab.capture_live(lab.host)


DUAL = (
    'ports = ["eth0"]\nhwaddress = "eth0"\n'
    'ipv4 = { method = "static", address = "198.51.100.2/24", gateway = "198.51.100.1" }\n'
)


@pytest.mark.parametrize(
    ("bridge", "server", "expected"),
    [
        (
            DUAL + f'ipv6 = {{ method = "static", address = "{HOST6_ADDRESS}/64", extra_addresses = ["{EXTRA6}/64"] }}',
            EXTRA6,
            [],
        ),
        (DUAL + f'ipv6 = {{ method = "static", address = "{HOST6_ADDRESS}/64" }}', EXTRA6, [("KB101", "error", "br0")]),
        (DUAL + f'ipv6 = {{ method = "static", address = "{EXTRA6}/64" }}', HOST6_ADDRESS, [("KB101", "error", "br0")]),
        (DUAL.replace("198.51.100.2/24", "198.51.100.3/24"), "198.51.100.2", [("KB101", "error", "br0")]),
        (DUAL, "link-local", []),
        (
            DUAL.replace('hwaddress = "eth0"', 'hwaddress = "52:54:00:13:0d:01"'),
            "link-local",
            [("KB101", "error", "br0")],
        ),
        (DUAL.replace('hwaddress = "eth0"\n', ""), "link-local", [("KB101", "error", "br0")]),
    ],
    ids=[
        "extra-kept",
        "extra-dropped",
        "primary-changed",
        "ipv4-changed",
        "link-local-same-mac",
        "link-local-new-mac",
        "link-local-no-hwaddress",
    ],
)
def test_ssh_session_on_the_bridge_itself_is_judged_against_the_new_profile(
    tmp_path: Path, bridged_dual: LiveHost, bridge: str, server: str, expected: list[tuple[str, str, str]]
) -> None:
    """Outside review ATTACK14b F13: a session arriving on br0 (already bridged) whose address or MAC
    the new profile drops."""
    if server == "link-local":
        link = next(a for a in bridged_dual.addrs if a["ifname"] == "br0")
        local = next(i["local"] for i in link["addr_info"] if i.get("scope") == "link" and i.get("family") == "inet6")
        server = f"{local}%br0"
    peer = "198.51.100.77" if "." in server else "2001:db8:5163:1::77"
    live = LiveHost(bridged_dual.links, bridged_dual.addrs, bridged_dual.routes, ssh_connection=f"{peer} 1 {server} 22")
    assert live_findings(tmp_path, live, bridge) == expected


def test_ssh_session_on_a_bridge_the_profile_renames_is_a_lockout(tmp_path: Path, bridged_dual: LiveHost) -> None:
    """The profile bridges br0's port into vmbr0: br0 loses its port, the session's address is nowhere."""
    live = LiveHost(bridged_dual.links, bridged_dual.addrs, bridged_dual.routes, ssh_connection=SSH)
    profile = write_profile(
        tmp_path,
        "[sysctl]\nip_forward = false\n[bridges.vmbr0]\n" + DUAL.replace("198.51.100.2/24", "198.51.100.3/24"),
        name="kvm01.toml",
    )
    report = findings(profile, make_root(tmp_path), live)
    assert ("KB101", "error", "br0") in ids(report)
    assert (
        "your SSH session arrives on 198.51.100.2 at br0, whose port eth0 bridge vmbr0 takes without carrying "
        "that address: you would be locked out"
    ) in [f.message for f in report.findings]


def test_ifupdown_patterns_select_the_port_for_real(tmp_path: Path) -> None:
    """interfaces(5) patterns match the NICs under /sys/class/net, so the real ifup -n -a runs in a
    namespace holding eth0: `auto /eth*=lan` configures lan on eth0, `rename /eth0=lan0` renames the
    port before br0 is built (ATTACK14b F2; KB110 flags both above)."""
    require_root()
    ifup = require_tool("ifup")
    tree = tmp_path / "tree"
    assert run("render", ARTICLE, "-o", tree).exit_code == 0
    site = tmp_path / "site"
    interfaces = tmp_path / "interfaces"
    interfaces.write_text(
        (tree / "etc/network/interfaces").read_text().replace("source /etc/network/interfaces.d/*", f"source {site}")
    )
    with Lab() as lab:
        lab.wire([("eth0", True)])

        def dry_run(text: str) -> str:
            site.write_text(text)
            state = tmp_path / "state"
            state.mkdir(exist_ok=True)
            result = lab.sh(lab.host, f"{ifup} -n -v -a --state-dir {state} -i {interfaces} 2>&1", check=False)
            return result.stdout

        logical = dry_run("auto /eth*=lan\niface lan inet dhcp\n")
        assert "eth0=lan" in logical and "dhclient" in logical, logical
        renamed = dry_run("rename /eth0=lan0\n")
        assert "ip link set eth0 name lan0" in renamed, renamed
        assert "=lan" not in dry_run("auto /en*=lan\niface lan inet dhcp\n")
