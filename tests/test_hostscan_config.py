"""`init --from-host` reads the host's interfaces files through the parsers and never raises:
each odd construct gives a profile (with a note) or one clear line. Pure: `ip -j` facts
are given, not read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kvmbridge.formats.ifupdown_sources import HostFiles
from kvmbridge.hostscan import LiveHost, read_config, starter_from_host
from kvmbridge.starter import starter_profile

from .conftest import run

LIVE = LiveHost(
    links=[{"ifname": "lo"}, {"ifname": "eth0", "address": "02:00:00:00:00:01"}],
    addrs=[
        {
            "ifname": "eth0",
            "addr_info": [{"family": "inet", "local": "198.51.100.7", "prefixlen": 24, "scope": "global"}],
        }
    ],
    routes=[{"dst": "default", "gateway": "198.51.100.1", "dev": "eth0"}],
)
CONSTRUCTS = {
    "family-less stanza (ifupdown2 style)": b"auto swp1\niface swp1\n  mtu 9000\n",
    "bare iface": b"iface\n",
    "tab after iface": b"iface\teth0\tinet\tstatic\n\taddress\t198.51.100.7/24\n\tdns-nameservers\t198.51.100.53\n",
    "duplicates": b"iface eth3 inet static\n address 198.51.100.3/24\niface eth3 inet static\n pre-up true\n",
    "inherits": b"iface a inet manual\niface b inherits a\n",
    "inherits without a parent": b"iface b inherits\n",
    "mapping": b"mapping eth*\n script /bin/true\n map x\n",
    "misplaced option": b"address 198.51.100.1\n",
    "unknown method": b"iface eth0 inet bogus\n",
    "crlf and backslash": b"iface eth0 inet static\\\r\n address 198.51.100.7/24\r\n",
    "not utf-8": b"iface \xff\xfe inet manual\n",
    "NUL byte": b"iface eth0 inet manual\n\0\n",
    "template": b"%for i in range(2):\niface swp${i}\n%endfor\n",
}


@pytest.mark.parametrize("dialect", ["ifupdown", "ifupdown2"])
@pytest.mark.parametrize("name", sorted(CONSTRUCTS))
def test_from_host_gives_a_profile_or_one_line_for_every_odd_construct(name: str, dialect: str) -> None:
    starter = starter_from_host(
        LIVE, {"/etc/network/interfaces": CONSTRUCTS[name]}, b"", "kvm01", False, dialect=dialect
    )
    text = starter_profile(starter)
    assert 'ports = ["eth0"]' in text
    for note in starter.notes + starter.warnings:
        assert "\n" not in note
        assert note.isprintable()
        assert note.isascii() or "\\x" not in note


def test_a_refused_file_is_named_with_its_line_and_the_tools_reason() -> None:
    starter = starter_from_host(LIVE, {"/etc/network/interfaces": b"auto lo\niface swp1\n"}, b"", "kvm01", False)
    assert (
        "/etc/network/interfaces:2: unknown or no address type and no inherits keyword specified "
        "(ifupdown refuses this file; nothing carried over from it)"
    ) in starter.notes


def test_dns_comes_from_a_tab_separated_stanza() -> None:
    starter = starter_from_host(LIVE, {"/etc/network/interfaces": CONSTRUCTS["tab after iface"]}, b"", "k", False)
    assert starter.dns == ("198.51.100.53",)


def test_sourced_files_follow_ifupdowns_rules() -> None:
    config = {
        "/etc/network/interfaces": b"source-directory interfaces.d\n",
        "/etc/network/interfaces.d/eth9": b"iface eth9 inet manual\n",
        "/etc/network/interfaces.d/eth8.cfg": b"iface eth8 inet manual\n",
    }
    notes = starter_from_host(LIVE, config, b"", "kvm01", False).notes
    assert any("interfaces.d/eth9:1 also configures eth9" in n for n in notes)
    assert not any("eth8" in n for n in notes)


@pytest.mark.parametrize("source", ["source /etc/network/interfaces.d/*\n", "source /etc/network/interfaces.d\n"])
def test_a_sourced_folder_is_skipped_as_ifupdown_skips_it(tmp_path: Path, source: str) -> None:
    """Outside review finding: Python's file object raised IsADirectoryError (a traceback from --from-host);
    ifupdown says "Is a directory" and reads on."""
    (tmp_path / "etc/network/interfaces.d/old").mkdir(parents=True)
    (tmp_path / "etc/network/interfaces").write_text("auto eth0\niface eth0 inet dhcp\n" + source)
    reading, note = read_config(HostFiles(str(tmp_path)))
    assert note is None
    assert [s.name for s in reading.stanzas] == ["eth0"]


def test_a_sourced_fifo_on_a_real_tree_is_one_line_not_a_hang(tmp_path: Path) -> None:
    (tmp_path / "etc/network").mkdir(parents=True)
    os.mkfifo(tmp_path / "etc/network/fifo")
    (tmp_path / "etc/network/interfaces").write_text("auto eth0\niface eth0 inet dhcp\nsource /etc/network/fifo\n")
    _reading, note = read_config(HostFiles(str(tmp_path)))
    assert note is not None and note.startswith("/etc/network/fifo:0: not a regular file"), note


def test_what_the_import_drops_is_also_said_on_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    """A warning must reach an admin who pipes the profile into a file, not only the file's comments."""
    import kvmbridge.hostscan

    config = (
        b"auto eth0\niface eth0 inet static\n  address 198.51.100.7/24\n  up ip route add 203.0.113.0/24 dev eth0\n"
    )
    starter = starter_from_host(LIVE, {"/etc/network/interfaces": config}, b"", "kvm01", False)
    monkeypatch.setattr(kvmbridge.hostscan, "scan_host", lambda: starter)
    result = run("init", "--from-host")
    assert result.exit_code == 0
    warning = (
        "/etc/network/interfaces:4: `up ip route add 203.0.113.0/24 dev eth0` in eth0's inet stanza is not "
        "carried over; add it to a file the profile sources, for the bridge"
    )
    assert result.stderr == f"warning: {warning}\n"
    assert f"# WARNING: {warning}\n" in result.stdout


def test_a_zoned_nameserver_in_resolv_conf_is_not_carried() -> None:
    """resolv.conf may say `nameserver fe80::1%eth0`; the rules refuse a zone index (sh would run it)."""
    resolv = b"nameserver fe80::1%eth0\nnameserver 198.51.100.53\n"
    starter = starter_from_host(LIVE, {}, resolv, "kvm01", False)
    assert starter.dns == ("198.51.100.53",)
