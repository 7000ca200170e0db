"""ifupdown2's syntax check fails now and then with a netlink `recv()` error that says nothing about
our file (seen once in ~30 booted-image runs of the suite, as `install` refusing a file `validate`
had passed seconds before): kvmbridge asks again, and still reports every real complaint."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from kvmbridge.profile import load_profile
from kvmbridge.render import render
from kvmbridge.verify import Verdict, ifupdown2_syntax

from .conftest import GOLDEN

PROFILE = GOLDEN / "ifupdown2-article.toml"


def _fake_ifup(tmp_path: Path, outputs: list[str]) -> Path:
    """An ifupdown2-style `ifup` (a Python script) printing outputs[n] on its nth run."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    count = tmp_path / "runs"
    count.write_text("0")
    script = bin_dir / "ifup"
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        f"outputs = {outputs!r}\n"
        f"n = int(open({str(count)!r}).read())\n"
        f"open({str(count)!r}, 'w').write(str(n + 1))\n"
        "out = outputs[min(n, len(outputs) - 1)]\n"
        "sys.stderr.write(out)\n"
        "sys.exit(1 if out else 0)\n"
    )
    script.chmod(0o755)
    return bin_dir


def _check(monkeypatch: pytest.MonkeyPatch, bin_dir: Path) -> Verdict:
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    profile = load_profile(PROFILE)
    files = [f for f in render(profile) if f.path == "/etc/network/interfaces"]
    verdict = Verdict()
    ifupdown2_syntax(files, profile, verdict)
    return verdict


HICCUP = "error: recv() error: [Errno 22] Invalid argument\n"


def test_a_netlink_hiccup_is_asked_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    verdict = _check(monkeypatch, _fake_ifup(tmp_path, [HICCUP, ""]))
    assert verdict.errors == [] and verdict.checked == ["ifupdown2 (ifup --syntax-check)"]
    assert (tmp_path / "runs").read_text() == "2"


def test_a_hiccup_every_time_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    verdict = _check(monkeypatch, _fake_ifup(tmp_path, [HICCUP]))
    assert verdict.errors == ["etc/network/interfaces: " + HICCUP.strip()]
    assert (tmp_path / "runs").read_text() == "3"


def test_a_real_complaint_is_never_asked_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    complaint = "error: br0: bridge-ports: invalid value\n"
    verdict = _check(monkeypatch, _fake_ifup(tmp_path, [HICCUP + complaint, ""]))
    assert verdict.errors == ["etc/network/interfaces: " + line for line in (HICCUP + complaint).splitlines()]
    assert (tmp_path / "runs").read_text() == "1"
