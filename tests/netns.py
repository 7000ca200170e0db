"""A network-namespace lab that "boots" a rendered tree with the programs a Debian host runs at boot.

Namespaces: `lan` (the router, with the gateway address), `host` (NICs named like
the profile's ports, where ifupdown, sysctl and libvirtd run) and `vm` (a guest
whose veth joins the bridge, as libvirt's tap would). Addresses come only from
198.51.100.0/24 and 2001:db8:5163:1::/64; every namespace is deleted, and its processes killed, in every
outcome. Nothing here is product code: tests import it, kvmbridge never does.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import shlex
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from kvmbridge.livehost import LiveHost
from kvmbridge.model import Bridge, HostProfile, IPv4, IPv6
from kvmbridge.render import render
from kvmbridge.tree import write_tree

from .leftovers import claim, delete_namespace, owned_dir, remove_owned_dir

LAN_NET = "198.51.100"
GATEWAY = f"{LAN_NET}.1"
HOST_ADDRESS = f"{LAN_NET}.2"
VM_ADDRESS = f"{LAN_NET}.50"
DHCP_RANGE = (f"{LAN_NET}.100", f"{LAN_NET}.150")
# IPv6: documentation prefix only. The router also holds fe80::1, the usual link-local gateway.
LAN6_PREFIX = "2001:db8:5163:1"
LAN6_NET = f"{LAN6_PREFIX}::/64"
GATEWAY6 = f"{LAN6_PREFIX}::1"
ROUTER_LL = "fe80::1"
HOST6_ADDRESS = f"{LAN6_PREFIX}::2"
VM6_ADDRESS = f"{LAN6_PREFIX}::50"
DHCP6_RANGE = (f"{LAN6_PREFIX}::100", f"{LAN6_PREFIX}::1ff")

# Run in the host namespace with private mounts: ifupdown's state, dhclient's
# pid and lease files and resolv.conf never touch the machine's own.
IFUP_SCRIPT = r"""
set -e
mount -t tmpfs tmpfs /run
mkdir -p /run/network
mount -t tmpfs tmpfs /var/lib/dhcp 2>/dev/null || true
cp /etc/resolv.conf "$WORK/resolv.conf" 2>/dev/null || : >"$WORK/resolv.conf"
mount --bind "$WORK/resolv.conf" /etc/resolv.conf
exec ifup -a -i "$ROOT/etc/network/interfaces"
"""

LIBVIRTD_SCRIPT = r"""
set -e
mkdir -p /run/libvirt /var/lib/libvirt /var/cache/libvirt /var/log/libvirt
for d in /run/libvirt /var/lib/libvirt /var/cache/libvirt /var/log/libvirt; do mount -t tmpfs tmpfs "$d"; done
mkdir -p /var/lib/libvirt/qemu /var/lib/libvirt/dnsmasq
mount --bind "$ROOT/etc/libvirt/qemu" /etc/libvirt/qemu
libvirtd --daemon --pid-file /run/libvirt/kvmbridge-test.pid
for i in $(seq 100); do [ -S /run/libvirt/libvirt-sock ] && break; sleep 0.1; done
virsh -c qemu:///system net-list --all --name >"$WORK/net-names"
for name in $(cat "$WORK/net-names"); do
  virsh -c qemu:///system net-info "$name" >"$WORK/net-info.$name"
  virsh -c qemu:///system net-dumpxml --inactive "$name" >"$WORK/net-xml.$name"
