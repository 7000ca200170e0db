"""Tampering is never "equivalent": bytes kvmbridge did not write are drift, and udev is read as udev reads.

Reproducer 5 of issue 9 (the parts outside the interfaces parser): a udev
comment line ending in `\\` followed by an extra `RUN+=`, and extra stanzas
in a file kvmbridge wrote, were reported in sync while udev and ifupdown
would run them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kvmbridge.formats import udev

from .conftest import GOLDEN, run
from .roots import after_rule_findings, seed_old_host

ARTICLE = GOLDEN / "article.toml"
RULE = "etc/udev/rules.d/99-bridge.rules"


@pytest.mark.parametrize(
    "text",
    [
        b'# a comment \\\nRUN+="/bin/evil"\n',
        b'   # an indented comment \\\nRUN+="/bin/evil"\n',
        b'\t#\\\nRUN+="/bin/evil"\n',
        b'# crlf comment \\\r\nRUN+="/bin/evil"\r\n',
    ],
)
def test_a_udev_comment_ends_at_its_line_end_even_with_a_backslash(text: bytes) -> None:
    assert udev.parse(text) == [[("RUN", "+=", "/bin/evil")]]


def test_udev_continuations_join_and_skip_comment_lines_inside_them() -> None:
    text = b'ACTION=="add", \\\n# skipped, as udev does\n  RUN+="/bin/true"\n'
    assert udev.parse(text) == [[("ACTION", "==", "add"), ("RUN", "+=", "/bin/true")]]


def test_a_continuation_left_open_at_the_end_is_never_a_clean_rule() -> None:
    assert udev.parse(b'RUN+="/bin/true" \\\n') == [[("?", "", 'RUN+="/bin/true" ')]]


def test_a_smuggled_udev_rule_in_a_file_kvmbridge_never_wrote_is_an_update(tmp_path: Path) -> None:
    root = seed_old_host(tmp_path / "root")
    rendered = (GOLDEN / "article" / RULE).read_bytes()
    (root / RULE).parent.mkdir(parents=True)
    (root / RULE).write_bytes(rendered + b'# reviewed by ops \\\nRUN+="/bin/sh -c reboot"\n')
    result = run("diff", ARTICLE, "--root", root, "--json")
    statuses = {c["path"]: c["status"] for c in json.loads(result.stdout)["changes"]}
    assert statuses["/" + RULE] == "update"


TAMPERING = {
    "interfaces: a second br0 stanza": ("etc/network/interfaces", b"\niface br0 inet static\n    pre-up /bin/evil\n"),
    "interfaces: a mapping stanza": ("etc/network/interfaces", b"\nmapping eth0\n    script /bin/evil\n"),
    "interfaces: an unknown line": ("etc/network/interfaces", b"\nfrobnicate /bin/evil\n"),
    "interfaces: a comment only": ("etc/network/interfaces", b"# harmless, but not ours\n"),
    "udev: comment ending in a backslash": (RULE, b'# note \\\nRUN+="/bin/evil"\n'),
    "sysctl: a comment": ("etc/sysctl.d/bridge.conf", b"# hmm\n"),
    "netxml: an XML comment": ("etc/libvirt/qemu/networks/bridge-network.xml", b"<!-- x -->\n"),
}


@pytest.mark.parametrize("name", list(TAMPERING))
def test_any_change_to_a_file_kvmbridge_wrote_is_drift(tmp_path: Path, name: str) -> None:
    rel, extra = TAMPERING[name]
    root = seed_old_host(tmp_path / "root")
    assert run("install", ARTICLE, "--root", root).exit_code == 0
    with (root / rel).open("ab") as handle:
        handle.write(extra)
    result = run("diff", ARTICLE, "--root", root, "--json")
    assert result.exit_code == 1
    statuses = {c["path"]: c["status"] for c in json.loads(result.stdout)["changes"]}
    assert statuses["/" + rel] == "drift"
    refused = run("install", ARTICLE, "--root", root)
    assert refused.exit_code == 3
    assert (
        after_rule_findings(refused.stderr, "KB206").splitlines()[0]
        == f"{root / rel}: changed since kvmbridge wrote it (drift)"
    )
