"""Safety checks of a netplan target: other netplan files, a NetworkManager renderer, and an
`interfaces` file ifupdown would apply beside systemd-networkd. Read-only, like every check."""

from __future__ import annotations

from collections.abc import Iterator

from .findings import Finding
from .formats.netplan import NETPLAN_FILE
from .hostscan import read_config
from .model import HostProfile
from .netplanscan import read_netplan
from .root import Root
from .rootfiles import RootFiles, read_dpkg_status, root_files
from .state import State


def netplan_files(profile: HostProfile, root: Root, owned: dict[str, str]) -> Iterator[Finding]:
    """Other netplan files: on a netplan target they merge into ours; elsewhere netplan owns the NIC."""
    ours = profile.renderer == "netplan"
    for path, data in root_files(root, "/etc/netplan/*.yaml") + root_files(root, "/etc/netplan/*.yml"):
        if ours and path == NETPLAN_FILE:
            continue
        parsed = read_netplan(path, data)
        if parsed.problem is not None:
            yield Finding(
                "KB102",
                "error",
                path,
                f"netplan file {parsed.problem}: netplan refuses to generate anything at boot",
                f"fix or remove {path}",
            )
            continue
        for name, what in owned.items():
            if parsed.configures(name) is None:
                continue
            effect = (
                "netplan merges it into kvmbridge's definition at boot"
                if ours
                else "netplan's renderer would own it at boot, not ifupdown"
            )
            yield Finding(
                "KB102",
                "error",
                name,
                f"netplan ({path}) also configures this {what}; {effect}",
                f"remove {name} from {path}" + ("" if ours else " (or remove netplan)"),
            )
        if ours and "NetworkManager" in parsed.renderers:
            yield Finding(
                "KB120",
                "error",
                path,
                "sets renderer: NetworkManager; kvmbridge's netplan file needs systemd-networkd",
                f"remove the renderer line from {path}, or its devices if NetworkManager must keep them",
            )


def interfaces_also_applied(root: Root, state: State, owned: dict[str, str]) -> Iterator[Finding]:
    """On a netplan target, ifupdown (when installed) still brings up what `interfaces` configures.

    An `interfaces` kvmbridge wrote is removed by the same install (it is in the state), and with it
    the `source` lines that would pull in anything else.
    """
    packages = read_dpkg_status(root)
    if "/etc/network/interfaces" in state.files or (packages is not None and not packages & {"ifupdown", "ifupdown2"}):
        return
    parsed, _ = read_config(RootFiles(root))
    for stanza in parsed.stanzas:
        if stanza.name in owned:
            yield Finding(
                "KB121",
                "error",
                stanza.name,
                f"{stanza.file}:{stanza.line} configures this {owned[stanza.name]} for ifupdown too; "
                "ifupdown and systemd-networkd would both configure it at boot",
                f"remove the {stanza.name} stanza from {stanza.file} (or remove ifupdown)",
            )
