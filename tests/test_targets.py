"""The registry is the one place that knows destinations: every rendered path maps back to its target."""

from __future__ import annotations

from kvmbridge.formats import LINK, NETXML, TEXT
from kvmbridge.profile import load_profile
from kvmbridge.render import render
from kvmbridge.targets import LINK_TARGETS, TARGETS, format_of, renderable, target_of

from .conftest import GOLDEN, GOLDEN_CASES


def test_every_rendered_path_is_matched_by_exactly_the_target_that_rendered_it() -> None:
    for case in GOLDEN_CASES:
        profile = load_profile(GOLDEN / f"{case}.toml")
        for target in TARGETS:
            for dest, _ in target.wanted(profile):
                assert target_of(dest, profile.renderer) is target, dest
        for link_target in LINK_TARGETS:
            for dest, _ in link_target.links(profile):
                assert target_of(dest, profile.renderer) is link_target, dest
        for f in render(profile):
            assert renderable(f.path)
            assert format_of(f.path, profile.renderer).name == f.format


def test_paths_kvmbridge_never_writes_are_not_renderable() -> None:
    for path in (
        "/etc/shadow",
        "/etc/network/interfaces.d/x",
        "/etc/libvirt/qemu/networks/autostart/x/y.xml",
        "/etc/libvirt/qemu/networks/x.conf",
        "/etc/sysctl.d/other.conf",
        "/x/etc/network/interfaces",
    ):
        assert not renderable(path), path
        assert format_of(path) is TEXT


def test_an_autostart_link_is_not_parsed_as_network_xml() -> None:
    assert format_of("/etc/libvirt/qemu/networks/autostart/n.xml") is LINK
    assert format_of("/etc/libvirt/qemu/networks/n.xml") is NETXML
