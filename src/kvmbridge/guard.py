"""The boot guard: undo an install whose reboot went wrong, unless someone confirms it in time.

An install with `--confirm-within` adds, to its own transaction and backup set,
a timer (`OnBootSec`, counted from the next boot, never the wall clock), the
service it starts, optionally a self-check service, and `guard.json`. Unless
`confirm` removes them first, the service rolls that backup set back (the
guard files leave with it, as files the install created) and systemd reboots.

`guard.json` is read back as hostile data: schema-checked, bounded, and only a
backup ID from it is ever used to reach the disk.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

import msgspec

from .confine import BACKUP_ID, is_managed
from .errors import KvmbridgeError, RefusedError, UsageError
from .guardfiles import CHECK, CHECK_LINK, EXPIRED, GUARD, GUARD_FILES, SERVICE, TIMER, TIMER_LINK, UNIT_DIR
from .profile import PROFILE_LIMIT
from .root import Root
from .transaction import Op

MIN_SECONDS, MAX_SECONDS = 30, 24 * 3600
# guard.json carries a copy of the profile (up to PROFILE_LIMIT bytes of TOML). TOML allows no control
# character but tab, so JSON escaping at most doubles it (`"` -> `\"`, tab -> `\t`, CR LF -> `\r\n`);
# the other fields are short. install checks the exact bytes it writes against this limit anyway.
MAX_RECORD_BYTES = 2 * PROFILE_LIMIT + (64 << 10)
# fullmatch everywhere: `$` would also match before a trailing newline.
SAFE_EXECUTABLE = re.compile(r"(/[A-Za-z0-9._+-]+)+")
_DURATION = re.compile(r"([0-9]{1,6})([smh])")
_UNIT = {"s": 1, "m": 60, "h": 3600}


def parse_duration(text: str) -> int:
    """`45s`, `10m`, `1h` → seconds, within 30 seconds and 24 hours."""
    found = _DURATION.fullmatch(text)
    if found is None:
        raise UsageError(f"--confirm-within: {text!r} is not a duration; use a number and s, m or h (45s, 10m, 1h)")
    seconds = int(found[1]) * _UNIT[found[2]]
    if not MIN_SECONDS <= seconds <= MAX_SECONDS:
        raise UsageError(f"--confirm-within: {text} is outside 30s to 24h")
    return seconds


class GuardRecord(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """guard.json: which backup set the guard reverts, when, and the profile it guards."""

    version: int
    backup: str
    seconds: int
    duration: str
    auto_confirm: bool
    armed_at: str
    executable: str
    profile_name: str
    profile: str

    def as_dict(self) -> dict[str, Any]:
        fields = msgspec.structs.asdict(self)
        fields.pop("profile")
        return {"armed": True, **fields}


@dataclass(frozen=True)
class GuardSpec:
    """What `install --confirm-within` asks for, checked against the target before any write."""

    seconds: int
    duration: str
    auto_confirm: bool
    executable: str
    profile_name: str
    profile_text: str


def _check_record(record: GuardRecord) -> str | None:
    if record.version != 1:
        return f"unknown version {record.version}"
    if not BACKUP_ID.fullmatch(record.backup):
        return "backup: not a backup set ID"
    if not MIN_SECONDS <= record.seconds <= MAX_SECONDS:
        return "seconds: outside 30s to 24h"
    found = _DURATION.fullmatch(record.duration)
    if found is None or int(found[1]) * _UNIT[found[2]] != record.seconds:
        return "duration: not the record's seconds"
    if not record.armed_at.isprintable() or len(record.armed_at) > 64:
        return "armed_at: not a time stamp"
    if not SAFE_EXECUTABLE.fullmatch(record.executable):
        return "executable: not a plain absolute path"
    if not record.profile_name.isprintable() or "/" in record.profile_name or len(record.profile_name) > 255:
        return "profile_name: not a plain file name"
    return None


def decode_record(data: bytes) -> tuple[GuardRecord | None, str]:
    """The record in `data`, or None and why not: what the guard at boot accepts, and nothing else."""
    if len(data) > MAX_RECORD_BYTES:
        return None, f"larger than {MAX_RECORD_BYTES} bytes"
    try:
        record = msgspec.json.decode(data, type=GuardRecord)
    except msgspec.DecodeError as exc:
        return None, str(exc)
    problem = _check_record(record)
    return (None, problem) if problem is not None else (record, "")


def read_guard(root: Root) -> GuardRecord | None:
    """The armed guard, or None; a damaged or tampered record is an error, never obeyed."""
    path = root.path(GUARD)
    kind = root.kind(GUARD)
    if kind == "missing":
        return None
    if kind == "blocked":
        raise KvmbridgeError(f"{path}: a folder on the way is a symlink; refusing to read the guard record")
    if kind != "file":
        raise KvmbridgeError(f"{path}: the guard record is not a regular file ({kind}); refusing to use it")
    try:
        data = root.read(GUARD, limit=MAX_RECORD_BYTES).data or b""
    except KvmbridgeError:
        raise KvmbridgeError(
            f"{path}: the guard record is not a regular file of at most {MAX_RECORD_BYTES} bytes; refusing to use it"
        ) from None
    record, problem = decode_record(data)
    if record is None:
        raise KvmbridgeError(f"{path}: damaged guard record ({problem}); `kvmbridge confirm` removes it")
    return record


class ExpiredRecord(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """guard-expired.json: what the guard did when its deadline passed, for `status` (written by expire)."""

    version: int
    time: str
    boot_id: str | None
    reason: str
    backup: str
    undo: str | None
    duration: str
    profile: str
    restored: tuple[str, ...]
    removed: tuple[str, ...]


def _stamp(text: str, limit: int = 64) -> bool:
    return text.isprintable() and len(text) <= limit


def _check_expired(record: ExpiredRecord) -> str | None:
    if record.version != 1:
        return f"unknown version {record.version}"
    if not BACKUP_ID.fullmatch(record.backup):
        return "backup: not a backup set ID"
    if record.undo is not None and not BACKUP_ID.fullmatch(record.undo):
        return "undo: not a backup set ID"
    if not _stamp(record.time) or (record.boot_id is not None and not _stamp(record.boot_id)):
        return "time or boot_id: not a time stamp"
    if not _DURATION.fullmatch(record.duration) or record.reason != expiry_reason(record.duration):
        return "reason or duration: not what the guard writes"
    if not _stamp(record.profile, 255) or "/" in record.profile:
        return "profile: not a plain file name"
    if not all(is_managed(path) for path in (*record.restored, *record.removed)):
        return "restored or removed: not a path kvmbridge writes"
    return None


def expiry_reason(duration: str) -> str:
    return f"not confirmed within {duration} after boot"


def expired_bytes(record: ExpiredRecord) -> bytes:
    return msgspec.json.format(msgspec.json.encode(record), indent=2) + b"\n"


def read_expired(root: Root) -> ExpiredRecord | str | None:
    """What the last expired guard did (guard-expired.json), None when absent, or why it cannot be shown.

    Hostile data like guard.json: schema-checked, and nothing of a record that fails is ever printed.
    """
    path = root.path(EXPIRED)
    try:
        on_disk = root.read(EXPIRED, limit=MAX_RECORD_BYTES)
    except KvmbridgeError:
        return f"{path}: not a regular file of at most {MAX_RECORD_BYTES} bytes; not shown"
    if on_disk.kind == "missing":
        return None
    if on_disk.kind != "file" or on_disk.data is None:
        return f"{path}: not a regular file; not shown"
    try:
        record = msgspec.json.decode(on_disk.data, type=ExpiredRecord)
    except msgspec.DecodeError as exc:
        return f"{path}: damaged ({_oneline(exc)}); not shown"
    problem = _check_expired(record)
    return f"{path}: damaged ({problem}); not shown" if problem is not None else record


def _oneline(exc: BaseException) -> str:
    return repr(str(exc))[1:-1][:200]


def refuse_if_armed(root: Root) -> None:
    """While a guard is armed, the files it would restore must stay what it guarded."""
    try:
        record = read_guard(root)
    except KvmbridgeError as exc:
        raise RefusedError(*exc.lines, "nothing was changed") from None
    if record is not None:
        raise RefusedError(
            f"{root.path(GUARD)}: a boot guard is armed for backup {record.backup} "
            f"(reverts {record.duration} after boot); run `kvmbridge confirm` or `kvmbridge rollback` first; "
            "nothing was changed"
        )


def record_bytes(spec: GuardSpec, backup_id: str) -> bytes:
    record = GuardRecord(
        version=1,
        backup=backup_id,
        seconds=spec.seconds,
        duration=spec.duration,
        auto_confirm=spec.auto_confirm,
        armed_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        executable=spec.executable,
        profile_name=spec.profile_name,
        profile=spec.profile_text,
    )
    data = msgspec.json.format(msgspec.json.encode(record), indent=2) + b"\n"
    # The guard at boot reads this with read_guard: a record it would refuse is never written, whatever
    # the profile holds, or install would report a guard armed that can never revert.
    readable, problem = decode_record(data)
    if readable != record:
        raise RefusedError(
            f"{GUARD}: the guard record for {spec.profile_name} would not be readable at boot ({problem}); "
            "nothing was changed"
        )
    return data


def refuse_unreadable(spec: GuardSpec) -> None:
    """Before the lock and any write: the record this spec makes must pass read_guard (longest backup ID)."""
    record_bytes(spec, "20000101T000000.000000Z-999999")


def guard_ops(spec: GuardSpec, backup_id: str, root: Root) -> list[Op]:
    """The guard's files, written in the install's own transaction.

    They come before the configuration in the install, and after it in a
    rollback, so a power cut never leaves new files without a timer; guard.json
    comes first among them, so while it is missing the units stay inert.
    """
    from .render import environment

    env = environment()
    context = {"spec": spec, "backup": backup_id, "guard": GUARD}
    ops = [Op(GUARD, data=record_bytes(spec, backup_id), mode=0o600)]
    ops.append(
        Op(SERVICE, data=env.get_template("etc/systemd/system/kvmbridge-guard.service.j2").render(context).encode())
    )
    if spec.auto_confirm:
        ops.append(
            Op(
                CHECK,
                data=env.get_template("etc/systemd/system/kvmbridge-guard-check.service.j2").render(context).encode(),
            )
        )
        ops.append(Op(CHECK_LINK, link="../kvmbridge-guard-check.service"))
    ops.append(Op(TIMER, data=env.get_template("etc/systemd/system/kvmbridge-guard.timer.j2").render(context).encode()))
    ops.append(Op(TIMER_LINK, link="../kvmbridge-guard.timer"))
    if root.read(EXPIRED).kind == "file":
        ops.append(Op(EXPIRED))  # a new guard: the last one's report no longer describes this boot
    return ops


__all__ = ["CHECK", "CHECK_LINK", "EXPIRED", "GUARD", "GUARD_FILES", "SERVICE", "TIMER", "TIMER_LINK", "UNIT_DIR"]
