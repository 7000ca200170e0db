"""What the boot guard does once armed: `confirm`, the revert at the deadline, and the self-check.

The revert is `rollback` of the guarded backup set, nothing else: the guard's
own files were created by that install, so they leave with it.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .confine import is_rendered
from .errors import KvmbridgeError, RefusedError
from .fileset import RenderedFile, RenderedSet
from .formats import NETXML
from .formats.netxml import NETWORKS_DIR
from .guard import EXPIRED, GUARD, GUARD_FILES, ExpiredRecord, GuardRecord, expired_bytes, expiry_reason, read_guard
from .install import locked, refuse_unprivileged, rollback
from .interrupts import commit
from .livefacts import Facts, gather_facts
from .livestatus import Status, compare
from .model import HostProfile
from .plan import equivalent, same_link_target
from .render import render
from .root import OnDisk, Root, sha256_of
from .state import STATE, read_manifest, read_state
from .targets import format_of


@dataclass(frozen=True)
class Confirmed:
    record: GuardRecord | None
    removed: tuple[str, ...]
    damaged: str | None = None


def confirm(root: Root) -> Confirmed:
    """Disarm: remove the guard's files, keep the backup set. Harmless when nothing is armed."""
    refuse_unprivileged(root)
    present = [dest for dest in GUARD_FILES if root.symlinked_folder(dest) or root.read(dest).kind != "missing"]
    if not present:
        return Confirmed(None, ())
    with locked(root):
        damaged = None
        try:
            record = read_guard(root)
        except KvmbridgeError as exc:
            record, damaged = None, exc.lines[0]
        for dest in GUARD_FILES:
            folder = root.symlinked_folder(dest)
            if folder is not None:
                raise RefusedError(f"{folder}: is a symlink; refusing to remove {dest} through it; nothing was changed")
        removed = []
        commit()  # the guard's files go all together: a signal now waits until they are gone
        for dest in GUARD_FILES:
            if root.read(dest).kind == "missing":
                continue
            try:
                root.remove(dest)
            except OSError as exc:
                raise KvmbridgeError(f"{root.path(dest)}: cannot remove: {exc.strerror or exc}") from None
            removed.append(dest)
        return Confirmed(record, tuple(removed), damaged)


def expire(root: Root) -> ExpiredRecord:
    """The deadline passed unconfirmed: roll the guarded set back and say so in guard-expired.json."""
    record = read_guard(root)
    if record is None:
        raise KvmbridgeError(f"{root.path(GUARD)}: no boot guard is armed; nothing to revert")
    chosen, undo = rollback(root, record.backup, force=True, for_guard=True)
    report = ExpiredRecord(
        version=1,
        time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        boot_id=_boot_id(),
        reason=expiry_reason(record.duration),
        backup=chosen.id,
        undo=undo.id if undo is not None else None,
        duration=record.duration,
        profile=record.profile_name,
        restored=tuple(e.path for e in chosen.entries if e.existed),
        removed=tuple(e.path for e in chosen.entries if not e.existed),
    )
    root.write_file(EXPIRED, expired_bytes(report), 0o644)
    return report


@dataclass(frozen=True)
class Check:
    """One auto-confirm attempt: the status comparison plus each gateway's answer."""

    status: Status
    gateways: tuple[tuple[str, str, bool], ...]

    @property
    def passed(self) -> bool:
        return self.status.as_profiled and not self.status.pending and all(ok for _, _, ok in self.gateways)

    def lines(self) -> Iterator[str]:
        yield from (m.line() for m in self.status.mismatches)
        yield from self.status.pending
        for address, dev, ok in self.gateways:
            if not ok:
                yield f"{dev}: gateway {address}: expected an answer, found none"


def guarded_profile(root: Root, record: GuardRecord) -> HostProfile:
    from .profile import parse_profile

    return parse_profile(
        record.profile,
        f"{root.path(GUARD)} (profile {record.profile_name})",
        default_hostname=Path(record.profile_name).stem,
        source_name=record.profile_name,
    )


def auto_confirm(
    root: Root, *, window: float | None = None, pause: float = 2.0, ping: Callable[[str, str], bool] | None = None
) -> tuple[GuardRecord | None, Check | None, int]:
    """Check the host as `status` does, plus the gateway; confirm on success, else leave the guard armed.

    Retries for a while (libvirt's autostart or a DHCP lease can trail
    network-online.target), never past the guard's own deadline.
    """
    record = read_guard(root)
    if record is None:
        return None, None, 0
    profile = guarded_profile(root, record)
    files, installed = installed_files(root, record)
    ping = ping or answers
    limit = window if window is not None else max(5.0, min(180.0, record.seconds - 15.0))
    deadline, attempts = time.monotonic() + limit, 0
    while True:
        attempts += 1
        facts = gather_facts(profile, files, root, installed=installed)
        check = Check(compare(profile, files, facts), tuple(_ping_all(profile, facts, ping)))
        if check.passed or time.monotonic() + pause > deadline:
            break
        time.sleep(pause)
    if check.passed:
        confirm(root)
    return record, check, attempts


