"""Boot-time activation, for real: ifupdown, sysctl and libvirtd bring up the rendered files
in network namespaces, and a VM namespace is reachable from the LAN across the bridge."""

from __future__ import annotations

from pathlib import Path

import pytest

from kvmbridge.install import install
from kvmbridge.profile import load_profile
from kvmbridge.render import environment, render
from kvmbridge.root import Root

from .bootcheck import boot
from .conftest import GOLDEN, GOLDEN_CASES, override_template, require_root, require_tool
from .netns import readdress, render_tree, uplink
from .roots import seed_old_host


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
    source = environment().loader.get_source(environment(), "etc/network/interfaces.j2")[0]  # type: ignore[union-attr]
    broken = "\n".join(line for line in source.splitlines() if "bridge_ports" not in line) + "\n"
    templates = override_template(tmp_path / "templates", "etc/network/interfaces.j2", broken)
    profile = readdress(load_profile(GOLDEN / "article.toml"))
    root = tmp_path / "root"
    from kvmbridge.tree import write_tree

    write_tree(render(profile, templates), root)
    assert b"bridge_ports" not in (root / "etc/network/interfaces").read_bytes()
    with pytest.raises(AssertionError):
        boot(profile, root)