done
if [ -n "${STATUS_CMD:-}" ]; then sh -c "$STATUS_CMD" >"$WORK/status.json" 2>"$WORK/status.err" || true; fi
kill "$(cat /run/libvirt/kvmbridge-test.pid)"
"""


def readdress(profile: HostProfile) -> HostProfile:
    """Move the profile onto the test LAN: the gateway bridge gets 198.51.100.2/24 via .1.

    Everything else (ports, timers, hwaddress, methods, networks) stays as the
    profile says, so the boot exercises the same options as the golden render.
    """
    import msgspec

    bridges: dict[str, Bridge] = {}
    for name, bridge in profile.bridges.items():
        ipv4 = bridge.ipv4
        if ipv4.method == "static":
            gateway = GATEWAY if ipv4.gateway is not None else None
            ipv4 = IPv4(method="static", address=f"{HOST_ADDRESS}/24", gateway=gateway, dns=(GATEWAY,))
        ipv6 = bridge.ipv6
        if ipv6 is not None and ipv6.method == "static":
            gateway6 = ipv6.gateway
            if gateway6 is not None and not ipaddress.IPv6Address(gateway6).is_link_local:
                gateway6 = GATEWAY6
            elif gateway6 is not None:
                gateway6 = ROUTER_LL
            dns6 = (GATEWAY6,) if ipv6.dns else ()
            ipv6 = IPv6(
                method="static",
                address=f"{HOST6_ADDRESS}/64",
                extra_addresses=lab_extras6(len(ipv6.extra_addresses)),
                gateway=gateway6,
                dns=dns6,
                accept_ra=ipv6.accept_ra,
            )
        bridges[name] = msgspec.structs.replace(bridge, ipv4=ipv4, ipv6=ipv6)
    return msgspec.structs.replace(profile, bridges=bridges)


def eui64_address(mac: str) -> str:
    """The SLAAC address a link with `mac` takes in the lab's prefix (modified EUI-64, Debian's default)."""
    octets = [int(p, 16) for p in mac.split(":")]
    octets[0] ^= 2
    iid = bytes([*octets[:3], 0xFF, 0xFE, *octets[3:]])
    return str(ipaddress.IPv6Address(ipaddress.IPv6Network(LAN6_NET).network_address.packed[:8] + iid))


def lab_extras6(count: int) -> tuple[str, ...]:
    """Where `readdress` moves a profile's extra static IPv6 addresses: ::3, ::4, ... of the lab's /64."""
    return tuple(f"{LAN6_PREFIX}::{n + 3:x}/64" for n in range(count))


def uplink(profile: HostProfile) -> str:
    """The bridge that carries the host's address (or the first one): it meets the router."""
    for name, bridge in profile.bridges.items():
        if bridge.ipv4.method != "manual" and bridge.ports:
            return name
    return next(iter(profile.bridges))


