"""Read the running host (`ip -j`) into plain facts, and turn them into a starter profile.

Reading (`read_live_host`) is separate from interpreting (`starter_from_host`)
so tests feed `ip -j` output captured from namespaces they build.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import socket
import subprocess
from dataclasses import dataclass, field
from typing import Any

from .errors import KvmbridgeError
from .formats import ifupdown2
from .formats import interfaces as interfaces_format
from .formats.ifupdown_sources import DictFiles, HostFiles, SourceFiles
from .netplanscan import NetplanFile, nic_settings, read_netplan
from .rules import check_hostname, check_ifname
from .rules_address import MAX_EXTRA_ADDRESSES, host_address6
from .starter import Starter


@dataclass(frozen=True)
class LiveHost:
    """The running host's links, addresses and routes as `ip -j` prints them."""

    links: list[dict[str, Any]] = field(default_factory=list)
    addrs: list[dict[str, Any]] = field(default_factory=list)
    routes: list[dict[str, Any]] = field(default_factory=list)
    ssh_connection: str | None = None
    routes6: list[dict[str, Any]] = field(default_factory=list)
    # /proc/sys/net/ipv6/conf/NAME/{accept_ra,autoconf,forwarding} per link, plus "all"
    ipv6_conf: dict[str, dict[str, str]] = field(default_factory=dict)
    # every established session on a port sshd listens on, as SSH_CONNECTION spells one: sudo drops that variable
    ssh_sessions: tuple[str, ...] = ()
    # why ssh_sessions may be incomplete (a note for the report), None when it is not
    sessions_note: str | None = None

    def link_names(self) -> set[str]:
        return {link["ifname"] for link in self.links}

    def link(self, name: str) -> dict[str, Any] | None:
        return next((link for link in self.links if link["ifname"] == name), None)

    def nic_holding(self, address: str) -> str | None:
        for entry in self.addrs:
            for info in entry.get("addr_info", []):
                if info.get("local") == address:
                    return str(entry["ifname"])
        return None

    def default_route(self) -> dict[str, Any] | None:
        return next((r for r in self.routes if r.get("dst") == "default"), None)

    def default_route6(self) -> dict[str, Any] | None:
        return next((r for r in self.routes6 if r.get("dst") == "default"), None)

    def ipv4(self, name: str) -> list[dict[str, Any]]:
        return self._global(name, "inet")

    def ipv6(self, name: str) -> list[dict[str, Any]]:
        """Global (and ULA) addresses; link-local ones belong to the link, not to a profile."""
        return self._global(name, "inet6")

    def _global(self, name: str, family: str) -> list[dict[str, Any]]:
        entry: dict[str, Any] = next((a for a in self.addrs if a["ifname"] == name), {"addr_info": []})
        return [i for i in entry["addr_info"] if i.get("family") == family and i.get("scope") == "global"]

    def members(self, bridge: str) -> list[str]:
        return sorted(link["ifname"] for link in self.links if link.get("master") == bridge)


def read_live_host() -> LiveHost:
    def ip_json(*args: str) -> list[dict[str, Any]]:
        try:
            out = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError) as exc:
            raise KvmbridgeError(f"ip -j {' '.join(args)}: cannot read the running host ({exc})") from None
        return list(json.loads(out or "[]"))

    links = ip_json("-d", "link", "show")
    return LiveHost(
        links=links,
        addrs=ip_json("addr", "show"),
        routes=ip_json("-4", "route", "show"),
        ssh_connection=os.environ.get("SSH_CONNECTION"),
        routes6=ip_json("-6", "route", "show"),
        ipv6_conf=read_ipv6_conf(["all", *(str(link["ifname"]) for link in links)]),
        ssh_sessions=read_ssh_sessions(),
        sessions_note=None
        if os.geteuid() == 0
        else "SSH sessions: not root, so ss cannot see which sockets are sshd's; only $SSH_CONNECTION was checked",
    )


SSHD = {"sshd", "sshd-session"}  # OpenSSH 9.8 split the per-session process out as sshd-session
_USER = re.compile(r'\("((?:[^"\\]|\\.)*)",pid=')


