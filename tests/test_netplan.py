"""The netplan renderer against netplan itself: `netplan generate` turns every netplan golden
into systemd-networkd units that carry exactly the profile's bridge parameters and addresses."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from kvmbridge.model import HostProfile
from kvmbridge.profile import load_profile

from .conftest import GOLDEN, RENDERER_CASES, modes, override_template, require_tool, run

NETPLAN_CASES = RENDERER_CASES["netplan"]


def units(root: Path) -> dict[str, dict[str, list[str]]]:
    """Each generated unit as section.key -> values (systemd keys may repeat: Address=, DNS=)."""
    found: dict[str, dict[str, list[str]]] = {}
    for path in sorted((root / "run/systemd/network").iterdir()):
        section, values = "", dict[str, list[str]]()
        for raw in path.read_text().splitlines():
            line = raw.strip()
            if line.startswith("["):
                section = line.strip("[]")
            elif "=" in line and not line.startswith("#"):
                key, _, value = line.partition("=")
                values.setdefault(f"{section}.{key}", []).append(value)
        found[path.name] = values
    return found


def generate(case: str, tmp_path: Path) -> dict[str, dict[str, list[str]]]:
    netplan = require_tool("netplan")
    root = tmp_path / "root"
    shutil.copytree(GOLDEN / case, root, symlinks=True)
    (root / "etc/netplan/60-kvmbridge.yaml").chmod(0o600)
    result = subprocess.run([netplan, "generate", "--root-dir", root], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
    return units(root)


def expected_netdev(bridge_name: str, profile: HostProfile) -> dict[str, list[str]]:
    b = profile.bridges[bridge_name]
    out = {
        "NetDev.Name": [bridge_name],
        "NetDev.Kind": ["bridge"],
        "Bridge.STP": ["true" if b.stp else "false"],
        "Bridge.ForwardDelaySec": [str(b.forward_delay)],
    }
    for key, unit_key in [
        ("hello_time", "HelloTimeSec"),
        ("max_age", "MaxAgeSec"),
        ("ageing", "AgeingTimeSec"),
        ("priority", "Priority"),
    ]:
        if getattr(b, key) is not None:
            out[f"Bridge.{unit_key}"] = [str(getattr(b, key))]
    if b.hwaddress is not None:
        out["NetDev.MACAddress"] = [b.hwaddress]
    if b.mtu is not None:
        out["NetDev.MTUBytes"] = [str(b.mtu)]
    return out


@pytest.mark.parametrize("case", NETPLAN_CASES)
def test_netplan_generate_writes_each_bridge_with_the_profiles_parameters(case: str, tmp_path: Path) -> None:
    profile = load_profile(GOLDEN / f"{case}.toml")
    found = generate(case, tmp_path)
    for name, bridge in profile.bridges.items():
        netdev = found[f"10-netplan-{name}.netdev"]
        assert {k: v for k, v in netdev.items() if k in expected_netdev(name, profile)} == expected_netdev(
            name, profile
        )
        network = found[f"10-netplan-{name}.network"]
        assert network["Match.Name"] == [name]
        v4, v6 = bridge.ipv4, bridge.ipv6
        addresses = [a for a in (v4.address, *(v6.addresses if v6 else ())) if a is not None]
        assert network.get("Network.Address", []) == addresses
        gateways = [g for g in (v4.gateway, v6.gateway if v6 else None) if g is not None]
        assert network.get("Route.Gateway", []) == gateways
        assert network.get("Network.DNS", []) == [*v4.dns, *(v6.dns if v6 else ())]
        dhcp = {"dhcp": "ipv4"}.get(v4.method)
        assert network.get("Network.DHCP", ["no"]) == [dhcp or "no"]
        if v4.method == "dhcp" and bridge.hwaddress is not None:
            assert network["DHCP.ClientIdentifier"] == ["mac"]
        for port in bridge.ports:
            port_network = found[f"10-netplan-{port}.network"]
            assert port_network["Network.Bridge"] == [name]
            assert "Network.Address" not in port_network
            assert port_network.get("Network.DHCP", ["no"]) == ["no"]


def test_validate_runs_netplan_generate_on_the_yaml() -> None:
    require_tool("netplan")
    result = run("validate", GOLDEN / "netplan-article.toml")
    assert result.exit_code == 0, result.output
    assert "netplan (netplan generate)" in result.stdout
    assert "ifupdown" not in result.stdout


def test_validate_fails_when_netplan_rejects_the_yaml(tmp_path: Path) -> None:
    require_tool("netplan")
    broken = "network:\n  version: 2\n  bridges:\n    br0:\n      parameters:\n        stp: maybe\n"
    templates = override_template(tmp_path, "etc/netplan/60-kvmbridge.yaml.j2", broken)
    result = run("validate", GOLDEN / "netplan-article.toml", "--templates", templates)
    assert result.exit_code == 2
    assert "etc/netplan/60-kvmbridge.yaml: netplan generate:" in result.stderr


def test_max_wait_has_no_netplan_key_so_a_wait_is_warned_about_and_nothing_is_written(tmp_path: Path) -> None:
    """bridge_maxwait has no netplan equivalent: networkd-wait-online waits for the bridge (until a port
    forwards) on its own timeout. A profile asking for a wait hears so; the YAML and units are the same."""
    netplan = require_tool("netplan")
    text = (GOLDEN / "netplan-article.toml").read_text()
    assert "max_wait = 0" in text
    quiet = run("validate", GOLDEN / "netplan-article.toml")
    assert quiet.exit_code == 0 and "br0.max_wait" not in quiet.stderr
    waiting = tmp_path / "netplan-article.toml"
    waiting.write_text(text.replace("max_wait = 0", "max_wait = 7"))
    result = run("validate", waiting)
    assert result.exit_code == 0, result.output
    assert (
        f"warning: KB203 {waiting}: bridges.br0.max_wait: netplan has no bridge_maxwait, so 7 s is not written: "
        "at boot systemd-networkd-wait-online waits for br0 until a port forwards, up to its own timeout (120 s) "
        "(fix: set max_wait = 0 to say so)"
    ) in result.stderr.splitlines()
    run("render", waiting, "-o", tmp_path / "root")
    yaml = "etc/netplan/60-kvmbridge.yaml"  # same profile name, so the same bytes, header included
    assert (tmp_path / "root" / yaml).read_bytes() == (GOLDEN / "netplan-article" / yaml).read_bytes()
    (tmp_path / "root/etc/netplan/60-kvmbridge.yaml").chmod(0o600)
    subprocess.run([netplan, "generate", "--root-dir", tmp_path / "root"], check=True, capture_output=True)
    generated = units(tmp_path / "root")
    assert not [key for unit in generated.values() for key in unit if "Online" in key or "Wait" in key]
    # the stacks that have bridge_maxwait write it, and say nothing
    for case, line in (("article", "bridge_maxwait 7"), ("ifupdown2-article", "bridge-maxwait 7")):
        other = tmp_path / f"{case}.toml"
        other.write_text((GOLDEN / f"{case}.toml").read_text().replace("max_wait = 0", "max_wait = 7"))
        assert "br0.max_wait" not in run("validate", other).stderr
        assert line in run("render", other).stdout


def test_netplan_file_is_0600_and_no_interfaces_file_is_written(tmp_path: Path) -> None:
    run("render", GOLDEN / "netplan-article.toml", "-o", tmp_path)
    assert modes(tmp_path)["etc/netplan/60-kvmbridge.yaml"] == 0o600
    assert not (tmp_path / "etc/network/interfaces").exists()


def test_switching_to_netplan_plans_removing_the_interfaces_file_kvmbridge_wrote(tmp_path: Path) -> None:
    from .roots import seed_old_host, snapshot

    root = seed_old_host(tmp_path / "root")
    assert run("install", GOLDEN / "article.toml", "--root", root).exit_code == 0
    ifupdown_files = snapshot(root, "etc")
    shown = run("diff", GOLDEN / "netplan-article.toml", "--root", root)
    assert shown.exit_code == 1
    assert "--- a/etc/network/interfaces\n+++ /dev/null\n" in shown.stdout
    assert "  remove     remove etc/network/interfaces" in shown.stdout
    assert "  create     new file etc/netplan/60-kvmbridge.yaml" in shown.stdout
    result = run("install", GOLDEN / "netplan-article.toml", "--root", root)
    assert result.exit_code == 0, result.output
    assert not (root / "etc/network/interfaces").exists()
    assert (root / "etc/netplan/60-kvmbridge.yaml").stat().st_mode & 0o777 == 0o600
    assert run("rollback", "--root", root).exit_code == 0
    assert snapshot(root, "etc") == ifupdown_files
