"""Text and JSON views of plans, installs, rollbacks, backups and fleet checks.

Pure functions from values to lines or dicts: `cli` prints them, tests read them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec

from .check import HostCheck
from .diff import semantic, unified
from .findings import Finding, Report
from .formats import FORMATS
from .guard import GUARD_FILES, UNIT_DIR, ExpiredRecord, GuardRecord, GuardSpec
from .guardrun import Confirmed
from .livestatus import Status
from .model import HostProfile
from .plan import Change, Plan, format_for
from .state import Manifest

GUARD_UNITS = f"{UNIT_DIR}/"


def root_flag(root: Path) -> str:
    return "" if root == Path("/") else f" --root {root}"


def summary_lines(plan: Plan) -> list[str]:
    return [f"{c.status:<10} {line}" for c in plan.changes for line in semantic(c)]


def diff_lines(plan: Plan, root: Path, unfinished: str | None = None) -> Iterator[str]:
    for change in plan.changes:
        text = unified(change)
        if text and change.status != "equivalent":
            yield from text.splitlines()
    lines = summary_lines(plan)
    if lines:
        yield ""
        yield "summary:"
        yield from (f"  {line}" for line in lines)
    if unfinished is not None:
        yield f"backup set {unfinished} was left unfinished by a killed run: `kvmbridge install` would finish it"
    in_sync = plan.in_sync and unfinished is None
    yield f"{'in sync' if in_sync else f'{len(plan.pending)} file(s) would change'} under {root}"


def change_json(change: Change) -> dict[str, Any]:
    return {
        "path": change.path,
        "status": change.status,
        "blocked": change.blocked,
        "summary": semantic(change),
        "diff": unified(change),
    }


ACTIONS = {"create": "create", "update": "update", "drift": "update", "remove": "remove"}
"""What install does to a file of each plan status (drift is overwritten only with --force); else none."""


def install_json(
    plan: Plan,
    safety: Report | None,
    root: Path,
    profile: Path,
    *,
    rules: Sequence[Finding] = (),
    backup_id: str | None,
    guard: GuardSpec | None,
    dry_run: bool = False,
    refused: Sequence[str] = (),
    unfinished: str | None = None,
) -> dict[str, Any]:
    """`install --json`: what was done (or, dry run or refused, what would be), for scripts and Ansible."""
    written = backup_id is not None
    return {
        **findings_json(rules, safety),
        "profile": str(profile),
        "root": str(root),
        "dry_run": dry_run,
        "refused": list(refused),
        "unfinished": unfinished,
        "changed": written,
        "backup_id": backup_id,
        "rollback": f"kvmbridge rollback {backup_id}{root_flag(root)}" if written else None,
        "files": [{**change_json(c), "action": ACTIONS.get(c.status, "none")} for c in plan.changes],
        "guard": {
            "requested": guard is not None,
            "armed": written and guard is not None,
            "duration": guard.duration if guard is not None else None,
            "seconds": guard.seconds if guard is not None else None,
            "auto_confirm": guard.auto_confirm if guard is not None else False,
            "executable": guard.executable if guard is not None else None,
        },
        "activate": activation(plan) if written else [],
    }


def refused_json(root: Path, profile: Path, dry_run: bool, refused: Sequence[str]) -> dict[str, Any]:
    """`install --json` refused before a plan existed (privilege, an armed guard, an untrusted guard)."""
    return {
        "profile": str(profile),
        "root": str(root),
        "dry_run": dry_run,
        "refused": list(refused),
        "changed": False,
        "backup_id": None,
        "rollback": None,
        "files": [],
        "activate": [],
    }


def findings_json(rules: Sequence[Finding], report: Report | None) -> dict[str, Any]:
    """The profile rules' findings, then the safety checks' (and their notes when a root was looked at)."""
    found = [f.as_dict() for f in (*rules, *(report.findings if report is not None else ()))]
    return {"findings": found} | ({"safety_notes": list(report.notes)} if report is not None else {})


def plan_lines(plan: Plan, root: Path, unfinished: str | None = None, *, done: bool = False) -> Iterator[str]:
    """`unfinished`: a killed run's backup set, which install takes over even when every file is in place."""
    yield f"plan for {root}:"
    yield from (f"  {line}" for line in summary_lines(plan))
    if unfinished is not None:
        yield f"  {'finished' if done else 'would finish'} backup set {unfinished}, left unfinished by a killed run"
    if plan.in_sync:
        yield "  nothing to change in the files" if unfinished is not None else "  nothing to change"


