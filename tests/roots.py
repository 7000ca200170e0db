"""Helpers for tests on real temporary roots: seeding, snapshots, fault injection."""

from __future__ import annotations

import errno
import hashlib
import os
import signal
from pathlib import Path

import pytest

from kvmbridge.root import Root

OLD_INTERFACES = b"""# The host's own configuration before kvmbridge.
auto lo
iface lo inet loopback

auto eth0
iface eth0 inet static
    address 10.0.0.2/24
    gateway 10.0.0.1
"""
OLD_SYSCTL = b"net.ipv4.ip_forward = 0\n"
LIBVIRT_DEFAULT = b"""<network>
  <name>default</name>
  <forward mode='nat'/>
  <bridge name='virbr0'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'/>
</network>
"""


def seed_old_host(root: Path) -> Path:
    """A Debian host before kvmbridge: eth0 static, forwarding off, libvirt's NAT network."""
    files = {
        "etc/network/interfaces": (OLD_INTERFACES, 0o644),
        "etc/sysctl.d/ip_forward.conf": (OLD_SYSCTL, 0o640),
        "etc/libvirt/qemu/networks/default.xml": (LIBVIRT_DEFAULT, 0o600),
    }
    for rel, (data, mode) in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(mode)
    return root


def snapshot(root: Path, under: str = "") -> dict[str, tuple[str, str, int]]:
    """Every entry below root: path → (kind, sha256 or link text, mode)."""
    out: dict[str, tuple[str, str, int]] = {}
    base = root / under if under else root
    for path in sorted(base.rglob("*")):
        rel = path.relative_to(root).as_posix()
        st = path.lstat()
        if path.is_symlink():
            out[rel] = ("link", os.readlink(path), 0)
        elif path.is_file():
            out[rel] = ("file", hashlib.sha256(path.read_bytes()).hexdigest(), st.st_mode & 0o7777)
        else:
            out[rel] = ("dir", "", st.st_mode & 0o7777)
    return out


def etc_files(root: Path) -> dict[str, tuple[str, str, int]]:
    return {k: v for k, v in snapshot(root, "etc").items() if v[0] != "dir"}


class FaultyRoot(Root):
    """Fails the Nth change to the tree with ENOSPC, as a full disk would."""

    def __init__(self, prefix: Path, fail_at: int, fail_after_first: bool = False) -> None:
        super().__init__(prefix)
        self.fail_at = fail_at
        self.count = 0
        self.fail_after_first = fail_after_first
        self.log: list[str] = []

    def _mutating(self, what: str, path: Path) -> None:
        self.count += 1
        self.log.append(f"{what} {path}")
        if self.count == self.fail_at or (self.fail_after_first and self.count > self.fail_at):
            raise OSError(errno.ENOSPC, "No space left on device (injected)", str(path))


def make_sentinel(folder: Path) -> Path:
    """A folder outside every root a test uses: whatever happens, it must stay byte-identical."""
    for rel, data in {
        "passwd": b"root:x:0:0:root:/root:/bin/bash\n",
        "etc/network/interfaces": b"# the host's real interfaces file\n",
        "etc/sysctl.d/bridge.conf": b"# not kvmbridge's\n",
        "etc/udev/rules.d/99-bridge.rules": b"# not kvmbridge's\n",
        "etc/libvirt/qemu/networks/bridge-network.xml": b"<network/>\n",
        "var/lib/kvmbridge/keep": b"keep\n",
        "var/backups/kvmbridge/keep": b"keep\n",
        "state.json": b"{}\n",
    }.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return folder


def no_traceback(*texts: str) -> bool:
    return not any("Traceback" in text or "Error:" in text for text in texts)


class Killed(BaseException):
    """Stands for SIGKILL in-process: no `except OSError` or `except Exception` catches it, no undo runs."""


class KillingRoot(Root):
    """Dies (raises `Killed`) at the Nth change to the tree, counting every step in `log`."""

    def __init__(self, prefix: Path, kill_at: int) -> None:
        super().__init__(prefix)
        self.kill_at = kill_at
        self.log: list[str] = []

    def _mutating(self, what: str, path: Path) -> None:
        self.log.append(f"{what} {path}")
        if len(self.log) == self.kill_at:
            raise Killed(what, str(path))


def after_rule_findings(stderr: str, *ids: str) -> str:
    """stderr past the profile rules' warnings, which install, diff and validate print first.

    `ids` are exactly the ones expected in order (the article's profile: KB206, its `ip_forward = true`),
    each a `warning: KB2xx` line; the caller then asserts what follows as exactly as before.
    """
    lines = stderr.splitlines(keepends=True)
    head = lines[: len(ids)]
    assert [line.split()[:2] for line in head] == [["warning:", i] for i in ids], stderr
    assert not lines[len(ids) :] or not lines[len(ids)].startswith("warning: KB2"), stderr
    return "".join(lines[len(ids) :])


def signal_at_step(
    monkeypatch: pytest.MonkeyPatch, step: int, *sigs: signal.Signals, then: OSError | None = None
) -> dict[str, int]:
    """Root sends itself `sigs` at its `step`th change (all pending at once: Python runs the first
    handler, the others at its next check), then raises `then` if given. Returns the step count."""
    count = {"n": 0}

    def mutating(self: Root, what: str, path: Path) -> None:
        count["n"] += 1
        if count["n"] == step:
            signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
            for sig in sigs:
                os.kill(os.getpid(), sig)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, sigs)
            if then is not None:
                raise then

    monkeypatch.setattr(Root, "_mutating", mutating)
    return count
