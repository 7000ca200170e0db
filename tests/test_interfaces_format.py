"""The interfaces parser reads what ifupdown 0.8.41 reads: each reproducer from issue 13 (and
issue 9 item 5) as a spec. The differential test against the real ifquery is in
test_interfaces_differential.py; these pin the readings by hand so a regression names itself."""

from __future__ import annotations

import pytest

from kvmbridge.formats.ifupdown_sources import DictFiles
from kvmbridge.formats.interfaces import InterfacesError, Option, load, parse
from kvmbridge.formats.interfaces_semantic import semantic
from kvmbridge.plan import equivalent


def test_a_tab_between_keyword_and_value_separates_them() -> None:
    parsed = parse(b"iface\teth0\tinet\tstatic\n\tnetmask\t255.255.255.0\n")
    assert [(s.name, s.family, s.method) for s in parsed.stanzas] == [("eth0", "inet", "static")]
    assert parsed.stanzas[0].get("netmask") == "255.255.255.0"


def test_duplicate_stanzas_are_all_kept_in_order() -> None:
    text = b"".join(b"iface eth3 inet static\n  address 198.51.100.%d/24\n" % i for i in range(1, 5))
    parsed = parse(text)
    assert [s.get("address") for s in parsed.stanzas] == [f"198.51.100.{i}/24" for i in range(1, 5)]
    assert list(semantic(parsed)["ifaces"]) == ["eth3 inet", "eth3 inet #2", "eth3 inet #3", "eth3 inet #4"]


def test_inherits_copies_the_first_earlier_stanza_family_method_and_options() -> None:
    parsed = parse(
        b"iface base inet static\n  address 198.51.100.1/24\n  up echo a\n"
        b"iface eth0 inherits base\n  address 198.51.100.2/24\n"
        b"iface eth1 inet inherits base\n"
    )
    eth0, eth1 = parsed.named("eth0")[0], parsed.named("eth1")[0]
    assert (eth0.family, eth0.method, eth0.inherits) == ("inet", "static", "base")
    assert [(o.name, o.value) for o in eth0.options] == [
        ("address", "198.51.100.1/24\n198.51.100.2/24"),
        ("up", "echo a"),
    ]
    assert (eth1.family, eth1.method) == ("inet", "static")


def test_values_keep_inner_whitespace_and_command_order() -> None:
    parsed = parse(b"iface e inet manual\n  up echo  'a   b'\n  post-up two\n  pre-up zero\n  up three  \n")
    assert [(o.name, o.value) for o in parsed.stanzas[0].options] == [
        ("up", "echo  'a   b'"),
        ("up", "two"),
        ("pre-up", "zero"),
        ("up", "three"),
    ]


def test_question_mark_options_set_only_when_unset() -> None:
    parsed = parse(b"iface e inet manual\n  mtu? 1500\n  mtu? 9000\n  hw? x\n")
    assert [(o.name, o.value) for o in parsed.stanzas[0].options] == [("mtu", "1500"), ("hw", "x")]


def test_mapping_stanzas_and_each_allow_class_are_kept() -> None:
    parsed = parse(
        b"auto lo eth0 lo\nallow-hotplug eth1\nallow-auto eth2\nallow-ovs br0\n"
        b"mapping eth* wlan0\n  script /usr/local/sbin/guess\n  map home eth0-home\n  map work\n"
    )
    assert parsed.allow == {"auto": ("lo", "eth0", "eth2"), "hotplug": ("eth1",), "ovs": ("br0",)}
    assert semantic(parsed)["mapping"] == [
        {"match": ["eth*", "wlan0"], "script": "/usr/local/sbin/guess", "map": ["home eth0-home", "work"]}
    ]


def test_comments_only_at_line_start_and_backslash_only_before_lf() -> None:
    parsed = parse(b"  # a comment \\\niface e inet manual\n  up a \\\n  b\n  down c\\\r\n  post-down d\r\n")
    assert [(o.name, o.value, o.line) for o in parsed.stanzas[0].options] == [
        ("up", "a   b", 4),
        ("down", "c\\", 5),
        ("post-down", "d", 6),
    ]


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        (b"iface\n", 1, "too few parameters for iface line"),
        (b"\niface swp1\n", 2, "unknown or no address type and no inherits keyword specified"),
        (b"iface e inet bogus\n", 1, "unknown or no method and no inherits keyword specified"),
        (b"iface e inherits\n", 1, "'inherits' keyword is missing a parameter"),
        (b"iface e inherits nothere\n", 1, "unknown iface to inherit from: nothere (*)"),
        (b"iface e inet inherits x\n", 1, "unknown iface to inherit from: x (inet)"),
        (b"address 198.51.100.1\n", 1, "misplaced option"),
        (b"iface e inet manual\nauto e\n  mtu 1500\n", 3, "misplaced option"),
        (b"iface e inet manual\nrename a=b\n  mtu 1500\n", 3, "misplaced option"),
        (b"iface e inet manual\n  mtu\n", 2, "option with empty value"),
        (b"mapping e\n script a\n script b\n", 3, "duplicate script in mapping"),
        (b"mapping e\n up x\n", 2, "misplaced option"),
    ],
)
def test_what_ifupdown_refuses_is_refused_with_its_line_and_reason(text: bytes, line: int, reason: str) -> None:
    with pytest.raises(InterfacesError) as caught:
        parse(text, "/etc/network/interfaces")
    assert str(caught.value) == f"/etc/network/interfaces:{line}: {reason}"