def install_report(plan: Plan, backup_id: str, root: Path, profile: Path) -> Iterator[str]:
    """The backup, the way back, what happens at boot and how to check it; activation is only shown."""
    yield from ("", f"backup: {backup_id}", f"undo with: kvmbridge rollback {backup_id}{root_flag(root)}")
    yield from ("", "takes effect at the next boot; then check it with:")
    yield f"  kvmbridge status {profile}    # bridges, ports, addresses, routes, sysctl, libvirt, files"
    yield ""
    yield "to activate now instead (not run; over SSH this can cut your session):"
    yield from (f"  {line}" for line in activation(plan))


def activation(plan: Plan) -> list[str]:
    """Each changed format's own commands, in the registry's order, each once."""
    by_format: dict[str, list[str]] = {}
    for change in plan.pending:
        fmt = format_for(change.path, change.new.format if change.new is not None else None)
        by_format.setdefault(fmt.name, []).append(change.path)
    lines: list[str] = []
    for fmt in FORMATS:
        if fmt.name in by_format:
            lines += [line for line in fmt.activate(by_format[fmt.name]) if line not in lines]
    return lines


def rollback_report(chosen: Manifest, undo: Manifest, root: Path) -> Iterator[str]:
    existed = {e.path for e in chosen.entries if e.existed}
    for entry in undo.entries:
        yield f"  {'restored' if entry.path in existed else 'removed':<9} {entry.path.lstrip('/')}"
    yield f"rolled back {chosen.id}; the files it replaced are backed up as {undo.id}"
    if any(e.path in GUARD_FILES and e.existed for e in chosen.entries):
        yield (
            "boot guard: not re-armed (a rollback never arms one): the next boot keeps this configuration; "
            "check it with `kvmbridge status PROFILE`"
        )
    yield f"undo this rollback with: kvmbridge rollback {undo.id}{root_flag(root)}"


def backups_table(manifests: Sequence[Manifest], guard: GuardRecord | str | None = None) -> Iterator[str]:
    yield f"{'ID':<32} {'TIME':<20} {'HOST':<16} {'ACTION':<9} FILES"
    for m in manifests:
        files = ", ".join(e.path.lstrip("/") for e in m.entries if not e.path.startswith(("/var/", GUARD_UNITS)))
        yield f"{m.id:<32} {m.time:<20} {m.host or '-':<16} {m.action:<9} {files}"
    yield from guard_lines(guard, None)


def guard_lines(guard: GuardRecord | str | None, expired: ExpiredRecord | str | None) -> Iterator[str]:
    """The boot guard as `status` and `backups` show it."""
    if isinstance(guard, str):
        yield f"boot guard: unusable record: {guard}"
    elif guard is not None:
        auto = ", confirms by itself when status and the gateway pass" if guard.auto_confirm else ""
        yield (
            f"boot guard: armed for backup {guard.backup} (armed {guard.armed_at}): reverts {guard.duration} after "
            f"boot unless `kvmbridge confirm`{auto}"
        )
    if isinstance(expired, str):
        yield f"boot guard: last expiry record unusable: {expired}"
    elif expired is not None:
        undo = f" (undo with: kvmbridge rollback {expired.undo})" if expired.undo else ""
        yield f"boot guard: expired at {expired.time}: {expired.reason}; restored backup {expired.backup}{undo}"


def guard_armed_lines(guard: GuardSpec, root: Path) -> Iterator[str]:
    yield ""
    yield f"boot guard: armed; {guard.duration} after the next boot it restores this backup and reboots, unless"
    yield f"  kvmbridge confirm{root_flag(root)}    # run it once the host came up as it should"
    if guard.auto_confirm:
        yield "  (or it confirms by itself once `kvmbridge status` passes and the gateway answers)"
    yield f"  the units run {guard.executable}"