def read_ssh_sessions() -> tuple[str, ...]:
    """The established TCP connections on a port an sshd process listens on, each as
    "PEER PEERPORT LOCAL[%LINK] PORT" (SSH_CONNECTION's form), read with iproute2's `ss`.

    `sudo` and Ansible's become drop $SSH_CONNECTION, so the environment alone cannot say
    whether the install would cut a session; this sees every admin's, not only ours.
    """
    ports = set()
    for line in _ss("-Htlnp"):
        fields = line.split()
        if len(fields) >= 5 and SSHD & set(_USER.findall(line)):
            ports.add(fields[3].rpartition(":")[2])
    sessions = []
    for line in _ss("-Htn", "state", "established"):
        fields = line.split()
        if len(fields) < 4:
            continue
        local, _, port = fields[2].rpartition(":")
        peer, _, peer_port = fields[3].rpartition(":")
        if port in ports:
            sessions.append(f"{_ss_address(peer)} {peer_port} {_ss_address(local)} {port}")
    return tuple(sessions)


def _ss(*args: str) -> list[str]:
    try:
        out = subprocess.run(["ss", *args], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise KvmbridgeError(f"ss {' '.join(args)}: cannot read the running host's SSH sessions ({exc})") from None
    return out.splitlines()


def _ss_address(text: str) -> str:
    """`[fe80::1]%br0` -> `fe80::1%br0`, `[2001:db8::2]` -> `2001:db8::2`, `198.51.100.2` as is."""
    address, _, scope = text.removeprefix("[").partition("]")
    return address + scope if text.startswith("[") else text


ULA = ipaddress.IPv6Network("fc00::/7")
IPV6_CONF_KEYS = ("accept_ra", "autoconf", "forwarding")


def read_ipv6_conf(names: list[str], proc: str = "/proc/sys/net/ipv6/conf") -> dict[str, dict[str, str]]:
    """Per-link IPv6 settings; a link without IPv6 (disabled, or no such folder) is left out."""
    conf: dict[str, dict[str, str]] = {}
    for name in names:
        if check_ifname(name) is not None and name != "all":
            continue
        values = {}
        for key in IPV6_CONF_KEYS:
            try:
                with open(os.path.join(proc, name, key), encoding="ascii") as handle:
                    values[key] = handle.read().strip()
            except (OSError, UnicodeDecodeError):
                continue
        if values:
            conf[name] = values
    return conf


def scan_host() -> Starter:
    """`init --from-host` on this machine."""
    try:
        with open("/etc/resolv.conf", "rb") as handle:
            resolv = handle.read()
    except OSError:
        resolv = b""
    with open("/proc/sys/net/ipv4/ip_forward", "rb") as handle:
        forwarding = handle.read().strip() == b"1"
    files = HostFiles("/")
    dialect = "ifupdown2" if os.path.isdir("/usr/share/ifupdown2") else "ifupdown"
    return starter_from_host(read_live_host(), files, resolv, socket.gethostname(), forwarding, dialect=dialect)


def starter_from_host(
    live: LiveHost,
    config: dict[str, bytes] | SourceFiles,
    resolv: bytes,
    hostname: str,
    ip_forward: bool,
    *,
    dialect: str = "ifupdown",
) -> Starter:
    """Bridge the NIC that carries the default route, keeping its addresses (both families), gateways and MAC."""
    route4, route6 = live.default_route(), live.default_route6()
    route = route4 if route4 is not None and "dev" in route4 else route6
    if route is None or "dev" not in route:
        raise KvmbridgeError(
            "this host has no default route (IPv4 or IPv6): cannot tell which NIC to bridge; "
            "start from `kvmbridge init` instead"
        )
    nic = str(route["dev"])
    link = live.link(nic) or {}
    notes: list[str] = [f"read from the running host: default route via {route.get('gateway', '?')} on {nic}"]
    if link.get("linkinfo", {}).get("info_kind") == "bridge":
        bridge, ports = nic, live.members(nic)
        notes.append(f"{nic} is already a bridge (ports: {', '.join(ports) or 'none'}); kept as it is")
    else:
        bridge, ports = _free_bridge_name(live), [nic]
    port = ports[0] if ports else nic
    files = DictFiles(config) if isinstance(config, dict) else config
    renderer, netplan_files = detect_renderer(files)
    if renderer == "ifupdown" and dialect == "ifupdown2":
        renderer = "ifupdown2"
    notes.append(f"renderer {renderer}: {RENDERER_EVIDENCE[renderer]}")
    parsed, problem = read_config(files, "ifupdown2" if renderer == "ifupdown2" else dialect)
    if problem:
        notes.append(problem)
    netplan = nic_settings(netplan_files, nic) if renderer == "netplan" else {}
    for found in netplan_files:
        if renderer == "netplan" and found.configures(nic) is not None:
            notes.append(
                f"{_printable(found.path)} configures {nic}: remove it there before installing (the bridge takes over)"
            )
    warnings: list[str] = []
    dns = _netplan_dns(netplan) or _dns(parsed, nic, resolv, warnings)
    others = [s for s in parsed.stanzas if s.name not in (nic, "lo", bridge, *ports)]
    for stanza in others:
        what = f"{_printable(stanza.file)}:{stanza.line} also configures {_printable(stanza.name)} ({stanza.family})"
        holds = _holdings(live, stanza.name, route4, route6)
        if holds and stanza.file == "/etc/network/interfaces":
            warnings.append(
                f"{what}, which holds {holds} now: not carried over, and the new /etc/network/interfaces "
                f"drops it, so {_printable(stanza.name)} loses them at the reboot; move that stanza (and its "
                f"auto line) to /etc/network/interfaces.d/{_printable(stanza.name)} before installing"
            )
        else:
            notes.append(f"{what}; not carried over")
    commands = [(stanza, option) for stanza in parsed.named(nic) for option in stanza.options]
    commands_at = len(warnings)
    mac = str(link.get("address", "")) or None
    values: dict[str, Any] = {
        "hostname": hostname.split(".", maxsplit=1)[0] if check_hostname(hostname) is None else "kvm01",
        "bridge": bridge,
        "port": port,
        "hwaddress": mac if mac and mac != "00:00:00:00:00:00" else None,
        "ip_forward": ip_forward,
        "renderer": renderer,
        "dns": tuple(dns),
    }
    values |= _ipv4_values(live, nic, _via(route4, nic), warnings)
    if netplan.get("dhcp4") is True and values["method"] != "dhcp":
        values |= {"method": "dhcp", "address": "", "gateway": ""}  # netplan says so, whatever the kernel flags
    values |= _ipv6_values(live, nic, _via(route6, nic), parsed, notes=notes, warnings=warnings, renderer=renderer)
    warnings[commands_at:commands_at] = _commands(commands, values, nic, notes)
    if values["method"] == "manual" and values.get("ipv6_method") and "ipv6_dns" not in values:
        values["ipv6_dns"] = tuple(dns)
    for name in (port, bridge):
        if check_ifname(name) is not None:
            raise KvmbridgeError(
                f"{_printable(name)}: the NIC's name cannot be used in a profile ({check_ifname(name)})"
            )
    # Every note and warning becomes one `# ` comment line of the printed profile: whatever host text
    # (file names, stanza words) they quote, none may start a line of TOML.
    return Starter(**values, notes=tuple(map(_printable, notes)), warnings=tuple(map(_printable, warnings)))


COMMANDS = ("pre-up", "up", "post-up", "down", "pre-down", "post-down")


def _commands(
    commands: list[tuple[interfaces_format.Stanza, interfaces_format.Option]],
    values: dict[str, Any],
    nic: str,
    notes: list[str],
) -> list[str]:
    """Warnings: the NIC's up/down commands are not carried; one adding an address the profile holds is a note."""
    warnings: list[str] = []
    carried = {
        ipaddress.IPv6Interface(a).ip
        for a in (values.get("ipv6_address"), *values.get("ipv6_extra_addresses", ()))
        if a
    }
    for stanza, option in commands:
        if option.name not in COMMANDS:
            continue
        where = f"{_printable(stanza.file)}:{option.line}: `{_printable(option.name)} {_printable(option.value)}`"
        if _adds_address(option.value, carried):
            notes.append(f"{where}: its address is carried in the profile's ipv6 keys; not carried over as a command")
            continue
        warnings.append(
            f"{where} in {_printable(nic)}'s {_printable(stanza.family)} stanza is not carried over; add it to a "
            "file the profile sources, for the bridge"
        )
    return warnings


def _adds_address(command: str, carried: set[ipaddress.IPv6Address]) -> bool:
    """`ip [-6] addr add ADDR ...` (or `del`, its undo) for an address the profile already holds."""
    words = command.split()
    if not words or words[0].rsplit("/", 1)[-1] != "ip" or not {"add", "del"} & set(words):
        return False
    if not [w for w in words[1:4] if w in ("addr", "address", "a")]:
        return False
    for word in words:
        try:
            if ipaddress.IPv6Interface(word).ip in carried:
                return True
        except ValueError:
            continue
    return False


def _holdings(live: LiveHost, name: str, route4: dict[str, Any] | None, route6: dict[str, Any] | None) -> str:
    """What a NIC the import leaves alone carries now: its global addresses and default routes."""
    held = [f"{a.get('local')}/{a.get('prefixlen')}" for a in live.ipv4(name) + live.ipv6(name)]
    held = [_printable(h) for h in held if not h.startswith("None")]
    held += [f"the {family} default route" for family, r in (("IPv4", route4), ("IPv6", route6)) if _via(r, name)]
    return ", ".join(held)


RENDERER_EVIDENCE = {
    "netplan": "netplan YAML configures devices in /etc/netplan",
    "ifupdown2": "ifupdown2 is installed",
    "ifupdown": "no netplan YAML, no ifupdown2",
}


def detect_renderer(files: SourceFiles) -> tuple[str, list[NetplanFile]]:
    """The stack this host already uses: netplan YAML present, else ifupdown2 installed, else ifupdown."""
    netplan_files = []
    for path in sorted(files.glob("/etc/netplan/*.yaml") + files.glob("/etc/netplan/*.yml")):
        data = _read(files, path)
        if data is not None:
            netplan_files.append(read_netplan(path, data))
    if any(f.devices for f in netplan_files):
        return "netplan", netplan_files
    if files.listdir("/usr/share/ifupdown2") is not None:
        return "ifupdown2", netplan_files
    return "ifupdown", netplan_files


def _read(files: SourceFiles, path: str) -> bytes | None:
    try:
        return files.read(path)
    except KvmbridgeError:  # unreadable, too large, not a regular file: no evidence
        return None


def _netplan_dns(settings: dict[str, Any]) -> list[str]:
    servers = settings.get("nameservers")
    found = servers.get("addresses") if isinstance(servers, dict) else None
    return [str(s) for s in found if _is_ip(str(s))] if isinstance(found, list) else []


def _via(route: dict[str, Any] | None, nic: str) -> dict[str, Any] | None:
    return route if route is not None and route.get("dev") == nic else None


def _ipv4_values(live: LiveHost, nic: str, route: dict[str, Any] | None, warnings: list[str]) -> dict[str, Any]:
    addresses = live.ipv4(nic)
    if route is None and not addresses:
        return {"method": "manual", "address": "", "gateway": "", "dns": ()}
    dynamic = bool(addresses and addresses[0].get("dynamic")) or (route or {}).get("protocol") == "dhcp"
    if dynamic or not addresses:
        if not addresses:
            warnings.append(f"{nic} has no IPv4 address now; DHCP assumed")
        for extra in [a for a in addresses if not a.get("dynamic")]:
            warnings.append(
                f"{nic} also has {_printable(str(extra.get('local')))}/{_printable(str(extra.get('prefixlen')))} "
                "beside its DHCP lease; "
                "a DHCP bridge holds only the lease, so it is not carried over"
            )
        return {"method": "dhcp"}
    info = addresses[0]
    address = f"{info['local']}/{info['prefixlen']}"
    if len(addresses) > 1:
        warnings.append(f"{nic} has {len(addresses)} IPv4 addresses; only {address} is carried over")
    return {"method": "static", "address": address, "gateway": str((route or {}).get("gateway", ""))}


def _ipv6_values(
    live: LiveHost,
    nic: str,
    route: dict[str, Any] | None,
    parsed: interfaces_format.Interfaces,
    *,
    notes: list[str],
    warnings: list[str],
    renderer: str,
) -> dict[str, Any]:
    """How the NIC got its IPv6 addresses, told apart by what the kernel shows.

    SLAAC addresses are dynamic with the kernel's `mngtmpaddr` (or a /64),
    DHCPv6 ones are dynamic /128s that dhclient added, static ones never
    expire. Privacy (temporary) addresses are SLAAC's too, and link-local
    addresses are never copied: every link makes its own.
    """
    conf = live.ipv6_conf.get(nic, {})
    values: dict[str, Any] = {"ipv6_forward": live.ipv6_conf.get("all", {}).get("forwarding") == "1"}
    stanza6 = next((stanza for stanza in parsed.named(nic) if stanza.family == "inet6"), None)
    configured = stanza6.method if stanza6 is not None else ""
    servers = (stanza6.get("dns-nameservers") or "") if stanza6 is not None else ""
    if [s for s in servers.split() if _is_ip(s)]:
        values["ipv6_dns"] = tuple(s for s in servers.split() if _is_ip(s))
    addresses = [a for a in live.ipv6(nic) if not a.get("temporary") and not a.get("dadfailed") and _ipv6_interface(a)]
    fixed = _static_as_the_rules_take([a for a in addresses if not a.get("dynamic")], nic, warnings)
    # A deprecated address (preferred_lft 0) is being renumbered away: the static method would make it
    # permanent and preferred again, so it is carried only when the NIC has nothing better.
    if any(not a.get("deprecated") for a in fixed):
        for old in [a for a in fixed if a.get("deprecated")]:
            warnings.append(f"{nic}'s {_ipv6_interface(old)} is deprecated (being renumbered away); not carried over")
        fixed = [a for a in fixed if not a.get("deprecated")]
    slaac = [a for a in addresses if a.get("dynamic") and (a.get("mngtmpaddr") or a.get("prefixlen") != 128)]
    leased = [a for a in addresses if a.get("dynamic") and a not in slaac]
    accept_ra = int(conf["accept_ra"]) if conf.get("accept_ra", "").isdigit() else None
    if fixed and configured in ("dhcp", "auto"):
        # The stanza's own method is the host's main address (a lease, SLAAC); extras need method static.
        for kept in fixed:
            warnings.append(
                f"{nic} also has static {_ipv6_interface(kept)} beside its inet6 {configured}; the profile keeps "
                f"{configured} (ipv6.extra_addresses need method static), so it is not carried over"
            )
        fixed = []
    if fixed or configured == "static":
        if not fixed:
            notes.append(f"{nic} has no static IPv6 address now; its inet6 static stanza is not carried over")
            return values
        # The order the host's config file gives, else a global address before a ULA (the one the world
        # reaches this host at), else the oldest first: the kernel lists the newest first.
        written = _written_ipv6(parsed, nic)
        order = {id(a): i for i, a in enumerate(fixed)}
        fixed.sort(
            key=lambda a: (
                bool(a.get("tentative")),
                written.get(ipaddress.IPv6Address(a["local"]), len(written)),
                ipaddress.IPv6Address(a["local"]) in ULA,
                -order[id(a)],
            )
        )
        address = str(_ipv6_interface(fixed[0]))
        extras = _at_most(
            tuple(dict.fromkeys(str(_ipv6_interface(a)) for a in fixed[1:] if a["local"] != fixed[0]["local"])),
            nic,
            warnings,
        )
        values |= {"ipv6_method": "static", "ipv6_address": address, "ipv6_extra_addresses": extras}
        if fixed[0].get("deprecated"):
            warnings.append(f"{address} is deprecated on {nic}, yet its only static IPv6 address: carried over")
        if route is not None and route.get("protocol") == "ra":
            notes.append(f"the IPv6 default route comes from router advertisements (accept_ra {accept_ra})")
            values["ipv6_accept_ra"] = accept_ra
        elif route is not None and _is_ip(str(route.get("gateway", ""))):
            values["ipv6_gateway"] = str(route["gateway"])
        if slaac or leased:
            warnings.append(f"{nic} also autoconfigures IPv6 addresses; the static method turns that off")
        return values
    method = "dhcp" if leased or configured == "dhcp" else "auto" if slaac or configured == "auto" else None
    if method is None:
        return values
    if accept_ra == 0:
        notes.append(f"{nic} ignores router advertisements (accept_ra 0) yet uses {method}; the stack's default kept")
        accept_ra = None
    elif accept_ra == 1 and values["ipv6_forward"]:
        notes.append(f"{nic} forwards IPv6 with accept_ra 1, so RAs are ignored there; accept_ra 2 written instead")
        accept_ra = 2
    values |= {"ipv6_method": method, "ipv6_accept_ra": accept_ra}
    if method == "dhcp" and renderer in ("ifupdown", "ifupdown2"):
        notes.append(
            f"DHCPv6 leases follow the client's DUID and IAID: the bridge's first dhclient starts from {nic}'s "
            f"DUID (/var/lib/dhcp/dhclient6.{nic}.leases) and the kept MAC gives the same IAID, so the server "
            "hands the same lease back"
        )
    elif method == "dhcp":
        notes.append(
            "DHCPv6 leases follow the client's DUID, which the bridge's client makes anew, and the reboot does "
            "not release the old lease: expect a new IPv6 address, unless you release it first and the server "
            "has a reservation by MAC"
        )
    return values


def _static_as_the_rules_take(fixed: list[dict[str, Any]], nic: str, warnings: list[str]) -> list[dict[str, Any]]:
    """Static addresses a profile may hold: an odd prefix (/0 ...) or an IPv4-mapped one is said, not carried."""
    kept = []
    for address in fixed:
        iface = _ipv6_interface(address)
        problem = host_address6(iface) if iface is not None else "not an IPv6 address"
        if problem is None:
            kept.append(address)
        else:
            warnings.append(f"{nic}'s {problem}; not carried over")
    return kept


def _at_most(extras: tuple[str, ...], nic: str, warnings: list[str]) -> tuple[str, ...]:
    if len(extras) <= MAX_EXTRA_ADDRESSES:
        return extras
    warnings.append(
        f"{nic} has {len(extras) + 1} static IPv6 addresses; a profile takes at most {MAX_EXTRA_ADDRESSES} extra "
        f"ones: {', '.join(extras[MAX_EXTRA_ADDRESSES:])} not carried over"
    )
    return extras[:MAX_EXTRA_ADDRESSES]


def _written_ipv6(parsed: interfaces_format.Interfaces, nic: str) -> dict[ipaddress.IPv6Address, int]:
    """The NIC's IPv6 addresses in the order its stanzas write them."""
    found: dict[ipaddress.IPv6Address, int] = {}
    for stanza in parsed.named(nic):
        for option in stanza.options:
            for word in option.value.split() if option.name == "address" else ():
                try:
                    found.setdefault(ipaddress.IPv6Interface(word).ip, len(found))
                except ValueError:
                    continue
    return found


def _free_bridge_name(live: LiveHost) -> str:
    names = live.link_names()
    return next(f"br{i}" for i in range(100) if f"br{i}" not in names)


def read_config(files: SourceFiles, dialect: str = "ifupdown") -> tuple[interfaces_format.Interfaces, str | None]:
    """/etc/network/interfaces and what it sources, as the host's ifupdown (or ifupdown2) reads them.

    Never raises: a file the tool refuses gives an empty reading and one line saying where and why.
    """
    load = ifupdown2.load if dialect == "ifupdown2" else interfaces_format.load
    try:
        return load("/etc/network/interfaces", files), None
    except interfaces_format.InterfacesError as exc:
        if exc.line == 0 and exc.reason == "couldn't open interfaces file" and exc.file == "/etc/network/interfaces":
            return interfaces_format.Interfaces(), None
        return (
            interfaces_format.Interfaces(),
            f"{_printable(str(exc))} ({dialect} refuses this file; nothing carried over from it)",
        )


def _printable(text: str) -> str:
    if text.isprintable():
        return text
    raw = text.encode("utf-8", "surrogateescape").decode("ascii", "backslashreplace")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in raw)