def test_an_extra_word_on_an_iface_line_is_a_warning_like_ifupdowns() -> None:
    parsed = parse(b"iface e inet dhcp # comment\n", "f")
    assert [str(w) for w in parsed.warnings] == [
        "f:1: extra parameter for the iface line not understood and ignored: #"
    ]


def test_source_directory_reads_only_names_ifupdown_reads() -> None:
    files = DictFiles(
        {
            "/etc/network/interfaces": b"source-directory interfaces.d\nsource /etc/network/more/*.cfg\n",
            "/etc/network/interfaces.d/eth0": b"iface eth0 inet dhcp\n",
            "/etc/network/interfaces.d/eth1.cfg": b"iface eth1 inet dhcp\n",
            "/etc/network/interfaces.d/eth2~": b"iface eth2 inet dhcp\n",
            "/etc/network/more/b.cfg": b"iface b inet dhcp\n",
            "/etc/network/more/a.cfg": b"iface a inet dhcp\n",
        }
    )
    parsed = load("/etc/network/interfaces", files)
    assert [s.name for s in parsed.stanzas] == ["eth0", "a", "b"]
    assert parsed.stanzas[0].file == "/etc/network/interfaces.d/eth0"


def test_a_file_sourcing_itself_is_read_once() -> None:
    files = DictFiles({"/etc/network/interfaces": b"source interfaces\niface e inet dhcp\n"})
    assert len(load("/etc/network/interfaces", files).stanzas) == 1


def test_a_second_stanza_or_a_mapping_is_never_equivalent() -> None:
    ours = b"auto br0\niface br0 inet static\n    address 198.51.100.2/24\n"
    second = ours + b"iface br0 inet static\n    pre-up /tmp/payload\n"
    mapping = ours + b"mapping br0\n    script /tmp/payload\n"
    path = "/etc/network/interfaces"
    assert equivalent(path, ours, ours.replace(b"    ", b"\t"))
    assert not equivalent(path, ours, second)
    assert not equivalent(path, ours, mapping)


def test_a_bare_auto_inside_a_stanza_marks_that_stanza_and_keeps_it_open() -> None:
    parsed = parse(b"iface eth0 inet manual\nauto\nallow-hotplug\nno-scripts\n  mtu 1500\n")
    assert parsed.allow == {"auto": ("eth0",), "hotplug": ("eth0",)}
    assert parsed.no_scripts == ("eth0",)
    assert parsed.stanzas[0].get("mtu") == "1500"


def test_a_continuation_starting_with_a_space_gives_an_option_with_an_empty_name() -> None:
    """Found by the differential test: ifupdown strips leading space only from a line's first part."""
    parsed = parse(b"iface e inet manual\n\\\n \t address 1\n")
    assert [(o.name, o.value, o.line) for o in parsed.stanzas[0].options] == [("", "address 1", 3)]
    assert parse(b"iface e inet manual\n\\\n address\n").stanzas[0].options == (Option("", "address", 3),)


@pytest.mark.parametrize(
    "text",
    [
        b"auto lo\niface lo inet loopback\niface swp[1-999999999]\n",
        b"auto swp[1-3000000]\n",
        b"iface swp1.[2-999999]\n",
    ],
)
def test_an_ifupdown2_range_too_large_to_expand_is_one_line_not_a_hang(text: bytes) -> None:
    """Outside review finding: ifupdown2 sets no bound, and a million-name range kept diff busy for minutes."""
    from kvmbridge.formats import ifupdown2

    with pytest.raises(InterfacesError, match=r"a range of \d+ interfaces; kvmbridge reads at most 4096"):
        ifupdown2.parse(text, "/etc/network/interfaces")
    assert len(ifupdown2.parse(b"auto swp[1-4096]\niface swp[1-4096]\n").stanzas) == 4096
