"""What kvmbridge knows about each file format it writes, in one place.

A `Format` carries the one parser (semantic diff, round-trip tests, reading
an existing host), how a change reads to a human, the check every render
passes, the external validator (a real program or schema), and the commands
that would activate a changed file now. `targets` maps destinations to
formats; nothing else branches on a path or a format name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .. import verify
from ..fileset import RenderedFile
from ..model import HostProfile
from . import ifupdown2, interfaces_semantic, netplan, netxml, sysctl, udev

Validator = Callable[[Sequence[RenderedFile], HostProfile, "verify.Verdict"], None]


def _same(parsed: Any) -> Any:
    return parsed


def _accept(template: str, data: bytes) -> None:
    return None


def _nothing(paths: Sequence[str]) -> list[str]:
    return []


@dataclass(frozen=True)
class Format:
    """`parse` returns a plain normalized structure (None: no parser, compare bytes only).

    `describe_view` reshapes a parsed file for the human summary of a change;
    `check_render` raises a KvmbridgeError on a render that can never work
    (at render time, not at boot); `validate` runs the real program over the
    rendered files of this format; `activate` lists the commands that would
    apply changed `paths` now (shown, never run).
    """

    name: str
    parse: Callable[[bytes], Any] | None = None
    describe_view: Callable[[Any], Any] = _same
    check_render: Callable[[str, bytes], None] = _accept
    validate: Validator | None = None
    activate: Callable[[Sequence[str]], list[str]] = _nothing


def _udev_view(rules: list[list[tuple[str, str, str]]]) -> Any:
    """A rule reads best whole: `rules added: ACTION=="add", ...`."""
    return {"rules": {", ".join(f'{k}{op}"{val}"' for k, op, val in rule) for rule in rules}}


def _networks_now(paths: Sequence[str]) -> list[str]:
    names = sorted(path.rsplit("/", 1)[1].removesuffix(".xml") for path in paths)
    return [f"virsh net-define {netxml.NETWORKS_DIR}/{name}.xml && virsh net-start {name}" for name in names]


IFUPDOWN = Format(
    "interfaces",
    interfaces_semantic.parse_semantic,
    validate=verify.ifquery,
    activate=lambda paths: ["systemctl restart networking"],
)
IFUPDOWN2 = Format(
    "interfaces-ifupdown2",
    ifupdown2.parse_semantic,
    validate=verify.ifupdown2_syntax,
    activate=lambda paths: ["ifreload -a"],
)
NETPLAN = Format(
    "netplan",
    netplan.parse,
    validate=netplan.generate,
    activate=lambda paths: ["netplan apply"],
)
SYSCTL = Format("sysctl", sysctl.parse, activate=lambda paths: ["sysctl --system"])
UDEV = Format("udev", udev.parse, describe_view=_udev_view, activate=lambda paths: ["udevadm control --reload"])
NETXML = Format(
    "netxml", netxml.parse, check_render=netxml.check_well_formed, validate=verify.relaxng, activate=_networks_now
)
LINK = Format("link")
TEXT = Format("text")

FORMATS: tuple[Format, ...] = (IFUPDOWN, IFUPDOWN2, NETPLAN, SYSCTL, UDEV, NETXML, LINK)


def named(name: str) -> Format:
    """The format a rendered file names; plain text for a name no format has."""
    return next((f for f in FORMATS if f.name == name), TEXT)
