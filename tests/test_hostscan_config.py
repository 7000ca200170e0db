"""`init --from-host` reads the host's interfaces files through the parsers and never raises:
each odd construct gives a profile (with a note) or one clear line. Pure: `ip -j` facts
are given, not read."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kvmbridge.formats.ifupdown_sources import HostFiles
from kvmbridge.hostscan import read_config, starter_from_host
from kvmbridge.livehost import LiveHost
from kvmbridge.profile import parse_profile
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
    # ATTACK14b F14: not silently: the link-local server was the host's first resolver
    assert starter.warnings == (
        "resolv.conf's nameserver fe80::1%eth0 is link-local (reached through one link, the NIC the bridge takes "
        "over): not carried over; name a routable server in dns",
    )
    unzoned = starter_from_host(LIVE, {}, b"nameserver fe80::1\nnameserver 2001:db8::53\n", "kvm01", False)
    assert unzoned.dns == ("2001:db8::53",) and "fe80::1 is link-local" in unzoned.warnings[0]


GLOBAL = {"scope": "global"}


def dual_stack(*v6: dict[str, object]) -> LiveHost:
    return LiveHost(
        links=[{"ifname": "lo"}, {"ifname": "eth0", "address": "52:54:00:12:34:56"}],
        addrs=[
            {
                "ifname": "eth0",
                "addr_info": [
                    {"family": "inet", "local": "198.51.100.2", "prefixlen": 24, "dynamic": True, **GLOBAL},
                    *v6,
                ],
            }
        ],
        routes=[{"dst": "default", "gateway": "198.51.100.1", "dev": "eth0", "protocol": "dhcp"}],
        routes6=[{"dst": "default", "gateway": "fe80::1", "dev": "eth0", "protocol": "ra"}],
        ipv6_conf={"eth0": {"accept_ra": "1", "autoconf": "1", "forwarding": "0"}, "all": {"forwarding": "0"}},
    )


def test_an_inet6_dhcp_host_with_one_static_extra_stays_dhcp_and_names_the_extra() -> None:
    """ATTACK14b F12: the `up` line's static address made the import say method static, dropping the
    DHCPv6 lease (the host's main address), and still advised carrying that `up` line."""
    live = dual_stack(
        {"family": "inet6", "local": "2001:db8::1a2", "prefixlen": 128, "dynamic": True, **GLOBAL},
        {"family": "inet6", "local": "2001:db8:1::2", "prefixlen": 64, **GLOBAL},
    )
    config = b"auto eth0\niface eth0 inet dhcp\niface eth0 inet6 dhcp\n  up ip -6 addr add 2001:db8:1::2/64 dev eth0\n"
    starter = starter_from_host(live, {"/etc/network/interfaces": config}, b"", "kvm01", False)
    assert starter.ipv6_method == "dhcp"
    assert starter.warnings == (
        "/etc/network/interfaces:4: `up ip -6 addr add 2001:db8:1::2/64 dev eth0` in eth0's inet6 stanza is not "
        "carried over; add it to a file the profile sources, for the bridge",
        "eth0 also has static 2001:db8:1::2/64 beside its inet6 dhcp; the profile keeps dhcp "
        "(ipv6.extra_addresses need method static), so it is not carried over",
    )
    assert 'ipv6 = { method = "dhcp"' in starter_profile(starter)


def test_an_up_line_whose_address_the_profile_carries_is_not_advised_again() -> None:
    """A static host whose extra comes from an `up ip -6 addr add`: the extra is carried, and following
    the old advice (add the `up` line too) failed that stanza with 'File exists' at boot."""
    live = dual_stack(
        {"family": "inet6", "local": "2001:db8::2", "prefixlen": 64, **GLOBAL},
        {"family": "inet6", "local": "2001:db8:1::2", "prefixlen": 64, **GLOBAL},
    )
    config = (
        b"auto eth0\niface eth0 inet dhcp\niface eth0 inet6 static\n  address 2001:db8::2/64\n"
        b"  up ip -6 addr add 2001:db8:1::2/64 dev eth0\n  down ip -6 addr del 2001:db8:1::2/64 dev eth0\n"
        b"  up ip -6 route add 2001:db8:99::/48 via fe80::9 dev eth0\n"
    )
    starter = starter_from_host(live, {"/etc/network/interfaces": config}, b"", "kvm01", False)
    assert (starter.ipv6_method, starter.ipv6_extra_addresses) == ("static", ("2001:db8:1::2/64",))
    assert [w for w in starter.warnings if "`up" in w or "`down" in w] == [
        "/etc/network/interfaces:7: `up ip -6 route add 2001:db8:99::/48 via fe80::9 dev eth0` in eth0's inet6 "
        "stanza is not carried over; add it to a file the profile sources, for the bridge"
    ]
    assert [n for n in starter.notes if "carried in the profile's ipv6 keys" in n] == [
        "/etc/network/interfaces:5: `up ip -6 addr add 2001:db8:1::2/64 dev eth0`: its address is carried in the "
        "profile's ipv6 keys; not carried over as a command",
        "/etc/network/interfaces:6: `down ip -6 addr del 2001:db8:1::2/64 dev eth0`: its address is carried in "
        "the profile's ipv6 keys; not carried over as a command",
    ]


NETPLAN_ETH0 = b"network:\n  version: 2\n  ethernets:\n    eth0:\n      addresses: [198.51.100.7/24]\n"


def test_a_netplan_file_name_cannot_add_toml_to_the_printed_profile() -> None:
    """ATTACK14b F7: a netplan file named 'x\\nbridges.evil.ports = ["eth9"]\\n#.yaml' printed its name raw
    into a `# ` note line; the printed profile then held a second bridge that validate accepted."""
    name = '/etc/netplan/x\nbridges.evil.ports = ["eth9"]\n#.yaml'
    starter = starter_from_host(LIVE, {name: NETPLAN_ETH0}, b"", "kvm01", False)
    text = starter_profile(starter)
    assert "bridges.evil" not in tomllib.loads(text)["bridges"] and 'x\\nbridges.evil.ports = ["eth9"]\\n#.yaml' in text
    assert list(tomllib.loads(text)["bridges"]) == ["br0"]


# A host-derived word: a file name (no '/', no NUL; undecodable bytes arrive as surrogateescape's
# \udc80-\udcff) or a stanza word (no line break: splitting lines is the parser's own business).
HOSTILE = st.text(
    st.one_of(st.characters(exclude_categories=["Cs"], exclude_characters="/\0"), st.sampled_from("\udc80\udcff")),
    min_size=1,
    max_size=24,
).filter(lambda t: t not in (".", ".."))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=HOSTILE, word=HOSTILE.map(lambda t: t.replace("\n", " ").replace("\r", " ")), netplan=st.booleans())
def test_no_host_derived_text_adds_a_line_or_key_to_the_printed_profile(name: str, word: str, netplan: bool) -> None:
    """Every note and warning quotes host text (file names, stanza names, option values); the printed
    profile keeps exactly the lines of the same host without that text, and parses to the same keys."""

    def printed(name: str, word: str) -> str:
        config = {
            "/etc/network/interfaces": b"source /etc/network/interfaces.d/*\nauto eth0\niface eth0 inet static\n"
            b"  address 198.51.100.7/24\n  up " + word.encode("utf-8", "surrogateescape") + b"\n",
            f"/etc/network/interfaces.d/{name}": b"iface " + word.encode("utf-8", "surrogateescape") + b" inet dhcp\n",
        }
        if netplan:
            config[f"/etc/netplan/{name}.yaml"] = NETPLAN_ETH0
        return starter_profile(starter_from_host(LIVE, config, b"", "kvm01", False))

    text, plain = printed(name, word), printed("x", "y")
    settings_of = [line for line in text.split("\n") if not line.startswith("#")]
    assert settings_of == [line for line in plain.split("\n") if not line.startswith("#")]
    assert all(line.isprintable() for line in text.split("\n"))  # no \r, \v, \x85, \u2028 ... inside a line
    assert tomllib.loads(text) == tomllib.loads(plain)


