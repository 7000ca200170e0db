"""Each profile rule: a failing case with its exact one-line error, and a passing case."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import run, write_profile

BASE_BRIDGE = 'ports = ["eth0"]\nipv4 = { method = "static", address = "10.0.0.2/24", gateway = "10.0.0.1" }\n'


def profile(bridge: str = BASE_BRIDGE, extra: str = "", top: str = "", name: str = "br0") -> str:
    return f'{top}\n[bridges.{name}]\n{bridge}\n[networks.bridge-network]\nbridge = "br0"\n{extra}'


# (id, profile text, expected error line after "host.toml: ")
FAILING = [
    (
        "bridge-name-too-long",
        profile(name="br0123456789abcd", extra='[networks.x]\nbridge = "br0123456789abcd"\n'),
        "bridges.br0123456789abcd: 'br0123456789abcd' is not a valid interface name",
    ),
    ("bridge-name-dot", profile(name='"."'), "bridges.\".\": '.' is not a valid interface name"),
    ("bridge-name-dotdot", profile(name='".."'), "bridges.\"..\": '..' is not a valid interface name"),
    ("bridge-name-slash", profile(name='"br/0"'), "bridges.\"br/0\": 'br/0' is not a valid interface name"),
    ("bridge-name-space", profile(name='"br 0"'), "bridges.\"br 0\": 'br 0' is not a valid interface name"),
    (
        "bridge-name-with-a-dot",  # ifupdown2: "rawdevice br not present"; ifupdown makes br.5 a VLAN of br
        profile(name='"br.5"', extra="[bridges.br0]\n"),
        "bridges.\"br.5\": 'br.5': a bridge name must not contain '.' (ifupdown reads NAME.N as a VLAN of NAME)",
    ),
    ("port-leading-dash", profile('ports = ["-eth0"]'), "bridges.br0.ports[0]: '-eth0' must not start with '-'"),
    ("port-reserved-all", profile('ports = ["all"]'), "bridges.br0.ports[0]: 'all' is reserved"),
    ("port-twice", profile('ports = ["eth0", "eth0"]'), "bridges.br0.ports[1]: 'eth0' is listed twice"),
    (
        "port-in-two-bridges",
        profile(extra='[bridges.br1]\nports = ["eth0"]\n'),
        "bridges.br1.ports[0]: 'eth0' is already a port of bridge 'br0'",
    ),
    (
        "port-is-bridge",
        profile(extra='[bridges.br1]\nports = ["br0"]\n'),
        "bridges.br1.ports[0]: 'br0' is a bridge of this profile, not a NIC",
    ),
    (
        "static-without-address",
        profile('ipv4 = { method = "static" }'),
        'bridges.br0.ipv4.address: is required with method = "static" (e.g. "10.0.0.2/24")',
    ),
    (
        "static-without-prefix",
        profile('ipv4 = { method = "static", address = "10.0.0.2" }'),
        "bridges.br0.ipv4.address: '10.0.0.2' needs a prefix length (e.g. \"10.0.0.2/24\")",
    ),
    (
        "static-netmask-after-slash",
        profile('ipv4 = { method = "static", address = "10.0.0.2/255.255.255.0", gateway = "10.0.0.1" }'),
        "bridges.br0.ipv4.address: write '10.0.0.2/255.255.255.0' as \"10.0.0.2/24\"",
    ),
    (
        "static-prefix-with-leading-zero",
        profile('ipv4 = { method = "static", address = "10.0.0.2/024", gateway = "10.0.0.1" }'),
        "bridges.br0.ipv4.address: write '10.0.0.2/024' as \"10.0.0.2/24\"",
    ),
    (
        "static-bad-address",
        profile('ipv4 = { method = "static", address = "10.0.0.300/24" }'),
        "bridges.br0.ipv4.address: '10.0.0.300/24' is not an IPv4 address with prefix (e.g. \"10.0.0.2/24\")",
    ),
    (
        "gateway-outside",
        profile('ipv4 = { method = "static", address = "10.0.0.2/24", gateway = "10.1.0.1" }'),
        "bridges.br0.ipv4.gateway: 10.1.0.1 is outside 10.0.0.2/24",
    ),
    (
        "gateway-is-self",
        profile('ipv4 = { method = "static", address = "10.0.0.2/24", gateway = "10.0.0.2" }'),
        "bridges.br0.ipv4.gateway: 10.0.0.2 is this bridge's own address",
    ),
    (
        "address-is-network",
        profile('ipv4 = { method = "static", address = "10.0.0.0/24" }'),
        "bridges.br0.ipv4.address: 10.0.0.0 is the network address of 10.0.0.0/24",
    ),
    (
        "address-is-broadcast",
        profile('ipv4 = { method = "static", address = "10.0.0.255/24" }'),
        "bridges.br0.ipv4.address: 10.0.0.255 is the broadcast address of 10.0.0.0/24",
    ),
    (
        "address-with-dhcp",
        profile('ipv4 = { method = "dhcp", address = "10.0.0.2/24" }'),
        "bridges.br0.ipv4.address: is only used with method = \"static\", not 'dhcp'",
    ),
    (
        "dns-not-ip",
        profile('ipv4 = { method = "dhcp", dns = ["ns1.example.org"] }'),
        "bridges.br0.ipv4.dns[0]: 'ns1.example.org' is not an IP address",
    ),
    (
        "two-gateways",
        profile(extra='[bridges.br1]\nipv4 = { method = "static", address = "10.1.0.2/24", gateway = "10.1.0.1" }\n'),
        "bridges.br1.ipv4.gateway: bridge 'br0' already has the default ipv4 gateway; only one bridge may have one",
    ),
    (
        "ipv6-gateway-outside",
        profile(BASE_BRIDGE + 'ipv6 = { method = "static", address = "2001:db8::2/64", gateway = "2001:db9::1" }'),
        "bridges.br0.ipv6.gateway: 2001:db9::1 is outside 2001:db8::2/64 and not link-local",
    ),
    (
        # a zone index passed Python's ipaddress and reached `ip -6 addr add` through sh: a command at boot
        "ipv6-address-zone-injection",
        profile(BASE_BRIDGE + 'ipv6 = { method = "static", address = "2001:db8::2%x;touch$IFS.pwn;true/64" }'),
        "bridges.br0.ipv6.address: '2001:db8::2%x;touch$IFS.pwn;true/64': has a zone index (%...): not allowed "
        "(a profile names the link itself; sh would run what follows)",
    ),
    (
        "ipv6-gateway-zone",
        profile(BASE_BRIDGE + 'ipv6 = { method = "static", address = "2001:db8::2/64", gateway = "fe80::1%$(id)" }'),
        "bridges.br0.ipv6.gateway: 'fe80::1%$(id)': has a zone index (%...): not allowed "
        "(a profile names the link itself; sh would run what follows)",
    ),
    (
        "ipv6-extra-address-zone",
        profile(
            BASE_BRIDGE
            + 'ipv6 = { method = "static", address = "2001:db8::2/64", extra_addresses = ["2001:db8::3%a b/64"] }'
        ),
        "bridges.br0.ipv6.extra_addresses[0]: '2001:db8::3%a b/64': has a zone index (%...): not allowed "
        "(a profile names the link itself; sh would run what follows)",
    ),
    (
        "ipv6-dns-zone",
        profile(BASE_BRIDGE + 'ipv6 = { method = "auto", dns = ["fe80::53%eth0"] }'),
        "bridges.br0.ipv6.dns[0]: 'fe80::53%eth0': has a zone index (%...): not allowed "
        "(a profile names the link itself; sh would run what follows)",
    ),
    (
        "ipv6-extra-address-link-local",
        profile(
            BASE_BRIDGE + 'ipv6 = { method = "static", address = "2001:db8::2/64", extra_addresses = ["fe80::2/64"] }'
        ),
        "bridges.br0.ipv6.extra_addresses[0]: fe80::2 cannot be a static address of the bridge "
        "(the kernel makes its link-local one)",
    ),
    (
        "ipv6-extra-address-twice",
        profile(
            BASE_BRIDGE
            + 'ipv6 = { method = "static", address = "2001:db8::2/64", extra_addresses = ["2001:db8:0::2/48"] }'
        ),
        "bridges.br0.ipv6.extra_addresses[0]: 2001:db8::2 is already an address of this bridge",
    ),
    # ATTACK14b F9: a /0 extra gave the bridge an on-link default route that beat the gateway
    (
        "ipv6-extra-prefix-zero",
        profile(
            BASE_BRIDGE
            + 'ipv6 = { method = "static", address = "2001:db8::2/64", extra_addresses = ["2001:db8:9::1/0"] }'
        ),
        "bridges.br0.ipv6.extra_addresses[0]: 2001:db8:9::1/0: prefix length /0 is outside /48../128 "
        "for a host address",
    ),
    (
        "ipv6-prefix-too-short",
        profile(BASE_BRIDGE + 'ipv6 = { method = "static", address = "2001:db8::2/32" }'),
        "bridges.br0.ipv6.address: 2001:db8::2/32: prefix length /32 is outside /48../128 for a host address",
    ),
    (
        "ipv4-prefix-zero",
        profile('ipv4 = { method = "static", address = "10.0.0.2/0" }'),
        "bridges.br0.ipv4.address: 10.0.0.2/0: prefix length /0 is outside /8../32 for a host address",
    ),
    (
        "ipv6-v4-mapped",
        profile(
            BASE_BRIDGE
            + 'ipv6 = { method = "static", address = "2001:db8::2/64", extra_addresses = ["::ffff:198.51.100.9/128"] }'
        ),
        "bridges.br0.ipv6.extra_addresses[0]: ::ffff:c633:6409 is an IPv4 address written as IPv6 "
        "(::ffff:a.b.c.d or ::a.b.c.d): put it in ipv4",
    ),
    (
        "ipv6-v4-compatible",
        profile(BASE_BRIDGE + 'ipv6 = { method = "static", address = "::1.2.3.4/64" }'),
        "bridges.br0.ipv6.address: ::102:304 is an IPv4 address written as IPv6 "
        "(::ffff:a.b.c.d or ::a.b.c.d): put it in ipv4",
    ),
    # ATTACK14b F6: each extra is a stanza with its own DAD wait at boot
    (
        "ipv6-too-many-extras",
        profile(
            BASE_BRIDGE
            + 'ipv6 = { method = "static", address = "2001:db8::2/64", extra_addresses = ['
            + ", ".join(f'"2001:db8::{n + 3:x}/64"' for n in range(33))
            + "] }"
        ),
        "bridges.br0.ipv6.extra_addresses: has 33 addresses; at most 32 (each one slows the boot)",
    ),
    (
        "ipv6-extra-address-not-static",
        profile(BASE_BRIDGE + 'ipv6 = { method = "auto", extra_addresses = ["2001:db8::3/64"] }'),
        "bridges.br0.ipv6.extra_addresses: is only used with method = \"static\", not 'auto'",
    ),
    (
        "ipv6-static-without-address",
        profile(BASE_BRIDGE + 'ipv6 = { method = "static" }'),
        'bridges.br0.ipv6.address: is required with method = "static", with a prefix (e.g. "2001:db8::2/64")',
    ),
    (
        "hwaddress-bad",
        profile(BASE_BRIDGE + 'hwaddress = "eth1"'),
        "bridges.br0.hwaddress: 'eth1' is neither a MAC (aa:bb:cc:dd:ee:ff) nor one of this bridge's ports",
    ),
    (
        "renderer-unknown",
        profile(top='renderer = "NetworkManager"'),
        "renderer: 'NetworkManager' is not a renderer (choose one of: ifupdown, ifupdown2, netplan)",
    ),
    (
        "renderer-not-a-string",
        profile(top="renderer = 2"),
        "renderer: expected a string",
    ),
    (
        "hwaddress-port-name-on-ifupdown2",
        profile(BASE_BRIDGE + 'hwaddress = "eth0"', top='renderer = "ifupdown2"'),
        "bridges.br0.hwaddress: 'eth0' is a port name, but ifupdown2 cannot copy a port's MAC at boot; "
        "write the MAC itself (`ip link show eth0`, or `kvmbridge init --from-host`)",
    ),
    (
        "hwaddress-multicast",
        profile(BASE_BRIDGE + 'hwaddress = "01:00:5e:00:00:01"'),
        "bridges.br0.hwaddress: 01:00:5e:00:00:01 is a multicast address; a bridge needs a unicast MAC",
    ),
    ("mtu-low", profile(BASE_BRIDGE + "mtu = 67"), "bridges.br0.mtu: 67 is outside 68..65535"),
    ("mtu-high", profile(BASE_BRIDGE + "mtu = 65536"), "bridges.br0.mtu: 65536 is outside 68..65535"),
    (
        "mtu-ipv6",
        profile(BASE_BRIDGE + 'mtu = 1000\nipv6 = { method = "auto" }'),
        "bridges.br0.mtu: 1000 is below 1280, the minimum for IPv6",
    ),
    (
        "forward-delay-high",
        profile(BASE_BRIDGE + "forward_delay = 31"),
        "bridges.br0.forward_delay: 31 is outside 0..30",
    ),
    (
        "forward-delay-stp",
        profile(BASE_BRIDGE + "stp = true"),
        "bridges.br0.forward_delay: must be 2..30 when stp = true (the kernel refuses less)",
    ),
    ("max-wait-negative", profile(BASE_BRIDGE + "max_wait = -1"), "bridges.br0.max_wait: -1 is outside 0..3600"),
    ("hello-time", profile(BASE_BRIDGE + "hello_time = 11"), "bridges.br0.hello_time: 11 is outside 1..10"),
    ("max-age", profile(BASE_BRIDGE + "max_age = 5"), "bridges.br0.max_age: 5 is outside 6..40"),
    ("ageing", profile(BASE_BRIDGE + "ageing = 1000001"), "bridges.br0.ageing: 1000001 is outside 0..1000000"),
    ("priority", profile(BASE_BRIDGE + "priority = 65536"), "bridges.br0.priority: 65536 is outside 0..65535"),
    (
        "network-name-unsafe",
        profile(extra='[networks."../etc/x"]\nbridge = "br0"\n'),
        "networks.\"../etc/x\": '../etc/x' is not a safe network name",
    ),
    (
        "network-name-long",
        profile(extra=f'[networks.{"n" * 65}]\nbridge = "br0"\n'),
        f"networks.{'n' * 65}: '{'n' * 65}' is not a safe network name",
    ),
    (
        "network-unknown-bridge",
        profile(extra='[networks.other]\nbridge = "br9"\n'),
        "networks.other.bridge: 'br9' is not a bridge of this profile (bridges: br0)",
    ),
    (
        "network-bad-uuid",
        profile(extra='uuid = "not-a-uuid"\n'),
        "networks.bridge-network.uuid: 'not-a-uuid' is not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)",
    ),
    (
        "network-missing-bridge",
        profile(extra="[networks.other]\nautostart = true\n"),
        "networks.other: missing required key bridge",
    ),
    (
        "hostname-invalid",
        profile(top='hostname = "kvm_01"'),
        "hostname: 'kvm_01' is not a valid host name (letters, digits and '-', labels joined by '.')",
    ),
    (
        "newline-in-value",
        profile(top='hostname = "kvm01\\nauto evil"'),
        "hostname: contains a newline or control character",
    ),
    (
        "control-char-in-port",
        profile('ports = ["eth0\\u0007"]'),
        "bridges.br0.ports[0]: contains a newline or control character",
    ),
    (
        "line-separator",
        profile('ports = ["eth\\u20280"]'),
        "bridges.br0.ports[0]: contains a newline or control character",
    ),
    (
        "source-relative",
        profile(top='[interfaces]\nsource = ["interfaces.d/*"]'),
        "interfaces.source[0]: 'interfaces.d/*' is not an absolute path or glob",
    ),
    (
        "source-space",
        profile(top='[interfaces]\nsource = ["/etc/network/x y"]'),
        "interfaces.source[0]: '/etc/network/x y' is not an absolute path or glob",
    ),
    (
        "source-itself",
        profile(top='[interfaces]\nsource = ["/etc/network/inter*"]'),
        "interfaces.source[0]: '/etc/network/inter*' would make /etc/network/interfaces source itself",
    ),
    ("unknown-key-hint", profile(BASE_BRIDGE + "stpp = true"), "bridges.br0.stpp: unknown key; did you mean 'stp'?"),
    ("unknown-top-key", profile(top="[sysctls]\nip_forward = true"), "sysctls: unknown key; did you mean 'sysctl'?"),
    (
        "unknown-ipv4-key",
        profile('ipv4 = { method = "dhcp", gatway = "10.0.0.1" }'),
        "bridges.br0.ipv4.gatway: unknown key; did you mean 'gateway'?",
    ),
    ("wrong-type", profile(BASE_BRIDGE + 'stp = "off"'), "bridges.br0.stp: expected bool, got str"),
    ("bool-as-int", profile(BASE_BRIDGE + "forward_delay = true"), "bridges.br0.forward_delay: expected int, got bool"),
    ("bad-method", profile('ipv4 = { method = "bootp" }'), "bridges.br0.ipv4.method: invalid value 'bootp'"),
    ("no-bridges", 'hostname = "kvm01"\n', "bridges: the profile defines no bridge; add a [bridges.NAME] table"),
    (
        "accept-ra-1-forwarding",
        profile(BASE_BRIDGE + 'ipv6 = { method = "auto", accept_ra = 1 }', top="[sysctl]\nipv6_forward = true"),
        "bridges.br0.ipv6.accept_ra: 1 with sysctl.ipv6_forward = true: the kernel ignores router advertisements",
    ),
    (
        "accept-ra-0-slaac",
        profile(BASE_BRIDGE + 'ipv6 = { method = "auto", accept_ra = 0 }'),
        'bridges.br0.ipv6.accept_ra: 0 ignores router advertisements, which method = "auto" needs',
    ),
    (
        "accept-ra-3",
        profile(BASE_BRIDGE + 'ipv6 = { method = "static", address = "2001:db8::2/64", accept_ra = 3 }'),
        "bridges.br0.ipv6.accept_ra: 3 is not 0 (ignore), 1 (accept) or 2 (accept even when forwarding)",
    ),
    (
        "accept-ra-manual",
        profile(BASE_BRIDGE + 'ipv6 = { method = "manual", accept_ra = 2 }'),
        'bridges.br0.ipv6.accept_ra: is not used with method = "manual"',
    ),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in FAILING], ids=[c[0] for c in FAILING])
def test_rule_rejects_with_one_key_named_line(tmp_path: Path, text: str, expected: str) -> None:
    path = write_profile(tmp_path, text)
    result = run("validate", path)
    assert result.exit_code == 2, result.output
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"{path}: {expected}"), first
    assert "Traceback" not in result.stderr


PASSING = [
    ("bridge-name-15", profile(extra='[bridges.br0123456789abc]\n[networks.y]\nbridge = "br0123456789abc"\n')),
    ("ports-empty", profile('ports = []\nipv4 = { method = "manual" }')),
    ("port-names", profile('ports = ["enp1s0f0", "eth0.100", "bond_0"]')),
    ("static-31", profile('ipv4 = { method = "static", address = "10.0.0.0/31", gateway = "10.0.0.1" }')),
    ("gateway-inside", profile()),
    (
        "ipv6-32-extras-and-edge-prefixes",
        profile(
            'ports = ["eth0"]\nipv4 = { method = "static", address = "10.0.0.2/8" }\n'
            + 'ipv6 = { method = "static", address = "2001:db8::2/48", extra_addresses = ["2001:db8:1::2/128", '
            + ", ".join(f'"2001:db8::{n + 3:x}/64"' for n in range(31))
            + "] }"
        ),
    ),
    ("dhcp-with-dns", profile('ports = ["eth0"]\nipv4 = { method = "dhcp", dns = ["10.0.0.1", "2001:db8::53"] }')),
    ("hwaddress-mac", profile(BASE_BRIDGE + 'hwaddress = "52:54:00:AB:cd:01"')),
    ("hwaddress-port", profile(BASE_BRIDGE + 'hwaddress = "eth0"')),
    ("mtu-bounds", profile(BASE_BRIDGE + "mtu = 68") + "[bridges.br1]\nmtu = 65535\n"),
    (
        "stp-timers",
        profile(
            BASE_BRIDGE + "stp = true\nforward_delay = 15\nhello_time = 2\nmax_age = 20\nageing = 300\npriority = 0"
        ),
    ),
    (
        "ipv6-link-local-gw",
        profile(BASE_BRIDGE + 'ipv6 = { method = "static", address = "2001:db8::2/64", gateway = "fe80::1" }'),
    ),
    (
        "ipv6-extra-addresses-gateway-in-the-extra-prefix",
        profile(
            BASE_BRIDGE + 'ipv6 = { method = "static", address = "2001:db8::2/64", '
            'extra_addresses = ["fd00:1::2/64", "2001:db8:77::2/64"], gateway = "2001:db8:77::1" }'
        ),
    ),
    (
        "network-name-chars",
        profile(extra='[networks."lan_2.a+b-c"]\nbridge = "br0"\nuuid = "0B5C2A5E-4E9C-4A8E-9B0F-6A2C6F0F7D11"\n'),
    ),
    ("source-empty", profile(top="[interfaces]\nsource = []")),
    ("accept-ra-1-no-forwarding", profile(BASE_BRIDGE + 'ipv6 = { method = "dhcp", accept_ra = 1 }')),
    (
        "accept-ra-2-forwarding",
        profile(BASE_BRIDGE + 'ipv6 = { method = "auto", accept_ra = 2 }', top="[sysctl]\nipv6_forward = true"),
    ),
    (
        "accept-ra-0-static",
        profile(BASE_BRIDGE + 'ipv6 = { method = "static", address = "2001:db8::2/64", accept_ra = 0 }'),
    ),
]


@pytest.mark.parametrize("text", [c[1] for c in PASSING], ids=[c[0] for c in PASSING])
def test_rule_accepts_valid_profile(tmp_path: Path, text: str) -> None:
    result = run("validate", write_profile(tmp_path, text))
    assert result.exit_code == 0, result.stderr


def test_all_broken_rules_are_reported_at_once(tmp_path: Path) -> None:
    path = write_profile(tmp_path, profile(BASE_BRIDGE + "mtu = 1\nhello_time = 0"))
    result = run("validate", path)
    assert result.stderr.splitlines() == [
        f"{path}: bridges.br0.hello_time: 0 is outside 1..10",
        f"{path}: bridges.br0.mtu: 1 is outside 68..65535",
    ]


def test_hostname_defaults_to_file_stem(tmp_path: Path) -> None:
    from kvmbridge.profile import load_profile

    path = write_profile(tmp_path, profile(), name="web-7.toml")
    assert load_profile(path).hostname == "web-7"


def test_invalid_file_stem_asks_for_a_hostname(tmp_path: Path) -> None:
    path = write_profile(tmp_path, profile(), name="my host.toml")
    result = run("validate", path)
    assert result.stderr.splitlines()[0] == (
        f"{path}: hostname: not set, and the file name 'my host' is not a valid host name; set hostname = \"...\""
    )
