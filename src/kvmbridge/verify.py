"""Check a rendered file set with the real parsers our users' hosts run.

Each checker is skipped (with a note) when its program or schema is not
installed; `cli` decides whether a skip is acceptable.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .fileset import RenderedSet

NETWORK_RNG = Path("/usr/share/libvirt/schemas/network.rng")


@dataclass
class Verdict:
    errors: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def verify(files: RenderedSet, expected_auto: list[str], schema: Path = NETWORK_RNG) -> Verdict:
    verdict = Verdict()
    _check_xml(files, schema, verdict)
    _check_interfaces(files, expected_auto, verdict)
    return verdict


def _check_xml(files: RenderedSet, schema: Path, verdict: Verdict) -> None:
    xml_files = [f for f in files if f.data is not None and f.path.endswith(".xml")]
    if not xml_files:
        return
    if not schema.is_file():
        verdict.skipped.append(f"libvirt RelaxNG schema {schema} not found (install libvirt-daemon)")
        return
    from lxml import etree

    relaxng = etree.RelaxNG(etree.parse(str(schema)))
    for f in xml_files:
        assert f.data is not None
        doc = etree.fromstring(f.data)
        if not relaxng.validate(doc):
            error = relaxng.error_log.last_error
            verdict.errors.append(f"{f.relpath}: libvirt schema: {error.message if error else 'invalid'}")
    verdict.checked.append(f"libvirt RelaxNG ({schema.name})")


def _check_interfaces(files: RenderedSet, expected_auto: list[str], verdict: Verdict) -> None:
    ifquery = shutil.which("ifquery") or shutil.which("ifquery", path="/usr/sbin:/sbin")
    if ifquery is None:
        verdict.skipped.append("ifquery not found (install ifupdown)")
        return
    interfaces = next(f for f in files if f.path == "/etc/network/interfaces")
    assert interfaces.data is not None
    with tempfile.NamedTemporaryFile(prefix="kvmbridge-interfaces-") as tmp:
        tmp.write(_without_sources(interfaces.data))
        tmp.flush()
        result = subprocess.run([ifquery, "-i", tmp.name, "--list", "-a"], capture_output=True, text=True, check=False)
    # ifquery reports many parse errors on stderr yet exits 0: any complaint is an error.
    complaints = [line for line in result.stderr.splitlines() if line.strip()]
    if result.returncode != 0 or complaints:
        for line in complaints or ["failed"]:
            verdict.errors.append(f"{interfaces.relpath}: {line.replace(tmp.name, interfaces.relpath)}")
        return
    listed = set(result.stdout.split())
    missing = [name for name in expected_auto if name not in listed]
    if missing:
        verdict.errors.append(f"{interfaces.relpath}: ifquery does not list auto interfaces {', '.join(missing)}")
    verdict.checked.append("ifupdown (ifquery)")


def _without_sources(data: bytes) -> bytes:
    """Our file alone: its `source` lines name the target's files, not this machine's.

    (What the target's sourced files say is the safety checks' business.)
    """
    lines = data.split(b"\n")
    return b"\n".join(b"# " + line if line.startswith((b"source ", b"source-directory ")) else line for line in lines)
