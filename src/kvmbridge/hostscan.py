"""Turn the running host's facts into a starter profile (`init --from-host`).

Reading (`livehost.read_live_host`) is separate from interpreting (`starter_from_host`)
so tests feed `ip -j` output captured from namespaces they build.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from typing import Any

from .errors import KvmbridgeError
from .formats import ifupdown2
from .formats import interfaces as interfaces_format
from .formats.ifupdown_sources import DictFiles, HostFiles, SourceFiles
from .hostscan_ipv6 import ipv6_values, is_ip
from .livehost import LiveHost, read_live_host
from .netplanscan import NetplanFile, nic_settings, read_netplan
from .rules import check_hostname, check_ifname
from .starter import Starter


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
    values |= ipv6_values(live, nic, _via(route6, nic), parsed, notes=notes, warnings=warnings, renderer=renderer)
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
    return [str(s) for s in found if is_ip(str(s))] if isinstance(found, list) else []


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
            return [s for s in servers.split() if is_ip(s)]
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
            and is_ip(parts[1])
            and not ipaddress.ip_address(parts[1]).is_loopback
        ):
            found.append(parts[1])
    return found[:3]


def _link_local(text: str) -> bool:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0]).is_link_local
    except ValueError:
        return False
