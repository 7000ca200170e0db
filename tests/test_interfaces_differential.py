"""Differential: our reading of interfaces files against the real ifupdown 0.8.41 (ifquery,
`ifup --no-act`), on a corpus of public real-world files and on generated ones.

Each file is read by our parser, written back out, and both the original and
the written reading are put to the same questions (see ifupdown_oracle): the
answers must be identical, or ifupdown and we must both refuse the file at the
same line for the same reason. The sensitivity tests damage our reading on
purpose and expect the comparison to catch it.

KVMBRIDGE_DIFF_EXAMPLES sets the number of generated files (CI default 150).
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from kvmbridge.formats.interfaces import Interfaces, InterfacesError, parse

from .conftest import require_tool
from .ifupdown_oracle import compare
from .interfaces_grammar import interfaces_files

CORPUS = Path(__file__).parent / "data/interfaces-corpus"
CORPUS_FILES = sorted(p.name for p in CORPUS.iterdir() if p.name != "INDEX.md")
EXAMPLES = int(os.environ.get("KVMBRIDGE_DIFF_EXAMPLES", "150"))

# Mapping scripts in generated files: print what ifup hands them, map every name to itself.
RECORDER_DIR = tempfile.mkdtemp(prefix="kvmbridge-mapping-")
RECORDER = f"{RECORDER_DIR}/recorder"
Path(RECORDER).write_text('#!/bin/sh\necho "mapping $1" >&2\nsed "s/^/  map: /" >&2\necho "$1"\n')
os.chmod(RECORDER, 0o755)
atexit.register(shutil.rmtree, RECORDER_DIR, ignore_errors=True)


@pytest.fixture(scope="module", autouse=True)
def _ifupdown() -> None:
    require_tool("ifquery")
    require_tool("ifup")


def test_the_corpus_is_what_the_index_lists() -> None:
    index = (CORPUS / "INDEX.md").read_text()
    assert len(CORPUS_FILES) >= 50
    for name in CORPUS_FILES:
        assert f"| {name} |" in index, f"{name} has no source and licence in INDEX.md"


@pytest.mark.parametrize("name", CORPUS_FILES)
def test_corpus_file_reads_as_ifupdown_reads_it(name: str, tmp_path: Path) -> None:
    verdict = compare(tmp_path, (CORPUS / name).read_bytes())
    assert verdict.agree, verdict.why


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(interfaces_files(RECORDER))
def test_generated_file_reads_as_ifupdown_reads_it(raw: bytes) -> None:
    with tempfile.TemporaryDirectory(prefix="kvmbridge-diff-") as folder:
        verdict = compare(Path(folder), raw, mappings=True)
    assert verdict.agree, f"{raw!r}\n{verdict.why}"


SAMPLE = (
    b"auto lo br0\nallow-hotplug eth1\niface lo inet loopback\n"
    b"iface eth1 inet manual\n  up ip link set eth1 up\n"
    b"iface br0 inet static\n  address 198.51.100.2/24\n  gateway 198.51.100.1\n"
    b"  dns-nameservers 198.51.100.53\n  bridge_ports eth1\n  up echo  a   b\n"
    b"iface br0 inet static\n  pre-up /bin/true\n"
    b"mapping eth*\n  script " + RECORDER.encode() + b"\n  map home\n"
)


def _damaged(parsed: Interfaces, how: str) -> Interfaces:
    stanzas = list(parsed.stanzas)
    br0 = next(i for i, s in enumerate(stanzas) if s.name == "br0")
    if how == "drop an option":
        stanzas[br0] = dataclasses.replace(stanzas[br0], options=stanzas[br0].options[1:])
    elif how == "swap a method":
        stanzas[br0] = dataclasses.replace(stanzas[br0], method="dhcp")
    elif how == "swap a family":
        stanzas[br0] = dataclasses.replace(stanzas[br0], family="inet6")
    elif how == "change a value's inner spaces":
        options = [dataclasses.replace(o, value=" ".join(o.value.split())) for o in stanzas[br0].options]
        stanzas[br0] = dataclasses.replace(stanzas[br0], options=tuple(options))
    elif how == "reorder options":
        stanzas[br0] = dataclasses.replace(stanzas[br0], options=stanzas[br0].options[::-1])
    elif how == "drop the second stanza":
        del stanzas[-1]
    elif how == "drop an allow-hotplug entry":
        return dataclasses.replace(parsed, allow={**parsed.allow, "hotplug": ()})
    elif how == "drop an auto entry":
        return dataclasses.replace(parsed, allow={**parsed.allow, "auto": ("lo",)})
    elif how == "drop a map line":
        return dataclasses.replace(parsed, mappings=(dataclasses.replace(parsed.mappings[0], maps=()),))
    elif how == "drop the mapping":
        return dataclasses.replace(parsed, mappings=())
    return dataclasses.replace(parsed, stanzas=tuple(stanzas))


@pytest.mark.parametrize(
    "how",
    [
        "drop an option",
        "swap a method",
        "swap a family",
        "change a value's inner spaces",
        "reorder options",
        "drop the second stanza",
        "drop an allow-hotplug entry",
        "drop an auto entry",
        "drop a map line",
        "drop the mapping",
    ],
)
def test_the_comparison_catches_a_damaged_reading(how: str, tmp_path: Path) -> None:
    parsed = parse(SAMPLE, str(tmp_path / "interfaces"))
    assert compare(tmp_path, SAMPLE, mappings=True).agree
    verdict = compare(tmp_path, SAMPLE, mappings=True, reading=_damaged(parsed, how))
    assert not verdict.agree, how


def _damageable(name: str) -> bool:
    try:
        parsed = parse((CORPUS / name).read_bytes())
    except InterfacesError:
        return False
    # ifquery takes a name starting with "/" as a pattern for this host's NICs: not askable by name.
    first = next((s for s in parsed.stanzas if s.options), None)
    return first is not None and not first.name.startswith("/") and not parsed.sources


DAMAGEABLE = [name for name in CORPUS_FILES if _damageable(name)]


@pytest.mark.parametrize("name", DAMAGEABLE[:: max(1, len(DAMAGEABLE) // 12)])
def test_the_comparison_catches_a_dropped_option_in_corpus_files(name: str, tmp_path: Path) -> None:
    raw = (CORPUS / name).read_bytes()
    parsed = parse(raw, str(tmp_path / "interfaces"))
    first = next(i for i, s in enumerate(parsed.stanzas) if s.options)
    stanzas = list(parsed.stanzas)
    stanzas[first] = dataclasses.replace(stanzas[first], options=stanzas[first].options[1:])
    verdict = compare(tmp_path, raw, reading=dataclasses.replace(parsed, stanzas=tuple(stanzas)))
    assert not verdict.agree


@pytest.mark.parametrize(
    "lines",
    [
        b"source-directory sub\n",
        b"source-dir sub\n",
        b"source sub/*\n",
        b"source sub/*.cfg sub/B\n",
        b"source 'sub/with space'\n",
        b"source sub/nothere*\nsource sub/[ab]\n",
        b"source sub/a;echo\n",
        b"source-directory sub/*\n",
        b"source sub/*[^~]\n",
        b"source sub/[^ab]*\n",
        b"source sub/[[:upper:]]*\n",
        b"source sub/[[:alpha:]_]*[[:digit:]]\n",
    ],
)
def test_sourced_files_are_the_ones_ifupdown_reads(lines: bytes, tmp_path: Path) -> None:
    """File-name rules: [A-Za-z0-9_-] names only for source-directory, wordexp globs for source."""
    sub = tmp_path / "sub"
    sub.mkdir()
    names = ["a", "B", "b.cfg", "c~", "_d-1", ".hidden", "with space", "x.cfg"]
    for i, name in enumerate(names):
        (sub / name).write_bytes(b"iface if%d inet manual\n  up echo %s\n" % (i, name.encode()))
    verdict = compare(tmp_path, b"auto lo\n" + lines)
    assert verdict.agree, verdict.why