def status_lines(
    profile: Path,
    model: HostProfile,
    result: Status,
    *,
    guard: GuardRecord | str | None,
    expired: ExpiredRecord | str | None,
) -> Iterator[str]:
    yield from (m.line() for m in result.mismatches)
    yield from (f"note: {note}" for note in result.notes)
    yield from guard_lines(guard, expired)
    if guard is None:
        yield "boot guard: not armed"
    checked = ", ".join(f"{n} {what}" for what, n in result.checked.items())
    if result.as_profiled:
        yield f"{model.hostname}: running as {profile} says ({checked} checked)"
    else:
        yield f"{model.hostname}: {len(result.mismatches)} difference(s) from {profile} ({checked} checked)"


def status_json(
    profile: Path,
    model: HostProfile,
    root: Path,
    result: Status,
    *,
    guard: GuardRecord | str | None,
    expired: ExpiredRecord | str | None,
) -> dict[str, Any]:
    if isinstance(guard, str):
        guard_value: dict[str, Any] = {"armed": None, "error": guard}
    else:
        guard_value = guard.as_dict() if guard is not None else {"armed": False}
    return {
        "profile": str(profile),
        "hostname": model.hostname,
        "root": str(root),
        "as_profiled": result.as_profiled,
        "mismatches": [m.as_dict() for m in result.mismatches],
        "notes": list(result.notes),
        "checked": result.checked,
        "guard": guard_value,
        "guard_expired": (
            {"error": expired} if isinstance(expired, str) else msgspec.structs.asdict(expired) if expired else None
        ),
    }


def confirm_lines(done: Confirmed, root: Path) -> Iterator[str]:
    if done.damaged:
        yield f"warning: {done.damaged}"
    if done.record is not None:
        yield f"confirmed: the boot guard for backup {done.record.backup} is disarmed (the backup set stays)"
        yield f"undo the install itself with: kvmbridge rollback {done.record.backup}{root_flag(root)}"
    elif done.removed:
        yield f"confirmed: removed leftover guard files: {', '.join(p.lstrip('/') for p in done.removed)}"
    else:
        yield f"no boot guard armed under {root}; nothing to confirm"


def confirm_json(done: Confirmed, root: Path) -> dict[str, Any]:
    return {
        "root": str(root),
        "was_armed": done.record is not None,
        "backup": done.record.backup if done.record is not None else None,
        "removed": list(done.removed),
        "warning": done.damaged,
    }


def check_counts(results: Sequence[HostCheck]) -> dict[str, int]:
    return {s: sum(r.status == s for r in results) for s in ("ok", "changed", "invalid")}


def check_lines(results: Sequence[HostCheck], updated: bool) -> Iterator[str]:
    """One line per host; a changed one lists each file as a plan would (create, update, remove) with its
    meaning and diff: what `--update` does to the golden tree, as `diff` says what `install` does to a root.

    Paths are labelled (repr when not printable): a newline in a profile's or a golden file's name
    must not forge a verdict line in a CI log."""
    from .profile import path_label

    for r in results:
        profile = path_label(r.profile)
        if r.status == "invalid":
            yield f"invalid {profile}"
            yield from (f"  {line}" for line in r.errors)
        elif r.status == "changed":
            verb = "updated" if updated else "changed"
            yield f"{verb:<7} {profile} ({len(r.changes)} file(s) differ from {path_label(r.golden)})"
            for change in () if updated else r.changes:
                yield f"  {change.status}: {path_label(change.path.lstrip('/'))}"
                yield from (f"    {line}" for line in semantic(change))
                yield from unified(change).splitlines()
        else:
            yield f"ok      {profile}"
    counts = check_counts(results)
    changed = f"{counts['changed']} {'updated' if updated else 'changed'}"
    yield f"{len(results)} profiles: {counts['ok']} ok, {changed}, {counts['invalid']} invalid"


def check_json(results: Sequence[HostCheck], updated: bool) -> dict[str, Any]:
    return {
        "updated": updated,
        "counts": check_counts(results),
        "profiles": [
            {
                "profile": str(r.profile),
                "golden": str(r.golden),
                "status": r.status,
                "errors": r.errors,
                "files": [
                    {"path": c.path, "status": c.status, "summary": semantic(c), "diff": unified(c)} for c in r.changes
                ],
            }
            for r in results
        ],
    }