def installed_files(root: Root, record: GuardRecord) -> tuple[RenderedSet, tuple[tuple[str, str], ...]]:
    """What the guarded install wrote, checked against the hashes it recorded, and what differs (path, status).

    Never a fresh render: the kvmbridge the units run at boot may render other bytes than the one that
    installed (an upgrade before the reboot, an install into an image from outside), and a comment that
    differs must not revert a good boot. The files that match are returned as they are on disk, so the
    sysctl values checked are the ones installed.
    """
    where = root.path(STATE)
    state = read_state(root)
    if state.backup != record.backup:
        raise KvmbridgeError(
            f"{where}: written by backup {state.backup or 'none'}, not by the guarded backup {record.backup}; "
            "cannot tell what the guarded install wrote"
        )
    files: list[RenderedFile] = []
    differ: list[tuple[str, str]] = []
    rewritten = _libvirt_rewrote(root, record)
    for path, sha in sorted(state.files.items()):
        now = root.read(path)
        if now.kind == "missing":
            differ.append((path, "gone"))
        elif now.sha256 != sha and not rewritten(path, sha, now):
            differ.append((path, "changed"))
        else:
            files.append(RenderedFile(path, now.mode, data=now.data, link=now.link))
    for entry in read_manifest(root, record.backup).entries:
        removed = entry.sha256_after is None and entry.existed and is_rendered(entry.path)
        if removed and entry.path not in state.files and root.read(entry.path).kind != "missing":
            differ.append((entry.path, "kept"))
    return tuple(files), tuple(differ)


def _libvirt_rewrote(root: Root, record: GuardRecord) -> Callable[[str, str, OnDisk], bool]:
    """Whether a libvirt file that differs from its recorded hash is only libvirt's own re-save of it.

    `virsh net-define` (the command install prints) rewrites the network XML in libvirt's style and
    `net-autostart` makes the autostart link absolute. Such a file passes when the guarded profile,
    rendered now, gives byte for byte what was installed (the recorded hash: so it is what was
    installed) and the file on disk means the same through libvirt's format (`plan.equivalent`, as
    `diff` judges it). Any other change, and any change to the interfaces, udev or sysctl files,
    stays "changed": drift no parser can hide.
    """
    rendered: dict[str, RenderedFile] | None = None

    def rewrote(path: str, sha: str, now: OnDisk) -> bool:
        nonlocal rendered
        if format_of(path) is not NETXML and not path.startswith(f"{NETWORKS_DIR}/autostart/"):
            return False
        if rendered is None:
            rendered = {f.path: f for f in render(guarded_profile(root, record))}
        new = rendered.get(path)
        if new is None or sha256_of(new.data, new.link) != sha:
            return False
        if new.link is not None:
            return now.kind == "symlink" and same_link_target(path, now.link, new.link)
        return now.kind == "file" and equivalent(path, now.data, new.data, new.format)

    return rewrote


def gateways(profile: HostProfile, facts: Facts) -> Iterator[tuple[str, str]]:
    """(address, bridge) of every gateway the host should reach: static ones, and DHCP's router."""
    for name, bridge in profile.bridges.items():
        if bridge.ipv4.gateway:
            yield bridge.ipv4.gateway, name
        elif bridge.ipv4.method == "dhcp":
            for route in facts.routes4:
                if route.get("dst") == "default" and route.get("dev") == name and route.get("gateway"):
                    yield str(route["gateway"]), name
        if bridge.ipv6 is not None and bridge.ipv6.gateway:
            yield bridge.ipv6.gateway, name


def _ping_all(profile: HostProfile, facts: Facts, ping: Callable[[str, str], bool]) -> Iterator[tuple[str, str, bool]]:
    for address, dev in gateways(profile, facts):
        yield address, dev, ping(address, dev)


def answers(address: str, dev: str, timeout: float = 1.0, tries: int = 3) -> bool:
    """ICMP echo to `address` out of `dev` (raw socket, as root): no ping binary needed on the target."""
    for seq in range(1, tries + 1):
        try:
            if _echo(address, dev, seq, timeout):
                return True
        except OSError:
            time.sleep(timeout)
    return False


def _echo(address: str, dev: str, seq: int, timeout: float) -> bool:
    ip = ipaddress.ip_address(address)
    ident = os.getpid() & 0xFFFF
    payload = b"kvmbridge-guard"
    if ip.version == 4:
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        request, reply, dest = 8, 0, (address, 0)
        header = struct.pack("!BBHHH", request, 0, 0, ident, seq)
        header = struct.pack("!BBHHH", request, 0, _checksum(header + payload), ident, seq)
    else:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        request, reply = 128, 129
        dest = (address, 0, 0, socket.if_nametoindex(dev) if ip.is_link_local else 0)  # type: ignore[assignment]
        header = struct.pack("!BBHHH", request, 0, 0, ident, seq)  # the kernel fills in ICMPv6 checksums
    with sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, dev.encode())
        sock.sendto(header + payload, dest)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                packet, source = sock.recvfrom(2048)
            except TimeoutError:
                return False
            if ip.version == 4:
                packet = packet[(packet[0] & 0x0F) * 4 :]
            if len(packet) < 8 or ipaddress.ip_address(source[0].split("%")[0]) != ip:
                continue
            kind, _, _, got_id, got_seq = struct.unpack("!BBHHH", packet[:8])
            if kind == reply and got_id == ident and got_seq == seq:
                return True
    return False


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None
