"""The golden output read back by the programs a Debian host runs: ifupdown and libvirt."""

from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path

import pytest

from kvmbridge.formats import interfaces_semantic, netxml
from kvmbridge.verify import NETWORK_RNG

from .conftest import GOLDEN, GOLDEN_CASES, IFUPDOWN_CASES, override_template, require_file, require_tool, run


def ifquery(path: Path, *args: str) -> str:
    result = subprocess.run(
        [require_tool("ifquery"), "-i", str(path), *args], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def ifquery_options(path: Path, iface: str) -> dict[str, list[str]]:
    """ifquery merges an interface's inet and inet6 stanzas, so a key may repeat."""
    options: dict[str, list[str]] = {}
    for line in ifquery(path, iface).splitlines():
        key, _, value = line.partition(": ")
        options.setdefault(key.rstrip(":"), []).append(value)
    return options


@pytest.mark.parametrize("case", IFUPDOWN_CASES)
def test_ifquery_lists_lo_and_every_bridge_as_auto(case: str) -> None:
    path = GOLDEN / case / "etc/network/interfaces"
    parsed = interfaces_semantic.parse_semantic(path.read_bytes())
    assert ifquery(path, "--list", "-a").split() == parsed["auto"]


@pytest.mark.parametrize("case", IFUPDOWN_CASES)
def test_ifquery_shows_the_bridge_options_and_addresses(case: str) -> None:
    path = GOLDEN / case / "etc/network/interfaces"
    parsed = interfaces_semantic.parse_semantic(path.read_bytes())
    bridges = [key.split()[0] for key, st in parsed["ifaces"].items() if "bridge_ports" in st["options"]]
    assert bridges
    for name in bridges:
        theirs = ifquery_options(path, name)
        for family in ("inet", "inet6"):
            ours = parsed["ifaces"].get(f"{name} {family}", {"options": {}})["options"]
            for key, value in ours.items():
                if key.startswith("bridge_") or key in ("gateway", "dns-nameservers", "mtu"):
                    assert value in theirs[key], (name, key)
            if "address" in ours:
                iface = ipaddress.ip_interface(ours["address"])
                assert str(iface.ip) in theirs["address"]
                netmask = str(iface.netmask) if family == "inet" else str(iface.network.prefixlen)
                assert netmask in theirs["netmask"]


@pytest.mark.parametrize("case", GOLDEN_CASES)
def test_virsh_defines_each_network_and_dumps_the_same_meaning(case: str) -> None:
    virsh = require_tool("virsh")
    for xml in sorted((GOLDEN / case / "etc/libvirt/qemu/networks").glob("*.xml")):
        name = xml.stem
        result = subprocess.run(
            [virsh, "-c", "test:///default", f"net-define {xml}; net-dumpxml {name}"],
            capture_output=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        dumped = result.stdout.split(b"\n", 2)[2]  # after "Network ... defined" and a blank line
        assert netxml.parse(dumped) == netxml.parse(xml.read_bytes())


@pytest.mark.parametrize("case", GOLDEN_CASES)
def test_network_xml_is_valid_against_libvirts_relaxng(case: str) -> None:
    from lxml import etree

    schema = etree.RelaxNG(etree.parse(str(require_file(NETWORK_RNG))))
    for xml in (GOLDEN / case / "etc/libvirt/qemu/networks").glob("*.xml"):
        assert schema.validate(etree.parse(str(xml))), schema.error_log


def test_xmllint_agrees_with_the_schema() -> None:
    xmllint = require_tool("xmllint")
    files = [str(p) for p in GOLDEN.glob("*/etc/libvirt/qemu/networks/*.xml")]
    result = subprocess.run(
        [xmllint, "--noout", "--relaxng", str(require_file(NETWORK_RNG)), *files],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_validate_reports_both_real_checkers_ran() -> None:
    require_tool("ifquery")
    require_file(NETWORK_RNG)
    result = run("validate", GOLDEN / "article.toml")
    assert result.exit_code == 0
    assert result.stdout == (
        f"{GOLDEN / 'article.toml'}: valid (6 files; checked: profile rules, ifupdown (ifquery), "
        "libvirt RelaxNG (network.rng))\n"
    )


def test_validate_fails_when_ifquery_rejects_the_output(tmp_path: Path) -> None:
    require_tool("ifquery")
    broken = "# {{ header }}\nauto lo\niface lo inet loopback\niface br0 inet static\n"
    templates = override_template(tmp_path, "etc/network/interfaces.j2", broken)
    result = run("validate", GOLDEN / "article.toml", "--templates", templates)
    assert result.exit_code == 2
    assert "etc/network/interfaces: ifquery" in result.stderr


def test_validate_fails_when_the_schema_rejects_the_xml(tmp_path: Path) -> None:
    require_file(NETWORK_RNG)
    broken = "<network><name>{{ name }}</name><forward mode='bogus'/></network>\n"
    templates = override_template(tmp_path, "etc/libvirt/qemu/networks/network.xml.j2", broken)
    result = run("validate", GOLDEN / "article.toml", "--templates", templates)
    assert result.exit_code == 2
    assert "etc/libvirt/qemu/networks/bridge-network.xml: libvirt schema:" in result.stderr


def test_validate_reads_our_file_not_this_machines_sourced_files() -> None:
    """A broken file in this machine's interfaces.d (in a private mount) must not fail another host's profile."""
    import os
    import sys

    from .conftest import REPO, require_root

    require_root()
    unshare = require_tool("unshare")
    require_tool("ifquery")
    folder = Path("/etc/network/interfaces.d")
    if not folder.is_dir():
        pytest.fail(f"{folder} is missing although ifupdown is installed")
    script = (
        'mount -t tmpfs tmpfs /etc/network/interfaces.d && printf "iface\\n" >/etc/network/interfaces.d/broken && '
        f"ifquery --list -a 2>&1 | grep -q 'ifquery: ' && echo host=broken; {sys.executable} -m kvmbridge validate {GOLDEN / 'article.toml'}"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    result = subprocess.run(
        [unshare, "-m", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert result.stdout.startswith("host=broken\n"), result.stdout  # the machine's own config is broken here
    assert result.returncode == 0, result.stderr
    assert "valid (6 files; checked: profile rules, ifupdown (ifquery), libvirt RelaxNG (network.rng))" in result.stdout


def test_validate_fails_on_an_ifquery_complaint_even_when_it_exits_0(tmp_path: Path) -> None:
    """ifquery says "option with empty value" and still exits 0; validate must not."""
    require_tool("ifquery")
    source = (Path(__file__).resolve().parents[1] / "templates/etc/network/interfaces.j2").read_text()
    broken = source.replace("    bridge_stp {{", "    bridge_stp\n    bridge_stp {{")
    templates = override_template(tmp_path, "etc/network/interfaces.j2", broken)
    result = run("validate", GOLDEN / "article.toml", "--templates", templates)
    assert result.exit_code == 2
    assert "etc/network/interfaces: ifquery: etc/network/interfaces:" in result.stderr
    assert "option with empty value" in result.stderr
