"""Check a rendered file set with the real parsers our users' hosts run.

Each format names its validator in `formats`; `verify` runs the validator of
every format the set holds. A validator whose program or schema is not
installed is skipped (with a note); `cli` decides whether a skip is acceptable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .fileset import RenderedFile, RenderedSet
from .model import HostProfile

if TYPE_CHECKING:
    import subprocess

NETWORK_RNG = Path("/usr/share/libvirt/schemas/network.rng")


@dataclass
class Verdict:
    errors: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def verify(files: RenderedSet, profile: HostProfile) -> Verdict:
    verdict = Verdict()
    by_format: dict[str, list[RenderedFile]] = {}
    for f in files:
        if f.data is not None:
            by_format.setdefault(f.format, []).append(f)
    from .formats import FORMATS

    for fmt in FORMATS:
        if fmt.validate is not None and fmt.name in by_format:
            fmt.validate(by_format[fmt.name], profile, verdict)
    return verdict


def relaxng(files: Sequence[RenderedFile], profile: HostProfile, verdict: Verdict) -> None:
    """libvirt's own RelaxNG schema for network XML, through lxml."""
    if not NETWORK_RNG.is_file():
        verdict.skipped.append(f"libvirt RelaxNG schema {NETWORK_RNG} not found (install libvirt-daemon)")
        return
    from lxml import etree

    schema = etree.RelaxNG(etree.parse(str(NETWORK_RNG)))
    for f in files:
        assert f.data is not None
        doc = etree.fromstring(f.data)
        if not schema.validate(doc):
            error = schema.error_log.last_error
            verdict.errors.append(f"{f.relpath}: libvirt schema: {error.message if error else 'invalid'}")
    verdict.checked.append(f"libvirt RelaxNG ({NETWORK_RNG.name})")


def ifquery(files: Sequence[RenderedFile], profile: HostProfile, verdict: Verdict) -> None:
    """ifupdown's own parser lists every auto interface of our file."""
    import shutil

    found = shutil.which("ifquery") or shutil.which("ifquery", path="/usr/sbin:/sbin")
    if found is None:
        verdict.skipped.append("ifquery not found (install ifupdown)")
        return
    for interfaces in files:
        result, copy = _run_on_copy(interfaces, [found, "-i", "{}", "--list", "-a"])
        # ifquery reports many parse errors on stderr yet exits 0: any complaint is an error.
        complaints = [line for line in result.stderr.splitlines() if line.strip()]
        if result.returncode != 0 or complaints:
            for line in complaints or ["failed"]:
                verdict.errors.append(f"{interfaces.relpath}: {line.replace(copy, interfaces.relpath)}")
            return
        listed = set(result.stdout.split())
        missing = [name for name in ["lo", *profile.bridges] if name not in listed]
        if missing:
            verdict.errors.append(f"{interfaces.relpath}: ifquery does not list auto interfaces {', '.join(missing)}")
    verdict.checked.append("ifupdown (ifquery)")


def _run_on_copy(interfaces: RenderedFile, argv: list[str]) -> tuple[subprocess.CompletedProcess[str], str]:
    """Run a checker on a temporary copy of our file alone (`{}` in argv is its name); the name is
    returned so its output can be reworded with the real path."""
    import subprocess
    import tempfile

    assert interfaces.data is not None
    with tempfile.NamedTemporaryFile(prefix="kvmbridge-interfaces-") as tmp:
        tmp.write(_without_sources(interfaces.data))
        tmp.flush()
        command = [tmp.name if arg == "{}" else arg for arg in argv]
        return subprocess.run(command, capture_output=True, text=True, check=False), tmp.name


def _without_sources(data: bytes) -> bytes:
    """Our file alone: its `source` lines name the target's files, not this machine's.

    (What the target's sourced files say is the safety checks' business.)
    """
    lines = data.split(b"\n")
    return b"\n".join(b"# " + line if line.startswith((b"source ", b"source-directory ")) else line for line in lines)


def ifupdown2_syntax(files: Sequence[RenderedFile], profile: HostProfile, verdict: Verdict) -> None:
    """ifupdown2's own parser, `ifup --syntax-check` (ifupdown2 cannot share a machine with ifupdown).

    Only ifup/ifdown/ifreload take --syntax-check in ifupdown2 3.0; ifquery does not.
    """
    import shutil

    found = shutil.which("ifup") or shutil.which("ifup", path="/usr/sbin:/sbin")
    if found is None or not _is_ifupdown2(found):
        verdict.skipped.append("ifupdown2's ifup not found (it is installed on ifupdown2 hosts only)")
        return
    for interfaces in files:
        for _ in range(_NETLINK_TRIES):
            result, copy = _run_on_copy(interfaces, [found, "-i", "{}", "--syntax-check", "-a"])
            # It warns about an invalid value and still parses on; any warning or error is a complaint.
            complaints = [
                line
                for line in (result.stderr + result.stdout).splitlines()
                if line.lower().startswith(("error", "warn"))
            ]
            if not complaints or not all(_NETLINK_HICCUP in line for line in complaints):
                break
        if result.returncode != 0 or complaints:
            for line in complaints or result.stderr.splitlines() or ["failed"]:
                verdict.errors.append(f"{interfaces.relpath}: {line.replace(copy, interfaces.relpath)}")
            return
    verdict.checked.append("ifupdown2 (ifup --syntax-check)")


# ifupdown2 fills a netlink cache even for --syntax-check; a busy host's `recv()` on that socket
# sometimes fails (EINVAL seen in 1 of ~30 booted-image runs): no word about our file, so asked again.
_NETLINK_HICCUP = "recv() error"
_NETLINK_TRIES = 3


def _is_ifupdown2(ifquery: str) -> bool:
    """ifupdown's ifup is a binary; ifupdown2's is a Python script."""
    try:
        with open(ifquery, "rb") as handle:
            return handle.read(2) == b"#!"
    except OSError:
        return False
