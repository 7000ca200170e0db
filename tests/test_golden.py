"""Golden trees: every example profile renders byte for byte to its reviewed tree, file set included."""

from __future__ import annotations

from pathlib import Path

import pytest

from kvmbridge.profile import load_profile
from kvmbridge.render import render

from .conftest import GOLDEN, GOLDEN_CASES, modes, override_template, run, tree


@pytest.mark.parametrize("case", GOLDEN_CASES)
def test_render_output_tree_equals_golden_tree(case: str, tmp_path: Path) -> None:
    result = run("render", GOLDEN / f"{case}.toml", "-o", tmp_path)
    assert result.exit_code == 0, result.output
    assert tree(tmp_path) == tree(GOLDEN / case)


@pytest.mark.parametrize("case", GOLDEN_CASES)
def test_render_is_byte_identical_across_runs(case: str) -> None:
    first = run("render", GOLDEN / f"{case}.toml")
    second = run("render", GOLDEN / f"{case}.toml")
    assert first.exit_code == 0
    assert first.stdout_bytes == second.stdout_bytes


def test_golden_cases_cover_the_required_setups() -> None:
    assert {"article", "dhcp-hwaddress", "two-bridges", "filter-on", "ipv6"} <= set(GOLDEN_CASES)


def test_rendered_modes_follow_the_product_table(tmp_path: Path) -> None:
    run("render", GOLDEN / "article.toml", "-o", tmp_path)
    assert modes(tmp_path) == {
        "etc/network/interfaces": 0o644,
        "etc/sysctl.d/ip_forward.conf": 0o644,
        "etc/sysctl.d/bridge.conf": 0o644,
        "etc/udev/rules.d/99-bridge.rules": 0o644,
        "etc/libvirt/qemu/networks/bridge-network.xml": 0o600,
    }
    assert tree(tmp_path)["etc/libvirt/qemu/networks/autostart/bridge-network.xml"] == ("link", "../bridge-network.xml")


def test_stdout_render_shows_each_file_under_a_header() -> None:
    result = run("render", GOLDEN / "article.toml")
    headers = [line for line in result.stdout.splitlines() if line.startswith("==> ")]
    assert headers == [
        "==> etc/network/interfaces <==",
        "==> etc/sysctl.d/ip_forward.conf <==",
        "==> etc/sysctl.d/bridge.conf <==",
        "==> etc/udev/rules.d/99-bridge.rules <==",
        "==> etc/libvirt/qemu/networks/bridge-network.xml <==",
        "==> etc/libvirt/qemu/networks/autostart/bridge-network.xml <==",
    ]
    assert (GOLDEN / "article/etc/network/interfaces").read_text() in result.stdout


def test_zero_timers_are_written_not_dropped() -> None:
    """cloud-init's ENI renderer drops 0 as falsy; the bridge then waits the kernel's 15 s."""
    files = render(load_profile(GOLDEN / "article.toml"))
    interfaces = next(f for f in files if f.path == "/etc/network/interfaces")
    assert interfaces.data is not None
    assert b"    bridge_fd 0\n" in interfaces.data
    assert b"    bridge_maxwait 0\n" in interfaces.data


def test_every_generated_file_starts_with_the_generated_from_comment() -> None:
    for f in render(load_profile(GOLDEN / "two-bridges.toml")):
        if f.data is None:
            continue
        first = f.data.split(b"\n", 1)[0]
        assert b"Generated from two-bridges.toml by kvmbridge: edit the profile, not this file." in first
        assert first.startswith(b"<!-- " if f.path.endswith(".xml") else b"# ")


def test_templates_override_by_name(tmp_path: Path) -> None:
    templates = override_template(
        tmp_path / "tpl", "etc/udev/rules.d/99-bridge.rules.j2", "# {{ header }}\n# site rule\n"
    )
    out = tmp_path / "out"
    result = run("render", GOLDEN / "article.toml", "--templates", templates, "-o", out)
    assert result.exit_code == 0, result.output
    rule = (out / "etc/udev/rules.d/99-bridge.rules").read_text()
    assert rule.endswith("# site rule\n")
    assert (out / "etc/network/interfaces").read_bytes() == (GOLDEN / "article/etc/network/interfaces").read_bytes()


def test_broken_xml_template_fails_at_render(tmp_path: Path) -> None:
    templates = override_template(
        tmp_path, "etc/libvirt/qemu/networks/network.xml.j2", "<network><name>{{ name }}</name>\n"
    )
    result = run("render", GOLDEN / "article.toml", "--templates", templates)
    assert result.exit_code == 2
    assert result.stderr.startswith("template etc/libvirt/qemu/networks/network.xml.j2: renders malformed XML")


def test_render_keeps_lxml_and_deepdiff_off_its_import_path() -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "kvmbridge", "render", str(GOLDEN / "article.toml")],
        capture_output=True,
        text=True,
        check=True,
    )
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in result.stderr.splitlines()}
    assert "jinja2" in imported and "msgspec" in imported
    assert not imported & {"lxml", "deepdiff", "difflib", "subprocess"}, imported & {"lxml", "deepdiff"}


def test_a_double_dash_in_the_file_name_keeps_the_xml_comment_well_formed(tmp_path: Path) -> None:
    from lxml import etree

    path = tmp_path / "kvm--01-.toml"
    path.write_text((GOLDEN / "article.toml").read_text())
    files = render(load_profile(path))
    xml = next(f for f in files if f.path.endswith("bridge-network.xml"))
    assert xml.data is not None
    etree.fromstring(xml.data)
    assert xml.data.startswith(b"<!-- Generated from kvm- -01-.toml by kvmbridge")
