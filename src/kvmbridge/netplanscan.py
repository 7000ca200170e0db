"""What a target's netplan files say: which devices each configures, and with which renderer.

Read through the netplan format's one parser; the safety checks and
`init --from-host` turn these facts into findings and a starter profile.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any

from .formats import netplan

DEVICE_KINDS = (
    "ethernets",
    "bridges",
    "bonds",
    "vlans",
    "wifis",
    "tunnels",
    "vrfs",
    "modems",
    "dummy-devices",
    "virtual-ethernets",
    "nm-devices",
)


@dataclass(frozen=True)
class NetplanFile:
    """`devices`: netplan ID → its definition; `names`: interface names or globs each ID matches."""

    path: str
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)
    names: dict[str, tuple[str, ...]] = field(default_factory=dict)
    renderers: frozenset[str] = frozenset()
    problem: str | None = None

    def configures(self, name: str) -> str | None:
        """The netplan ID that would configure interface `name`, if any."""
        for device, patterns in self.names.items():
            if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns):
                return device
        return None


def read_netplan(path: str, data: bytes) -> NetplanFile:
    """Never raises: a file netplan itself would refuse says why in `problem`."""
    try:
        document = netplan.parse(data)
    except Exception as exc:  # any YAML or shape error: report it, do not crash the checks
        return NetplanFile(path, problem=f"does not parse as YAML ({type(exc).__name__})")
    network = document.get("network")
    if not isinstance(network, dict):
        return NetplanFile(path)
    devices: dict[str, dict[str, Any]] = {}
    names: dict[str, tuple[str, ...]] = {}
    renderers = {str(network["renderer"])} if isinstance(network.get("renderer"), str) else set()
    for kind in DEVICE_KINDS:
        group = network.get(kind)
        if not isinstance(group, dict):
            continue
        if isinstance(group.get("renderer"), str):
            renderers.add(str(group["renderer"]))
        for device, definition in group.items():
            if not isinstance(definition, dict):
                definition = {}  # noqa: PLW2901 - `eth0: {}` and `eth0:` (null) mean the same
            devices[str(device)] = definition
            names[str(device)] = _matched_names(str(device), definition)
            if isinstance(definition.get("renderer"), str):
                renderers.add(str(definition["renderer"]))
    return NetplanFile(path, devices, names, frozenset(renderers))


def _matched_names(device: str, definition: dict[str, Any]) -> tuple[str, ...]:
    """A device's ID, `match: name` and `set-name`; the ID counts even beside a `match:` by MAC
    (admins name IDs after the NIC, and a safety check errs on the side of a finding)."""
    found = [device]
    match = definition.get("match")
    if isinstance(match, dict) and isinstance(match.get("name"), str):
        found.append(str(match["name"]))
    if isinstance(definition.get("set-name"), str):
        found.append(str(definition["set-name"]))
    return tuple(found)


def nic_settings(files: list[NetplanFile], nic: str) -> dict[str, Any]:
    """The definition netplan applies to `nic` (later files win, key by key at the top level)."""
    merged: dict[str, Any] = {}
    for parsed in sorted(files, key=lambda f: f.path.rsplit("/", 1)[-1]):
        device = parsed.configures(nic)
        if device is not None:
            merged |= parsed.devices[device]
    return merged
