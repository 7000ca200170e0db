"""The starter profile printed by `init`: the source article's setup by default."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from .render import environment


@dataclass(frozen=True)
class Starter:
    hostname: str = "kvm01"
    bridge: str = "br0"
    port: str = "eth0"
    method: str = "static"
    address: str = "10.0.0.2/24"
    gateway: str = "10.0.0.1"
    dns: tuple[str, ...] = ("10.0.0.1",)
    hwaddress: str | None = None
    ip_forward: bool = True
    ipv6_forward: bool = False
    ipv6_method: str | None = None  # None: no ipv6 block
    ipv6_address: str = ""
    ipv6_extra_addresses: tuple[str, ...] = ()
    ipv6_gateway: str = ""
    ipv6_accept_ra: int | None = None
    ipv6_dns: tuple[str, ...] = ()
    renderer: str = "ifupdown"
    notes: tuple[str, ...] = field(default_factory=tuple)
    warnings: tuple[str, ...] = field(default_factory=tuple)  # what the import drops: also said on stderr


def starter_profile(values: Starter | None = None, templates: Path | None = None) -> str:
    fields = asdict(values or Starter())
    fields["notes"] = [one_line(note) for note in fields["notes"]]
    fields["warnings"] = [one_line(warning) for warning in fields["warnings"]]
    return environment(templates).get_template("profile.toml.j2").render(fields)


def one_line(text: str) -> str:
    """`text` for a `# ` comment line: every character a line break could hide in, escaped."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