@dataclass
class Lab:
    """Three namespaces, torn down with every process in them on exit."""

    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    work: Path = field(default_factory=lambda: owned_dir(Path(tempfile.gettempdir()), "kvmbridge-lab-"))
    lan: str = ""
    host: str = ""
    vm: str = ""
    children: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lan, self.host, self.vm = (f"kbt-{self.tag}-{n}" for n in ("lan", "host", "vm"))

    def __enter__(self) -> Lab:
        for ns in (self.lan, self.host, self.vm):
            claim("netns", ns)
            run(["ip", "netns", "add", ns])
            self.sh(ns, "ip link set lo up")
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        for child in self.children:
            child.kill()
            child.wait(30)
        for ns in (self.vm, self.host, self.lan):
            delete_namespace(ns)
        remove_owned_dir(self.work)

    def sh(
        self, ns: str, command: str, *, check: bool = True, env: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return run(["ip", "netns", "exec", ns, "sh", "-c", command], check=check, env=env, timeout=timeout)

    def ip_json(self, ns: str, args: str) -> Any:
        return json.loads(self.sh(ns, f"ip -j {args}").stdout)

    def wire_ports(self, profile: HostProfile) -> str:
        """A veth per port; the uplink bridge's ports meet the router's switch in `lan`."""
        up = uplink(profile)
        self.wire([(port, name == up) for name, bridge in profile.bridges.items() for port in bridge.ports])
        return up

    def wire(self, ports: list[tuple[str, bool]]) -> None:
        """The router (`lanbr`, gateway address) and a veth per (host NIC name, joins the LAN)."""
        self.sh(self.lan, "ip link add lanbr type bridge && ip link set lanbr up")
        self.sh(self.lan, f"ip addr add {GATEWAY}/24 dev lanbr")
        # A router: dnsmasq advertises a zero router lifetime from a host that does not forward.
        self.sh(self.lan, "sysctl -qw net.ipv6.conf.all.forwarding=1")
        self.sh(self.lan, f"ip addr add {GATEWAY6}/64 dev lanbr nodad && ip addr add {ROUTER_LL}/64 dev lanbr nodad")
        for n, (port, joins) in enumerate(ports):
            peer = f"l{n}"
            run(
                ["ip", "link", "add", peer, "netns", self.lan, "type", "veth", "peer", "name", port, "netns", self.host]
            )
            self.sh(self.lan, f"ip link set {peer} up" + (f" && ip link set {peer} master lanbr" if joins else ""))

    def attach_vm(self, bridge: str) -> None:
        """The guest: its NIC's peer joins the bridge like libvirt's vnetN tap."""
        run(["ip", "link", "add", "vnet0", "netns", self.host, "type", "veth", "peer", "name", "vm0", "netns", self.vm])
        self.sh(self.host, f"ip link set vnet0 master {bridge} && ip link set vnet0 up")
        self.sh(self.vm, f"ip addr add {VM_ADDRESS}/24 dev vm0 && ip addr add {VM6_ADDRESS}/64 dev vm0 nodad")
        self.sh(self.vm, "ip link set vm0 up")

    def dnsmasq(self, name: str, *options: str) -> None:
        start_dnsmasq(["ip", "netns", "exec", self.lan], self.work, self.children, name, *options)

    def start_dhcp_server(self) -> None:
        self.dnsmasq(
            "dnsmasq",
            f"--dhcp-range={DHCP_RANGE[0]},{DHCP_RANGE[1]},255.255.255.0,1h",
            f"--dhcp-option=3,{GATEWAY}",
            "--dhcp-authoritative",
        )

    def start_router_advertisements(self, dhcpv6: bool = False, reserve: dict[str, str] | None = None) -> None:
        """The router's RAs for LAN6_NET: SLAAC only, or (dhcpv6) the managed flag and a DHCPv6 range.

        `reserve` maps a MAC to a fixed DHCPv6 address; dnsmasq reads the MAC
        from the client's DUID-LL(T) or the neighbour table.
        """
        self.dnsmasq("dnsmasq6", *ra_options(dhcpv6, reserve))

    def ifup(self, root: Path) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "ROOT": str(root), "WORK": str(self.work)}
        return run(
            ["ip", "netns", "exec", self.host, "unshare", "-m", "--propagation", "private", "sh", "-c", IFUP_SCRIPT],
            check=False,
            env=env,
            timeout=180,
        )

    def apply_sysctl(self, root: Path) -> list[str]:
        """Apply every rendered sysctl.d file in `host`; return the keys this namespace lacks."""
        missing = []
        for conf in sorted((root / "etc/sysctl.d").glob("*.conf")):
            result = self.sh(self.host, f"sysctl -p {shlex.quote(str(conf))}", check=False)
            for line in result.stderr.splitlines():
                if "cannot stat" in line:
                    missing.append(line.split("/proc/sys/", 1)[-1].split(":")[0].replace("/", "."))
                elif line.strip():
                    raise AssertionError(f"sysctl -p {conf.name}: {line}")
        return missing

    def start_libvirtd(self, root: Path, status_cmd: str = "") -> dict[str, dict[str, str]]:
        """libvirtd over the rendered etc/libvirt/qemu; returns `virsh net-info` per network.

        `status_cmd` runs while libvirtd is up, its stdout kept in WORK/status.json.
        """
        env = {**os.environ, "ROOT": str(root), "WORK": str(self.work), "STATUS_CMD": status_cmd}
        run(
            [
                "ip",
                "netns",
                "exec",
                self.host,
                "unshare",
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
                LIBVIRTD_SCRIPT,
            ],
            env=env,
            timeout=120,
        )
        info: dict[str, dict[str, str]] = {}
        for name in (self.work / "net-names").read_text().split():
            fields = {}
            for line in (self.work / f"net-info.{name}").read_text().splitlines():
                key, _, value = line.partition(":")
                if key.strip():
                    fields[key.strip()] = value.strip()
            fields["xml"] = (self.work / f"net-xml.{name}").read_text()
            info[name] = fields
        return info

    def capture_live(self, ns: str, ssh_connection: str | None = None) -> LiveHost:
        """What `ip -j` says inside a namespace: the running-host facts kvmbridge reads."""
        return LiveHost(
            links=self.ip_json(ns, "-d link show"),
            addrs=self.ip_json(ns, "addr show"),
            routes=self.ip_json(ns, "-4 route show"),
            ssh_connection=ssh_connection,
            routes6=self.ip_json(ns, "-6 route show"),
            ipv6_conf=self.ipv6_conf(ns),
        )

    def ipv6_conf(self, ns: str) -> dict[str, dict[str, str]]:
        """/proc/sys/net/ipv6/conf as seen inside `ns` (each namespace has its own)."""
        out = self.sh(
            ns,
            "cd /proc/sys/net/ipv6/conf && for d in *; do for k in accept_ra autoconf forwarding; do "
            'echo "$d $k $(cat $d/$k)"; done; done',
        ).stdout
        conf: dict[str, dict[str, str]] = {}
        for line in out.splitlines():
            name, key, value = line.split()
            conf.setdefault(name, {})[key] = value
        return conf

    def global6(self, ns: str, dev: str) -> list[dict[str, Any]]:
        """The global IPv6 addresses of `dev` that finished duplicate address detection."""
        addrs = self.ip_json(ns, f"-6 addr show dev {dev} scope global")
        return [a for a in (addrs[0]["addr_info"] if addrs else []) if a.get("local") and not a.get("tentative")]

    def wait_global6(self, ns: str, dev: str, want: Any, seconds: float = 15) -> list[dict[str, Any]]:
        """Poll until an address satisfies `want` (SLAAC and DHCPv6 take a moment); [] on time-out."""
        deadline = time.monotonic() + seconds
        while True:
            found = [a for a in self.global6(ns, dev) if want(a)]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.3)

    def shutdown_host(self, root: Path) -> bool:
        """`ifdown -a` as networking.service does at shutdown (DHCP clients release their leases).

        It runs in the mount namespace of the last `ifup`, which a DHCP client
        keeps alive (its state lives in that private /run); False when no daemon
        holds one, i.e. there is nothing to release.
        """
        ours = os.readlink("/proc/self/ns/mnt")
        for pid in run(["ip", "netns", "pids", self.host], check=False).stdout.split():
            try:
                if os.readlink(f"/proc/{pid}/ns/mnt") == ours:
                    continue
            except OSError:
                continue
            command = ["nsenter", "-t", pid, "-m", "-n", "ifdown", "-a", "-i", f"{root}/etc/network/interfaces"]
            result = run(command, check=False, timeout=60)
            assert result.returncode == 0, result.stderr
            return True
        return False

    def reboot_host(self) -> None:
        """Forget the old network config in `host`: kill its daemons, flush addresses and routes."""
        pids = run(["ip", "netns", "pids", self.host], check=False).stdout.split()
        for pid in pids:
            subprocess.run(["kill", "-9", pid], check=False, capture_output=True)
        self.sh(
            self.host,
            "for dev in $(ls /sys/class/net); do [ $dev = lo ] || ip link set dev $dev down; ip addr flush dev $dev; "
            "done; ip route flush table main; ip -6 route flush table main",
        )

    def ping(self, ns: str, address: str) -> bool:
        return self.sh(ns, f"ping -c 1 -W 2 {shlex.quote(address)}", check=False).returncode == 0

    def wait_ping(self, ns: str, address: str, seconds: float = 20) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.ping(ns, address):
                return True
            time.sleep(0.5)
        return False