def _dns(parsed: interfaces_format.Interfaces, nic: str, resolv: bytes, warnings: list[str]) -> list[str]:
    """The NIC's dns-nameservers from ifupdown's config, else resolv.conf's (not a local stub)."""
    for stanza in parsed.named(nic):
        servers = stanza.get("dns-nameservers") if stanza.family == "inet" else None
        if servers is not None:
            return [s for s in servers.split() if _is_ip(s)]
    found = []
    for line in resolv.decode("utf-8", "replace").splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver" and _link_local(parts[1]):
            warnings.append(
                f"resolv.conf's nameserver {parts[1]} is link-local (reached through one link, the NIC the bridge "
                "takes over): not carried over; name a routable server in dns"
            )
            continue
        if (
            len(parts) >= 2
            and parts[0] == "nameserver"
            and _is_ip(parts[1])
            and not ipaddress.ip_address(parts[1]).is_loopback
        ):
            found.append(parts[1])
    return found[:3]


def _link_local(text: str) -> bool:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0]).is_link_local
    except ValueError:
        return False


def _ipv6_interface(info: dict[str, Any]) -> ipaddress.IPv6Interface | None:
    """`ip -j` output is data: only a well-formed address reaches the profile text."""
    try:
        return ipaddress.IPv6Interface(f"{info.get('local')}/{info.get('prefixlen')}")
    except ValueError:
        return None


def _is_ip(text: str) -> bool:
    """An address a profile may hold: a zone index (fe80::1%eth0 in resolv.conf) is refused by the rules."""
    if "%" in text:
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
