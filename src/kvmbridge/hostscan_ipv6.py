"""How `init --from-host` carries a NIC's IPv6 addresses into the profile.

Split from `hostscan` by job: static, SLAAC and DHCPv6 told apart from what the
kernel shows, and only what the rules accept carried over.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from .formats import interfaces as interfaces_format
from .livehost import LiveHost
from .rules_address import MAX_EXTRA_ADDRESSES, host_address6

ULA = ipaddress.IPv6Network("fc00::/7")


def ipv6_values(
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
    if [s for s in servers.split() if is_ip(s)]:
        values["ipv6_dns"] = tuple(s for s in servers.split() if is_ip(s))
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
        elif route is not None and is_ip(str(route.get("gateway", ""))):
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


def _ipv6_interface(info: dict[str, Any]) -> ipaddress.IPv6Interface | None:
    """`ip -j` output is data: only a well-formed address reaches the profile text."""
    try:
        return ipaddress.IPv6Interface(f"{info.get('local')}/{info.get('prefixlen')}")
    except ValueError:
        return None


def is_ip(text: str) -> bool:
    """An address a profile may hold: a zone index (fe80::1%eth0 in resolv.conf) is refused by the rules."""
    if "%" in text:
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