def start_dnsmasq(
    enter: Sequence[str], work: Path, children: list[subprocess.Popen[bytes]], name: str, *options: str
) -> None:
    """dnsmasq on the LAN's `lanbr` (`enter` runs it in that namespace), a child of this process kept in
    `children`, so it is reaped, never a zombie under PID 1; returns once it has written its pid file."""
    pidfile = work / f"{name}.pid"
    argv = [
        *enter,
        "dnsmasq",
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--port=0",
        "--interface=lanbr",
        "--bind-interfaces",
        f"--dhcp-leasefile={work / f'{name}.leases'}",
        f"--pid-file={pidfile}",
        *options,
    ]
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    children.append(process)
    deadline = time.monotonic() + 10
    while not pidfile.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"dnsmasq ({name}) did not start: {process.communicate(timeout=5)[1].decode()}")
        time.sleep(0.02)


def ra_options(dhcpv6: bool, reserve: dict[str, str] | None) -> list[str]:
    """dnsmasq's router advertisements for LAN6_NET: SLAAC only, or (dhcpv6) the managed flag and a DHCPv6
    range, `reserve` mapping a MAC to a fixed address (read from the client's DUID-LL(T) or the neighbours)."""
    if dhcpv6:
        ranges = [f"--dhcp-range={DHCP6_RANGE[0]},{DHCP6_RANGE[1]},64,1h"]
    else:
        ranges = ["--dhcp-range=::,constructor:lanbr,ra-only,64,1h"]
    return ["--enable-ra", *ranges, *(f"--dhcp-host={mac},[{address}]" for mac, address in (reserve or {}).items())]


def run(
    cmd: list[str], *, check: bool = True, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{shlex.join(cmd)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def render_tree(profile: HostProfile, root: Path) -> None:
    write_tree(render(profile), root)
