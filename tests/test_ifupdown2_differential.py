"""Differential: our ifupdown2 dialect against ifupdown2's own `ifquery -o json` (3.0, Debian 12),
run inside the ifupdown2 image of the lab (tests/imagelab.py), on the corpus and on
hand-written ifupdown2 constructs (family-less stanzas, ranges, globs, vlan stanzas,
aligned netmasks, `$IFACE`, duplicates, templates).

As with ifupdown: our reading is written back out and ifupdown2 is asked about
both files; its JSON for every stanza (name, family, method, auto, options with
values in order) must be the same, or both must refuse the file. ifupdown2 takes
about a second per question, so CI asks about the files written in ifupdown2's
own style; KVMBRIDGE_IFUPDOWN2_FULL=1 asks about the whole corpus.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from kvmbridge.formats import ifupdown2
from kvmbridge.formats.interfaces import Interfaces, InterfacesError

from .conftest import require_root, require_tool
from .interfaces_grammar import ifupdown2_files

CORPUS = Path(__file__).parent / "data/interfaces-corpus"
STYLE = ("ifupdown2-", "ifupdown-ng-", "host-")
ALL = sorted(p.name for p in CORPUS.iterdir() if p.name != "INDEX.md")
FILES = ALL if os.environ.get("KVMBRIDGE_IFUPDOWN2_FULL") == "1" else [n for n in ALL if n.startswith(STYLE)]

CONSTRUCTS = {
    "family-less": b"auto swp1\niface swp1\n    mtu 9000\n    alias uplink one\n",
    "range": b"auto swp[1-3]\niface swp[1-3]\n    up echo $IFACE  ok\n",
    "glob-ports": b"auto br0\niface br0\n    bridge-vlan-aware yes\n    bridge_ports glob swp1-4 swp[7-8] eth0\n",
    "aligned": b"iface br0 inet\n    address 198.51.100.2/24\n    mtu 1500\n    address 198.51.100.3\n    netmask 255.255.255.0\n",
    "duplicate": b"iface eth0 inet dhcp\niface eth0 inet dhcp\niface eth0 inet6 dhcp\niface eth0 inet static\n  address 198.51.100.9/24\n",
    "vlan": b"auto br0.10\nvlan br0.10\n    bridge-igmp-querier-src 198.51.100.1\n",
    "continuation": b"iface br0\n    bridge-ports eth0 \\\n        eth1\n    up echo a\\b\n",
    "alias-name": b"iface eth0:1 inet static\n    address 198.51.100.4/24\n",
    "comments-tabs": b"# c\n\tauto\tbr0\n\tiface br0 inet manual\n\t\t# inside\n\t\tmtu\t1400\n",
    "bad-method": b"iface br0 inet auto\n",
    "bad-family": b"iface br0 link manual\n",
    "template": b"%for i in range(2):\niface swp${i}\n%endfor\n",
    "mapping": b"mapping eth0\n  script /bin/true\n",
    "empty-option": b"iface br0\n    mtu\n",
}


@pytest.fixture(scope="module")
def ifupdown2_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    require_root()
    require_tool("unshare")
    from .imagelab import image, unmount

    root = image("ifupdown2").mount(tmp_path_factory.mktemp("ifupdown2"))
    try:
        yield root
    finally:
        unmount(root)


def _names(raw: bytes, parsed: Interfaces | None) -> list[str]:
    found = {m.decode().split(":")[0] for m in re.findall(rb"^\s*(?:iface|vlan)\s+(\S+)", raw, re.M)}
    if parsed is not None:
        found |= {s.name for s in parsed.stanzas}
    return sorted(n for n in found if "[" not in n and "$" not in n)


def _ask(root: Path, files: dict[str, bytes], names: list[str]) -> dict[str, tuple[object, str]]:
    """ifquery -o json about every name, for each file, two at a time; (parsed JSON, stderr)."""
    from .imagelab import chroot

    work = root / "kb"
    work.mkdir(exist_ok=True)
    lines = []
    for key, data in files.items():
        (work / key).write_bytes(data)
        args = " ".join(shlex.quote(n) for n in names) or "-a"
        lines.append(f"ifquery -i /kb/{key} {args} -o json >/kb/{key}.json 2>/kb/{key}.err; true")
    (work / "jobs").write_text("\n".join(lines) + "\n")
    chroot(root, "cd /kb && xargs -P 2 -I{} sh -c '{}' < jobs", timeout=600)
    out = {}
    for key in files:
        text = (work / f"{key}.json").read_text()
        out[key] = (json.loads(text) if text.strip() else None, (work / f"{key}.err").read_text())
    return out


def compare(root: Path, raw: bytes, tag: str) -> tuple[bool, str]:
    try:
        parsed: Interfaces | None = ifupdown2.parse(raw, f"/kb/{tag}-orig")
        error = None
    except InterfacesError as exc:
        parsed, error = None, exc
    names = _names(raw, parsed)
    files = {f"{tag}-orig": raw}
    if parsed is not None:
        files[f"{tag}-ours"] = ifupdown2.write(parsed).encode()
    answers = _ask(root, files, names)
    theirs, errors = answers[f"{tag}-orig"]
    complaints = [line for line in errors.splitlines() if line.startswith(f"error: /kb/{tag}-orig")]
    if error is not None:
        # ifupdown2 crashes on some lines (a bare `iface`: IndexError) instead of naming them.
        crashed = [
            line
            for line in errors.splitlines()
            if line.startswith("error: main exception") and "no ifaces found" not in line and "cannot find" not in line
        ]
        if crashed and not complaints:
            return True, f"both refuse; ifupdown2 crashed: {crashed}"
        if error.reason.startswith("ifupdown2 template"):  # refused on purpose; ifupdown2 here has no mako either
            return (bool(complaints), f"we refuse templates; ifupdown2: {complaints}")
        if error.line and f"line{error.line}: {error.reason}" not in errors:
            return False, f"we refuse ({error}) but ifupdown2 says {complaints or 'nothing'}"
        return (bool(complaints), f"we refuse ({error}); ifupdown2: {complaints}")
    if complaints:
        return False, f"ifupdown2 refuses ({complaints}) but we read it"
    ours, our_errors = answers[f"{tag}-ours"]
    if ours != theirs:
        return False, f"readings differ:\nifupdown2: {theirs}\nours:      {ours}\n{our_errors}"
    return True, "same reading"


@pytest.mark.parametrize("name", FILES)
def test_corpus_file_reads_as_ifupdown2_reads_it(name: str, ifupdown2_root: Path) -> None:
    agree, why = compare(ifupdown2_root, (CORPUS / name).read_bytes(), name)
    assert agree, why


@pytest.mark.parametrize("name", sorted(CONSTRUCTS))
def test_ifupdown2_construct_reads_as_ifupdown2_reads_it(name: str, ifupdown2_root: Path) -> None:
    agree, why = compare(ifupdown2_root, CONSTRUCTS[name], f"construct-{name}")
    assert agree, why


def test_the_ifupdown2_comparison_catches_a_dropped_option(ifupdown2_root: Path) -> None:
    raw = CONSTRUCTS["glob-ports"]
    parsed = ifupdown2.parse(raw)
    damaged = ifupdown2.write(parsed).replace("    bridge-vlan-aware yes\n", "")
    answers = _ask(ifupdown2_root, {"sens-orig": raw, "sens-ours": damaged.encode()}, ["br0"])
    assert answers["sens-orig"][0] != answers["sens-ours"][0]


def test_bridge_ports_globs_and_ranges_expand_as_ifupdown2_expands_them() -> None:
    assert ifupdown2.bridge_ports("glob swp1-3 eth0 glob swp[7-8].10 regex eno.*", ["eno1", "eth9"]) == [
        "swp1",
        "swp2",
        "swp3",
        "eth0",
        "swp7.10",
        "swp8.10",
        "eno1",
    ]


GENERATED = int(os.environ.get("KVMBRIDGE_IFUPDOWN2_EXAMPLES", "8"))


@settings(
    max_examples=GENERATED,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(ifupdown2_files())
def test_generated_ifupdown2_file_reads_as_ifupdown2_reads_it(ifupdown2_root: Path, raw: bytes) -> None:
    agree, why = compare(ifupdown2_root, raw, "generated")
    assert agree, f"{raw!r}\n{why}"
