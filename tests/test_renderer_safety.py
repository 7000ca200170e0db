"""Safety checks follow the renderer: on a netplan target the competitors are other netplan files,
a NetworkManager renderer and an interfaces file ifupdown would also apply; on ifupdown2 the
package is ifupdown2; a pending Proxmox interfaces.new blocks both interfaces dialects."""

from __future__ import annotations

from pathlib import Path

import pytest

from kvmbridge.hostscan import starter_from_host
from kvmbridge.livehost import LiveHost
from kvmbridge.profile import load_profile
from kvmbridge.render import render
from kvmbridge.root import Root
from kvmbridge.safety import check_target
from kvmbridge.starter import starter_profile
from kvmbridge.state import State

from .conftest import GOLDEN, run
from .test_safety import findings, ids, make_root

NETPLAN = GOLDEN / "netplan-article.toml"
IFUPDOWN2 = GOLDEN / "ifupdown2-article.toml"

SITUATIONS = [
    # (overlay, base root, profile, findings); "ubuntu" has netplan.io and no ifupdown, "debian" the reverse
    ("netplan", "ubuntu", NETPLAN, [("KB102", "error", "eth0"), ("KB112", "error", "/etc/netplan/50-cloud-init.yaml")]),
    ("netplan-nm", "ubuntu", NETPLAN, [("KB120", "error", "/etc/netplan/90-desktop.yaml")]),
    ("netplan-nm", "debian", GOLDEN / "article.toml", []),  # NetworkManager for a wifi: no business of ifupdown's
    ("ifupdown-port", "ubuntu", NETPLAN, []),  # ifupdown is not installed: nothing reads that file
    ("ifupdown-port", "debian", NETPLAN, [("KB104", "error", "netplan.io"), ("KB121", "error", "eth0")]),
    ("ifupdown-port", "debian", GOLDEN / "article.toml", []),  # our own interfaces file replaces it
    (
        "proxmox",
        "debian",
        IFUPDOWN2,
        [("KB104", "error", "ifupdown2"), ("KB111", "error", "/etc/network/interfaces.new")],
    ),
    ("proxmox", "ubuntu", NETPLAN, []),
    ("sourced-port", "ubuntu", NETPLAN, []),  # a netplan target has no `source` lines of ours
    ("netplan-cloud-init", "ubuntu", NETPLAN, [("KB112", "error", "/etc/netplan/50-cloud-init.yaml")]),
]


@pytest.mark.parametrize(
    ("situation", "base", "profile", "expected"),
    SITUATIONS,
    ids=[f"{s[0]}-{s[1]}-{s[2].stem}" for s in SITUATIONS],
)
def test_each_renderers_checks_fire_on_their_situation(
    tmp_path: Path, situation: str, base: str, profile: Path, expected: list[tuple[str, str, str]]
) -> None:
    report = findings(profile, make_root(tmp_path, situation, base=base))
    assert ids(report) == sorted(expected)
    for finding in report.findings:
        assert "\n" not in finding.line() and "(fix: " in finding.line()


def test_our_own_netplan_file_is_not_a_competitor(tmp_path: Path) -> None:
    root = make_root(tmp_path, base="ubuntu")
    model = load_profile(NETPLAN)
    for f in render(model):
        if f.data is not None:
            (root / f.relpath).parent.mkdir(parents=True, exist_ok=True)
            (root / f.relpath).write_bytes(f.data)
    assert check_target(model, render(model), Root(root), State(), None).findings == ()


def test_package_check_follows_the_renderer(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "var/lib/dpkg").mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text(
        "Package: ifupdown\nStatus: install ok installed\n\nPackage: libvirt-daemon-system\nStatus: install ok installed\n"
    )
    assert ids(findings(IFUPDOWN2, root)) == [("KB104", "error", "ifupdown2")]
    assert ids(findings(NETPLAN, root)) == [("KB104", "error", "netplan.io")]
    assert ids(findings(GOLDEN / "article.toml", root)) == [("KB103", "error", "bridge-utils")]


def test_a_netplan_file_that_does_not_parse_is_an_error_not_a_crash(tmp_path: Path) -> None:
    root = make_root(tmp_path, base="ubuntu")
    (root / "etc/netplan").mkdir(parents=True)
    (root / "etc/netplan/01-broken.yaml").write_text("network: [unclosed\n")
    report = findings(NETPLAN, root)
    assert ids(report) == [("KB102", "error", "/etc/netplan/01-broken.yaml")]


LIVE = LiveHost(
    links=[{"ifname": "lo"}, {"ifname": "eth0", "address": "52:54:00:12:34:56"}],
    addrs=[
        {
            "ifname": "eth0",
            "addr_info": [{"family": "inet", "local": "198.51.100.2", "prefixlen": 24, "scope": "global"}],
        }
    ],
    routes=[{"dst": "default", "gateway": "198.51.100.1", "dev": "eth0"}],
)
CLOUD_INIT_DHCP = b"""network:
  version: 2
  ethernets:
    eth0:
      match: {macaddress: "52:54:00:12:34:56"}
      set-name: eth0
      dhcp4: true
      nameservers: {addresses: [198.51.100.53]}
"""


def starter_text(files: dict[str, bytes], tmp_path: Path) -> str:
    text = starter_profile(starter_from_host(LIVE, files, b"nameserver 198.51.100.1\n", "kvm01", False))
    path = tmp_path / "kvm01.toml"
    path.write_text(text)
    result = run("validate", path)
    assert result.exit_code == 0, result.stderr
    return text


def test_init_from_a_netplan_host_picks_netplan_and_reads_its_yaml(tmp_path: Path) -> None:
    text = starter_text({"/etc/netplan/50-cloud-init.yaml": CLOUD_INIT_DHCP}, tmp_path)
    assert 'renderer = "netplan"' in text.splitlines()[text.splitlines().index('hostname = "kvm01"') + 1]
    assert "[interfaces]" not in text
    assert 'ipv4 = { method = "dhcp", dns = ["198.51.100.53"] }' in text  # netplan says DHCP, and its nameserver
    assert 'hwaddress = "52:54:00:12:34:56"' in text


def test_init_from_an_ifupdown2_host_picks_ifupdown2(tmp_path: Path) -> None:
    files = {"/usr/share/ifupdown2/__main__.py": b"", "/etc/network/interfaces": b"auto lo\niface lo inet loopback\n"}
    text = starter_text(files, tmp_path)
    assert 'renderer = "ifupdown2"' in text
    assert 'ipv4 = { method = "static", address = "198.51.100.2/24", gateway = "198.51.100.1"' in text
    assert '# hwaddress = "eth0"' not in text


def test_init_from_a_plain_debian_host_stays_on_ifupdown(tmp_path: Path) -> None:
    text = starter_text({"/etc/network/interfaces": b"auto lo\niface lo inet loopback\n"}, tmp_path)
    assert 'renderer = "ifupdown"' in text
    assert "[interfaces]" in text
