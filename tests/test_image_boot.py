"""Reboot-time activation under real systemd: every golden profile, installed by the real CLI into a
Debian 12 image, boots under systemd-nspawn with systemd as PID 1, and the units, sysctls, bridge,
libvirt networks and LAN reachability are what the profile asked for."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kvmbridge.model import HostProfile
from kvmbridge.profile import load_profile

from .bootcheck import _assert_bridge
from .conftest import GOLDEN, GOLDEN_CASES, require_root, require_tool
from .imagelab import Image, Lan, Machine, kvmbridge_image
from .netns import (
    DHCP_RANGE,
    GATEWAY,
    GATEWAY6,
    HOST6_ADDRESS,
    HOST_ADDRESS,
    ROUTER_LL,
    VM_ADDRESS,
    readdress,
    uplink,
)

UNITS = ("networking.service", "systemd-sysctl.service", "libvirtd.service")


@pytest.fixture(scope="module")
def image() -> Image:
    require_root()
    for tool in ("debootstrap", "systemd-nspawn", "nsenter", "unshare", "ip", "dnsmasq", "ping"):
        require_tool(tool)
    return kvmbridge_image("base")


def readdressed_profile(case: str, folder: Path) -> tuple[Path, HostProfile]:
    """The golden profile's TOML with its static IPv4 moved onto the lab LAN, as `netns.readdress` does.

    Edited as text so the CLI reads a real profile file; the result must load to
    exactly `readdress(golden)`, so the edit cannot drift from the namespace tests.
    """
    text = (GOLDEN / f"{case}.toml").read_text()

    def move(match: re.Match[str]) -> str:
        line = match.group(0)
        line = re.sub(r'address = "[^"]*"', f'address = "{HOST_ADDRESS}/24"', line)
        line = re.sub(r'gateway = "[^"]*"', f'gateway = "{GATEWAY}"', line)
        line = re.sub(r"dns = \[[^]]*\]", f'dns = ["{GATEWAY}"]', line)
        if 'method = "static"' in line and "dns =" not in line:
            line = line.replace(" }", f', dns = ["{GATEWAY}"] }}')
        return line

    def move6(match: re.Match[str]) -> str:
        line = match.group(0)
        if 'method = "static"' not in line:
            return line
        line = re.sub(r'address = "[^"]*"', f'address = "{HOST6_ADDRESS}/64"', line)
        line = re.sub(
            r'gateway = "([^"]*)"',
            lambda m: f'gateway = "{ROUTER_LL if m[1].startswith("fe80:") else GATEWAY6}"',
            line,
        )
        return re.sub(r"dns = \[[^]]+\]", f'dns = ["{GATEWAY6}"]', line)

    path = folder / f"{case}.toml"
    text = re.sub(r"(?m)^ipv6 = \{.*\}$", move6, text)
    path.write_text(re.sub(r"(?m)^ipv4 = \{.*\}$", move, text))
    profile = load_profile(path)
    assert profile == readdress(load_profile(GOLDEN / f"{case}.toml"))
    return path, profile


def install(profile_path: Path, root: Path) -> None:
    """The real CLI from outside the image, as an admin installs into a mounted root."""
    result = subprocess.run(
        [sys.executable, "-m", "kvmbridge", "install", str(profile_path), "--root", str(root)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


class _MachineView:
    """Lets bootcheck's bridge assertions read a booted machine's namespace."""

    host = ""

    def __init__(self, machine: Machine) -> None:
        self.machine = machine

    def ip_json(self, ns: str, args: str) -> Any:
        return self.machine.ip_json(args)


def _digests(root: Path, names: list[str]) -> dict[str, str]:
    folder = root / "etc/libvirt/qemu/networks"
    return {n: hashlib.sha256((folder / f"{n}.xml").read_bytes()).hexdigest() for n in names}


def _net_info(machine: Machine, name: str) -> dict[str, str]:
    out = machine.run(["virsh", "-c", "qemu:///system", "net-info", name]).stdout
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in out.splitlines()) if k.strip()}


def _ipv4(machine: Machine, dev: str) -> list[dict[str, Any]]:
    info = machine.ip_json(f"-4 addr show dev {dev}")
    return list(info[0]["addr_info"]) if info else []


@pytest.fixture
def lan() -> Iterator[Lan]:
    with Lan() as lan:
        yield lan


@pytest.mark.parametrize("case", GOLDEN_CASES)
def test_golden_profile_installed_by_the_cli_boots_under_systemd(
    case: str, image: Image, lan: Lan, tmp_path: Path
) -> None:
    path, profile = readdressed_profile(case, tmp_path)
    up = uplink(profile)
    dhcp = profile.bridges[up].ipv4.method == "dhcp"
    if dhcp:
        lan.start_dhcp()
    ports = {port: name == up for name, bridge in profile.bridges.items() for port in bridge.ports}
    with Machine(lan, ports, image) as machine:
        install(path, machine.root)
        before = _digests(machine.root, list(profile.networks))

        state = machine.boot()
        assert machine.failed_units() == [], machine.run("systemctl --failed --no-pager", check=False).stdout
        assert state == "running"
        for unit in UNITS:
            result = machine.run(["systemctl", "is-active", unit], check=False)
            assert result.stdout.strip() == "active", (unit, result.stdout, machine.console()[-2000:])

        expected: dict[str, str] = {}
        for conf in sorted((machine.root / "etc/sysctl.d").glob("*.conf")):
            for line in conf.read_text().splitlines():
                if "=" in line and not line.lstrip().startswith(("#", ";")):
                    key, _, value = line.partition("=")
                    expected[key.strip()] = value.strip()
        assert expected, "no sysctl settings installed"
        for key, value in expected.items():
            assert machine.run(["sysctl", "-n", key]).stdout.strip() == value, key

        view = _MachineView(machine)
        for name, bridge in profile.bridges.items():
            _assert_bridge(view, name, bridge)  # type: ignore[arg-type]

        addresses = _ipv4(machine, up)
        if dhcp:
            lease = [a["local"] for a in addresses if a.get("dynamic")]
            low, high = (int(a.rsplit(".", 1)[1]) for a in DHCP_RANGE)
            assert lease and low <= int(lease[0].rsplit(".", 1)[1]) <= high, addresses
            host_address = lease[0]
        else:
            assert [(a["local"], a["prefixlen"]) for a in addresses] == [(HOST_ADDRESS, 24)]
            host_address = HOST_ADDRESS
        if profile.bridges[up].ipv4.gateway is not None or dhcp:
            routes = machine.ip_json("-4 route show default")
            assert [(r["gateway"], r["dev"]) for r in routes] == [(GATEWAY, up)], routes

        assert lan.wait_ping(host_address), "the LAN cannot reach the host's address"
        guest = lan.guest(machine, up, VM_ADDRESS)
        assert lan.wait_ping(VM_ADDRESS), "the LAN cannot reach the guest across the bridge"
        assert (
            subprocess.run(["ip", "netns", "exec", guest, "ping", "-c1", "-W2", GATEWAY], check=False).returncode == 0
        )

        for name, network in profile.networks.items():
            info = _net_info(machine, name)
            assert info["Persistent"] == "yes", info
            assert info["Autostart"] == ("yes" if network.autostart else "no"), info
            assert info["Active"] == ("yes" if network.autostart else "no"), info
            assert info["Bridge"] == network.bridge, info
        assert _digests(machine.root, list(profile.networks)) == before, "libvirtd rewrote our network XML"


def test_dhcp_profile_with_hwaddress_keeps_its_lease_across_a_reboot(image: Image, lan: Lan, tmp_path: Path) -> None:
    path, profile = readdressed_profile("dhcp-hwaddress", tmp_path)
    lan.start_dhcp()
    port = profile.bridges["br0"].ports[0]
    with Machine(lan, {port: True}, image) as machine:
        install(path, machine.root)
        leases = []
        for boot in range(2):
            if boot == 0:
                machine.boot()
            else:
                machine.reboot()  # asserts nspawn's exit 133, then boots the same root again
            assert machine.failed_units() == []
            bridge = machine.ip_json("link show dev br0")[0]
            assert bridge["address"] == machine.macs[port]
            lease = [a["local"] for a in _ipv4(machine, "br0") if a.get("dynamic")]
            assert lease, machine.console()[-2000:]
            assert lan.wait_ping(lease[0])
            leases.append(lease[0])
        assert leases[0] == leases[1], leases
        assert machine.boots == 2