def test_static_ipv6_the_rules_refuse_is_said_and_not_carried_so_the_profile_validates() -> None:
    """ATTACK14b F9/F6 from the import side: the host's /0 and IPv4-mapped addresses and more than 32
    extras made init --from-host print a profile that validate refuses."""
    many = [{"family": "inet6", "local": f"2001:db8::{n + 2:x}", "prefixlen": 64, **GLOBAL} for n in range(35)]
    odd = [
        {"family": "inet6", "local": "2001:db8:9::1", "prefixlen": 0, **GLOBAL},
        {"family": "inet6", "local": "::ffff:198.51.100.9", "prefixlen": 128, **GLOBAL},
    ]
    live = dual_stack(*odd, *many)
    config = b"auto eth0\niface eth0 inet dhcp\n"
    starter = starter_from_host(live, {"/etc/network/interfaces": config}, b"", "kvm01", False)
    assert len(starter.ipv6_extra_addresses) == 32
    assert starter.warnings[:2] == (
        "eth0's 2001:db8:9::1/0: prefix length /0 is outside /48../128 for a host address; not carried over",
        "eth0's ::ffff:c633:6409 is an IPv4 address written as IPv6 (::ffff:a.b.c.d or ::a.b.c.d): put it in ipv4; "
        "not carried over",
    )
    assert any("a profile takes at most 32 extra ones" in w for w in starter.warnings)
    parse_profile(starter_profile(starter), "kvm01.toml", default_hostname="kvm01", source_name="kvm01.toml")
