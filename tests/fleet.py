"""Generate a varied fleet of valid profiles (tests and benchmarks share it)."""

from __future__ import annotations

from pathlib import Path


def fleet_profile(i: int) -> str:
    """Host i: static or DHCP, one or two bridges, filter on or off, 1-2 networks."""
    third, host = divmod(i, 200)
    lines = [f'hostname = "host{i}"', "", "[sysctl]", f"ip_forward = {'true' if i % 3 == 0 else 'false'}", ""]
    lines += ["[netfilter]", f"filter_bridged_traffic = {'true' if i % 5 == 0 else 'false'}", ""]
    lines += ["[bridges.br0]", f'ports = ["eno{i % 4 + 1}"]']
    if i % 2:
        lines += [f'hwaddress = "eno{i % 4 + 1}"', 'ipv4 = { method = "dhcp" }']
    else:
        lines += [
            f'ipv4 = {{ method = "static", address = "10.{third}.{host}.2/24", gateway = "10.{third}.{host}.1" }}'
        ]
    if i % 4 == 0:
        lines += ["", "[bridges.br1]", 'ports = ["eno9", "eno10"]', "stp = true", "forward_delay = 15"]
    lines += ["", "[networks.lan]", 'bridge = "br0"']
    if i % 4 == 0:
        lines += ["", "[networks.lab]", 'bridge = "br1"', "autostart = false"]
    return "\n".join(lines) + "\n"


def write_fleet(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"host{i:04d}.toml"
        path.write_text(fleet_profile(i))
        paths.append(path)
    return paths
