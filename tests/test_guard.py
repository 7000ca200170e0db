"""The boot guard on real temporary roots: arming in the install's own transaction, every refusal,
confirm, the revert the timer starts, and guard.json as hostile data.

What happens at boot under real systemd is in tests/test_image_guard.py.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kvmbridge.guard import MAX_RECORD_BYTES

from .conftest import GOLDEN, require_root, require_tool, run, tree
from .guardroots import EXECUTABLE, guardable_root
from .roots import signal_at_step

ARTICLE = GOLDEN / "article.toml"
UNITS = "etc/systemd/system"
GUARD = "var/lib/kvmbridge/guard.json"
GUARD_FILES = [
    GUARD,
    f"{UNITS}/kvmbridge-guard.service",
    f"{UNITS}/kvmbridge-guard.timer",
    f"{UNITS}/timers.target.wants/kvmbridge-guard.timer",
]
CHECK_FILES = [
    f"{UNITS}/kvmbridge-guard-check.service",
    f"{UNITS}/multi-user.target.wants/kvmbridge-guard-check.service",
]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    require_root()
    return guardable_root(tmp_path / "root")


def guarded(root: Path, *extra: str, profile: Path = ARTICLE) -> str:
    result = run("install", profile, "--root", root, "--confirm-within", "10m", *extra)
    assert result.exit_code == 0, result.stderr
    return next(line for line in result.stdout.splitlines() if line.startswith("backup: ")).split()[1]


def test_install_arms_the_guard_in_the_same_transaction_and_backup_set(root: Path) -> None:
    backup = guarded(root)
    for rel in GUARD_FILES:
        assert (root / rel).is_symlink() or (root / rel).is_file(), rel
    assert not any((root / rel).exists() for rel in CHECK_FILES)
    timer = (root / f"{UNITS}/kvmbridge-guard.timer").read_text()
    assert "\nOnBootSec=600s\n" in timer and "OnCalendar" not in timer and "WantedBy=timers.target" in timer
    assert os.readlink(root / f"{UNITS}/timers.target.wants/kvmbridge-guard.timer") == "../kvmbridge-guard.timer"
    service = (root / f"{UNITS}/kvmbridge-guard.service").read_text()
    assert f"\nExecStart={EXECUTABLE} expire-guard\n" in service
    assert "\nSuccessAction=reboot\n" in service and "\nConditionPathExists=/var/lib/kvmbridge/guard.json\n" in service
    record = json.loads((root / GUARD).read_text())
    assert (record["backup"], record["seconds"], record["duration"]) == (backup, 600, "10m")
    assert record["profile"] == ARTICLE.read_text() and record["profile_name"] == "article.toml"
    assert (root / GUARD).stat().st_mode & 0o777 == 0o600
    manifest = json.loads((root / f"var/backups/kvmbridge/{backup}/manifest.json").read_text())
    in_set = {entry["path"] for entry in manifest["files"]}
    assert {f"/{rel}" for rel in GUARD_FILES} <= in_set
    assert "/etc/network/interfaces" in in_set


def test_auto_confirm_adds_the_check_unit_after_network_online_outside_the_boot_s_critical_path(root: Path) -> None:
    guarded(root, "--auto-confirm")
    check = (root / f"{UNITS}/kvmbridge-guard-check.service").read_text()
    assert f"\nExecStart={EXECUTABLE} auto-confirm\n" in check
    assert "\nAfter=sysinit.target network-online.target libvirtd.service\n" in check
    assert "\nDefaultDependencies=no\n" in check  # multi-user.target is not ordered after it
    assert "\nType=exec\n" in check  # and the boot's jobs end when it starts, not when it finishes
    link = root / f"{UNITS}/multi-user.target.wants/kvmbridge-guard-check.service"
    assert os.readlink(link) == "../kvmbridge-guard-check.service"
    assert json.loads((root / GUARD).read_text())["auto_confirm"] is True


@pytest.mark.parametrize(
    ("duration", "message"),
    [
        ("29s", "--confirm-within: 29s is outside 30s to 24h"),
        ("25h", "--confirm-within: 25h is outside 30s to 24h"),
        ("86401s", "--confirm-within: 86401s is outside 30s to 24h"),
        ("0m", "--confirm-within: 0m is outside 30s to 24h"),
        ("10", "--confirm-within: '10' is not a duration; use a number and s, m or h (45s, 10m, 1h)"),
        ("1d", "--confirm-within: '1d' is not a duration; use a number and s, m or h (45s, 10m, 1h)"),
        ("-5m", "--confirm-within: '-5m' is not a duration; use a number and s, m or h (45s, 10m, 1h)"),
        ("1h30m", "--confirm-within: '1h30m' is not a duration; use a number and s, m or h (45s, 10m, 1h)"),
        ("45s\n", "--confirm-within: '45s\\n' is not a duration; use a number and s, m or h (45s, 10m, 1h)"),
    ],
)
def test_a_bad_duration_is_one_line_exit_2_and_nothing_written(root: Path, duration: str, message: str) -> None:
    before = tree(root)
    result = run("install", ARTICLE, "--root", root, "--confirm-within", duration)
    assert (result.exit_code, result.stderr) == (2, message + "\n")
    assert tree(root) == before


def test_durations_at_both_ends_are_accepted(tmp_path: Path) -> None:
    from kvmbridge.guard import parse_duration

    assert [parse_duration(d) for d in ("30s", "45s", "10m", "1h", "24h", "1440m")] == [30, 45, 600, 3600, 86400, 86400]


def test_auto_confirm_needs_a_guard_and_the_built_in_templates(root: Path, tmp_path: Path) -> None:
    result = run("install", ARTICLE, "--root", root, "--auto-confirm")
    assert (result.exit_code, result.stderr) == (
        2,
        "--auto-confirm: needs --confirm-within DURATION (the guard it would confirm)\n",
    )
    (tmp_path / "tpl").mkdir()
    result = run(
        "install", ARTICLE, "--root", root, "--confirm-within", "1m", "--auto-confirm", "--templates", tmp_path / "tpl"
    )
    assert result.exit_code == 2
    assert result.stderr.startswith("--auto-confirm: cannot be combined with --templates")


def refused(root: Path, *extra: str) -> str:
    before = tree(root)
    result = run("install", ARTICLE, "--root", root, "--confirm-within", "1m", *extra)
    assert result.exit_code == 3, (result.stdout, result.stderr)
    assert tree(root) == before, "a refusal must leave every file as it was"
    assert not (root / "var/backups/kvmbridge").exists()
    return result.stderr


def test_refused_when_the_root_has_no_systemd(root: Path) -> None:
    (root / "usr/lib/systemd/systemd").unlink()
    assert f"{root}/usr/lib/systemd/systemd: the target root has no systemd" in refused(root)


def test_refused_when_the_root_has_no_kvmbridge_executable(root: Path) -> None:
    (root / EXECUTABLE.lstrip("/")).unlink()
    err = refused(root)
    assert err.startswith(f"{root}: no kvmbridge executable inside the target root (looked for ")
    assert "/opt/kvmbridge/bin/kvmbridge, /usr/local/bin/kvmbridge, /usr/bin/kvmbridge)" in err


@pytest.mark.parametrize(
    ("rel", "change", "problem"),
    [
        ("opt/kvmbridge/bin/kvmbridge", "chmod o+w", "writable by others"),
        ("opt/kvmbridge/bin/kvmbridge", "chown 65534", "owned by uid 65534, not root"),
        ("opt/kvmbridge/bin", "chmod g+w", "writable by its group"),
        ("opt", "chmod 777", "writable by group and others"),
        (".", "chown 65534", "owned by uid 65534, not root"),
        ("usr/bin/python3.11", "chmod o+w", "writable by others"),  # the interpreter, through the venv's link
        ("usr/bin", "chown 65534", "owned by uid 65534, not root"),
        ("opt/kvmbridge/lib/python3.11/site-packages/kvmbridge/__init__.py", "chmod o+w", "writable by others"),
    ],
)
def test_refused_when_anyone_but_root_can_change_what_the_guard_runs(
    root: Path, rel: str, change: str, problem: str
) -> None:
    command, arg = change.split()
    subprocess.run([command, arg, str(root / rel)], check=True)
    err = refused(root)
    assert f"{(root / rel) if rel != '.' else root}: {problem}" in err
    assert err.endswith("the boot guard cannot be trusted on this target; nothing was changed\n")


def test_refused_when_the_executable_lies_on_a_temporary_file_system(root: Path) -> None:
    require_tool("unshare")
    venv = root / "opt/kvmbridge"
    script = (
        f"mount -t tmpfs -o mode=755 tmpfs {venv} && mkdir -p {venv}/bin && cp -a {root}/../keep/. {venv}/ && "
        f"exec {sys.executable} -m kvmbridge install {ARTICLE} --root {root} --confirm-within 1m"
    )
    subprocess.run(["cp", "-a", str(venv), str(root / "../keep")], check=True)
    before = tree(root)
    result = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script], capture_output=True, text=True, check=False
    )
    assert result.returncode == 3, result.stderr
    assert f"{EXECUTABLE}: lies on a temporary file system (tmpfs); it would be gone after the reboot" in result.stderr
    assert tree(root) == before


def test_while_a_guard_is_armed_another_install_is_refused_until_confirm(root: Path) -> None:
    backup = guarded(root)
    for args in (["--confirm-within", "1m"], [], ["--dry-run"], ["--force"]):
        before = tree(root)
        result = run("install", GOLDEN / "two-bridges.toml", "--root", root, *args)
        assert result.exit_code == 3, args
        assert result.stderr.startswith(
            f"{root}/{GUARD}: a boot guard is armed for backup {backup} (reverts 10m after boot)"
        )
        assert tree(root) == before
    assert run("confirm", "--root", root).exit_code == 0
    assert run("install", GOLDEN / "two-bridges.toml", "--root", root).exit_code == 0


def test_confirm_disarms_and_keeps_the_backup_set(root: Path) -> None:
    backup = guarded(root)
    state = (root / "var/lib/kvmbridge/state.json").read_bytes()
    result = run("confirm", "--root", root)
    assert result.exit_code == 0
    assert (
        result.stdout.splitlines()[0]
        == f"confirmed: the boot guard for backup {backup} is disarmed (the backup set stays)"
    )
    assert not any((root / rel).exists() or (root / rel).is_symlink() for rel in GUARD_FILES)
    assert (root / f"var/backups/kvmbridge/{backup}/manifest.json").is_file()
    assert (root / "var/lib/kvmbridge/state.json").read_bytes() == state
    again = run("confirm", "--root", root)
    assert (again.exit_code, again.stdout) == (0, f"no boot guard armed under {root}; nothing to confirm\n")
    as_json = json.loads(run("confirm", "--root", root, "--json").stdout)
    assert as_json == {"root": str(root), "was_armed": False, "backup": None, "removed": [], "warning": None}


def test_confirm_json_names_the_backup_and_what_it_removed(root: Path) -> None:
    backup = guarded(root, "--auto-confirm")
    result = run("confirm", "--root", root, "--json")
    report = json.loads(result.stdout)
    assert (result.exit_code, report["was_armed"], report["backup"]) == (0, True, backup)
    assert report["removed"][0] == f"/{GUARD}"  # first: once it is gone the units are inert
    assert sorted(report["removed"]) == sorted(f"/{rel}" for rel in [*GUARD_FILES, *CHECK_FILES])


def test_rollback_of_the_guarded_set_takes_the_guard_with_it(root: Path) -> None:
    before = tree(root)
    backup = guarded(root, "--auto-confirm")
    assert run("rollback", backup, "--root", root).exit_code == 0
    after = {k: v for k, v in tree(root).items() if not k.startswith("var/")}
    assert after == {k: v for k, v in before.items() if not k.startswith("var/")}
    assert not (root / GUARD).exists()


def test_rollback_of_another_set_is_refused_while_a_guard_is_armed(root: Path) -> None:
    first = run("install", GOLDEN / "two-bridges.toml", "--root", root)
    assert first.exit_code == 0
    older = next(line for line in first.stdout.splitlines() if line.startswith("backup: ")).split()[1]
    backup = guarded(root)
    before = tree(root)
    result = run("rollback", older, "--root", root)
    assert result.exit_code == 3
    assert result.stderr.startswith(f"{root}/{GUARD}: a boot guard is armed for backup {backup}; roll back that one")
    assert tree(root) == before


def test_the_revert_restores_the_old_files_byte_for_byte_and_says_so(root: Path) -> None:
    before = tree(root)
    backup = guarded(root, "--auto-confirm")
    result = run("expire-guard", "--root", root)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(
        f"kvmbridge boot guard: not confirmed within 10m after boot: restored backup {backup} "
    )
    after = tree(root)
    assert {k: v for k, v in after.items() if not k.startswith("var/")} == {
        k: v for k, v in before.items() if not k.startswith("var/")
    }
    assert not (root / GUARD).exists()
    report = json.loads((root / "var/lib/kvmbridge/guard-expired.json").read_text())
    assert report["backup"] == backup and report["reason"] == "not confirmed within 10m after boot"
    assert "/etc/network/interfaces" in report["restored"] and f"/{GUARD}" in report["removed"]
    assert run("rollback", report["undo"], "--root", root).exit_code == 0  # the revert itself can be undone
    assert not (root / GUARD).exists()  # ... without arming the guard again (see below)


def test_undoing_the_revert_brings_the_install_back_without_re_arming_the_guard(root: Path) -> None:
    """Outside review finding F10: the printed `kvmbridge rollback U` restored guard.json and the timer with
    the old deadline, silently: the next boot reverted again unless the admin also thought of `confirm`.
    A rollback never arms a guard, says so, and takes the now stale expiry report with it (undoably)."""
    guarded(root)
    installed = tree(root)
    expired = run("expire-guard", "--root", root)
    undo = expired.stdout.splitlines()[-1].split("kvmbridge rollback ")[1].split()[0]
    assert expired.stdout.splitlines()[-1].endswith("(brings this install back without its guard)")
    result = run("rollback", undo, "--root", root)
    assert result.exit_code == 0, result.stderr
    assert (
        "boot guard: not re-armed (a rollback never arms one): the next boot keeps this configuration; "
        "check it with `kvmbridge status PROFILE`"
    ) in result.stdout.splitlines()
    assert "  removed   var/lib/kvmbridge/guard-expired.json" in result.stdout.splitlines()
    now = tree(root)
    for rel in [*GUARD_FILES, EXPIRED]:
        assert rel not in now, rel
    configuration = {k: v for k, v in installed.items() if k.startswith("etc/") and k not in GUARD_FILES}
    assert {k: v for k, v in now.items() if k in configuration} == configuration
    shown = [line for line in run("status", ARTICLE, "--root", root).stdout.splitlines() if "boot guard" in line]
    assert shown == ["boot guard: not armed"]
    assert run("install", GOLDEN / "two-bridges.toml", "--root", root, "--dry-run").exit_code == 0  # not armed
    again = result.stdout.splitlines()[-1].split("kvmbridge rollback ")[1].split()[0]
    assert run("rollback", again, "--root", root).exit_code == 0  # and that is undoable too
    assert (root / EXPIRED).exists() and not (root / GUARD).exists()


def test_status_and_backups_show_an_armed_guard_then_an_expired_one(root: Path) -> None:
    backup = guarded(root)
    listing = run("backups", "--root", root).stdout.splitlines()
    assert listing[-1].startswith(f"boot guard: armed for backup {backup} (armed ")
    assert listing[-1].endswith("reverts 10m after boot unless `kvmbridge confirm`")
    assert "etc/systemd" not in listing[1]  # the guard's own units are not "files" of the set
    status = run("status", ARTICLE, "--root", root, "--json")
    report = json.loads(status.stdout)
    assert report["guard"]["armed"] is True and report["guard"]["backup"] == backup
    assert report["guard"]["seconds"] == 600 and "profile" not in report["guard"]
    run("expire-guard", "--root", root)
    report = json.loads(run("status", ARTICLE, "--root", root, "--json").stdout)
    assert report["guard"] == {"armed": False}
    assert report["guard_expired"]["backup"] == backup
    assert any(
        line.startswith("boot guard: expired at ")
        for line in run("status", ARTICLE, "--root", root).stdout.splitlines()
    )


EXPIRED = "var/lib/kvmbridge/guard-expired.json"


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda r: {}, "damaged (Object missing required field `version`)"),
        (lambda r: {**r, "reason": "a\nb: injected line"}, "damaged (reason or duration: not what the guard writes)"),
        (lambda r: {**r, "undo": 7}, "damaged (Expected `str | null`, got `int` - at `$.undo`)"),
        (lambda r: {**r, "undo": "None"}, "damaged (undo: not a backup set ID)"),
        (lambda r: {**r, "time": "now\nrun kvmbridge rollback x"}, "damaged (time or boot_id: not a time stamp)"),
        (lambda r: {**r, "restored": ["/etc/shadow"]}, "damaged (restored or removed: not a path kvmbridge writes)"),
        (lambda r: {**r, "x\ny": 1}, "damaged (Object contains unknown field `x\\ny`)"),
        (lambda r: [r], "damaged (Expected `object`, got `array`)"),
    ],
)
def test_a_tampered_expiry_record_is_never_printed(root: Path, change: Any, problem: str) -> None:
    """Outside review finding F12: guard-expired.json was printed as found, `rollback None` and injected lines."""
    guarded(root)
    assert run("expire-guard", "--root", root).exit_code == 0
    record = json.loads((root / EXPIRED).read_text())
    (root / EXPIRED).write_text(json.dumps(change(record)))
    status = run("status", ARTICLE, "--root", root)
    assert status.stderr == ""
    shown = [line for line in status.stdout.splitlines() if line.startswith("boot guard: ")]
    assert shown == [
        f"boot guard: last expiry record unusable: {root}/{EXPIRED}: {problem}; not shown",
        "boot guard: not armed",
    ]
    assert not [line for line in status.stdout.splitlines() if "injected" in line or "run kvmbridge" in line]
    report = json.loads(run("status", ARTICLE, "--root", root, "--json").stdout)
    assert report["guard_expired"] == {"error": f"{root}/{EXPIRED}: {problem}; not shown"}


def test_an_expiry_record_that_is_a_symlink_is_not_followed(root: Path, tmp_path: Path) -> None:
    guarded(root)
    run("expire-guard", "--root", root)
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text((root / EXPIRED).read_text())
    (root / EXPIRED).unlink()
    (root / EXPIRED).symlink_to(elsewhere)
    shown = [line for line in run("status", ARTICLE, "--root", root).stdout.splitlines() if "expir" in line]
    assert shown == [f"boot guard: last expiry record unusable: {root}/{EXPIRED}: not a regular file; not shown"]


# --- guard.json is data, not orders ------------------------------------------------------------


def tamper(root: Path, **changes: object) -> None:
    record = json.loads((root / GUARD).read_text())
    record.update(changes)
    (root / GUARD).write_text(json.dumps(record))


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"backup": "../../../etc"}, "backup: not a backup set ID"),
        ({"backup": "20261128T170000.000000Z/../x"}, "backup: not a backup set ID"),
        ({"seconds": 5}, "seconds: outside 30s to 24h"),
        ({"executable": "/bin/sh -c reboot"}, "executable: not a plain absolute path"),
        ({"version": 2}, "unknown version 2"),
        ({"extra": "field"}, "Object contains unknown field `extra`"),
        ({"backup": 7}, "Expected `str`, got `int`"),
        ({"backup": "20261128T170000.000000Z\n"}, "backup: not a backup set ID"),
        ({"executable": "/opt/kvmbridge/bin/kvmbridge\n"}, "executable: not a plain absolute path"),
        ({"duration": "10m\nExecStart=/bin/sh"}, "duration: not the record's seconds"),
        ({"duration": "1h"}, "duration: not the record's seconds"),
        ({"armed_at": "now\nrun kvmbridge rollback"}, "armed_at: not a time stamp"),
    ],
)
def test_a_tampered_record_is_never_obeyed(root: Path, changes: dict[str, object], problem: str) -> None:
    guarded(root)
    tamper(root, **changes)
    before = tree(root)
    result = run("expire-guard", "--root", root)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"{root}/{GUARD}: damaged guard record (")
    assert problem in result.stderr and len(result.stderr.splitlines()) == 1
    assert tree(root) == before
    assert run("install", GOLDEN / "two-bridges.toml", "--root", root).exit_code == 3
    confirmed = run("confirm", "--root", root)
    assert confirmed.exit_code == 0 and confirmed.stdout.startswith("warning: ")
    assert not (root / GUARD).exists()


def test_a_profile_at_the_size_limit_arms_a_guard_that_really_reverts(root: Path, tmp_path: Path) -> None:
    """Outside review finding F1: guard.json embeds the profile JSON-escaped; a profile near 1 MiB made a
    record over the reader's limit, so install said "armed" and the guard at boot refused its own record."""
    from kvmbridge.profile import PROFILE_LIMIT

    text = ARTICLE.read_text() + "\n#"
    big = tmp_path / "article.toml"
    big.write_text(text + '"' * (PROFILE_LIMIT - len(text.encode()) - 1) + "\n")  # `"` doubles in JSON
    assert big.stat().st_size == PROFILE_LIMIT
    before = tree(root)
    backup = guarded(root, profile=big)
    assert (root / GUARD).stat().st_size > 2 * 1000 * 1000
    assert json.loads(run("status", big, "--root", root, "--json").stdout)["guard"]["backup"] == backup
    result = run("expire-guard", "--root", root)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(
        f"kvmbridge boot guard: not confirmed within 10m after boot: restored backup {backup}"
    )
    after = tree(root)
    assert {k: v for k, v in after.items() if not k.startswith("var/")} == {
        k: v for k, v in before.items() if not k.startswith("var/")
    }


def test_a_record_the_guard_could_not_read_back_is_never_written(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the limits: install checks the exact record against read_guard before the first write."""
    import kvmbridge.guard

    monkeypatch.setattr(kvmbridge.guard, "MAX_RECORD_BYTES", 512)
    err = refused(root)  # refused before the preflight warns: the record is checked with the gate
    assert err == (
        "/var/lib/kvmbridge/guard.json: the guard record for article.toml would not be readable at boot "
        "(larger than 512 bytes); nothing was changed\n"
    )


def test_a_record_that_is_a_symlink_fifo_or_huge_is_refused_without_reading_it(root: Path, tmp_path: Path) -> None:
    guarded(root)
    secret = tmp_path / "elsewhere.json"
    secret.write_text((root / GUARD).read_text())
    for make in (
        lambda p: p.symlink_to(secret),
        os.mkfifo,
        lambda p: p.write_bytes(b" " * (MAX_RECORD_BYTES + 1)),
    ):
        (root / GUARD).unlink()
        make(root / GUARD)
        result = run("expire-guard", "--root", root)
        assert result.exit_code == 2 and result.stderr.startswith(f"{root}/{GUARD}: the guard record ")
    assert secret.exists()


def test_confirm_never_removes_through_a_symlinked_folder(root: Path, tmp_path: Path) -> None:
    guarded(root)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "kvmbridge-guard.timer").write_text("not ours\n")
    wants = root / f"{UNITS}/timers.target.wants"
    for child in wants.iterdir():
        child.unlink()
    wants.rmdir()
    wants.symlink_to(outside)
    before = tree(root)
    result = run("confirm", "--root", root)
    assert result.exit_code == 3
    assert (
        result.stderr
        == f"{wants}: is a symlink; refusing to remove /{UNITS}/timers.target.wants/kvmbridge-guard.timer through it; nothing was changed\n"
    )
    assert tree(root) == before
    assert (outside / "kvmbridge-guard.timer").read_text() == "not ours\n"


def test_a_record_naming_an_older_set_that_did_not_arm_it_reverts_nothing(root: Path) -> None:
    """Outside review finding: the guard reverted that older set, stayed armed, and rebooted at every boot."""
    first = run("install", GOLDEN / "two-bridges.toml", "--root", root)
    assert first.exit_code == 0, first.stderr
    older = next(line for line in first.stdout.splitlines() if line.startswith("backup: ")).split()[1]
    guarded(root)
    tamper(root, backup=older)
    before = tree(root)
    result = run("expire-guard", "--root", root)
    assert result.exit_code == 3, result.output
    assert (
        result.stderr
        == f"{root}/{GUARD}: backup {older} did not arm this guard; refusing to revert it; nothing reverted\n"
    )
    assert tree(root) == before


def test_the_revert_checks_under_the_lock_that_the_guard_is_still_armed(root: Path) -> None:
    """Outside review finding: expire read guard.json before the lock, so a `confirm` in between was overridden."""
    from kvmbridge.errors import RefusedError
    from kvmbridge.install import rollback
    from kvmbridge.root import Root

    backup = guarded(root)
    assert run("confirm", "--root", root).exit_code == 0
    before = tree(root)
    with pytest.raises(RefusedError, match=f"no boot guard is armed for backup {backup} any more"):
        rollback(Root(root), backup, force=True, for_guard=True)
    assert tree(root) == before


# --- auto-confirm judges what was installed, whatever kvmbridge runs at boot ----------------------

SKEWED_AUTO_CONFIRM = """
import sys
from pathlib import Path

import kvmbridge.render
from kvmbridge.guard import read_guard
from kvmbridge.guardrun import auto_confirm, guarded_profile
from kvmbridge.root import Root

kvmbridge.render.builtin_templates = lambda: Path(sys.argv[1])  # this kvmbridge renders other bytes
root = Root(Path(sys.argv[2]))
record = read_guard(root)
skewed = {f.path: f.data for f in kvmbridge.render.render(guarded_profile(root, record))}
assert skewed["/etc/network/interfaces"] != root.read("/etc/network/interfaces").data, "no skew to test"
_, check, _ = auto_confirm(root, window=float(sys.argv[3]), pause=0.5)
print("\\n".join([*check.lines(), "passed" if check.passed else "failed"]))
"""


def test_auto_confirm_checks_the_installed_hashes_not_a_render_by_the_kvmbridge_running_at_boot(
    tmp_path: Path,
) -> None:
    """Outside review finding F13: auto-confirm re-rendered with the boot-time kvmbridge, so a version whose
    template differs only in a comment found every file "different" and the guard reverted a good boot."""
    import msgspec

    from kvmbridge.render import builtin_templates

    from .bootcheck import boot, profile_toml
    from .netns import Lab
    from .test_livestatus import article

    require_root()
    for tool in ("ip", "ifup", "brctl", "unshare", "ping", "sysctl"):
        require_tool(tool)
    profile = msgspec.structs.replace(article(), networks={})
    path = tmp_path / profile.source_name
    path.write_text(profile_toml(profile))
    root = guardable_root(tmp_path / "root")
    guarded(root, "--auto-confirm", profile=path)
    templates = tmp_path / "templates"
    shutil.copytree(builtin_templates(), templates)
    skewed = templates / "etc/network/interfaces.j2"
    skewed.write_text(skewed.read_text().replace("reads this file at boot", "reads this file when the host boots"))
    interfaces = root / "etc/network/interfaces"
    installed = interfaces.read_bytes()
    with Lab() as lab:
        lab.wire_ports(profile)
        boot(profile, root, lab)
        command = [sys.executable, "-c", SKEWED_AUTO_CONFIRM, str(templates), str(root)]
        interfaces.write_bytes(installed + b"# edited after the install\n")  # a real change still counts
        result = lab.sh(lab.host, shlex.join([*command, "0"]), check=False)
        assert (result.returncode, result.stdout.splitlines()) == (
            0,
            ["etc/network/interfaces: installed file: expected as installed, found different", "failed"],
        ), result.stderr
        assert (root / GUARD).exists()
        interfaces.write_bytes(installed)
        result = lab.sh(lab.host, shlex.join([*command, "10"]), check=False)
        assert (result.returncode, result.stdout.splitlines()) == (0, ["passed"]), result.stdout + result.stderr
    assert not (root / GUARD).exists()


def test_auto_confirm_names_each_file_changed_gone_or_back_since_the_guarded_install(root: Path) -> None:
    """What the self-check compares: the guarded set's recorded hashes, for every file it wrote or removed."""
    from kvmbridge.guard import read_guard
    from kvmbridge.guardrun import installed_files
    from kvmbridge.root import Root

    assert run("install", GOLDEN / "two-bridges.toml", "--root", root).exit_code == 0
    lab_xml = (root / "etc/libvirt/qemu/networks/lab.xml").read_bytes()
    backup = guarded(root, "--auto-confirm")  # the article's render removes two-bridges' networks
    target = Root(root)
    record = read_guard(target)
    assert record is not None
    files, differ = installed_files(target, record)
    assert differ == () and "/etc/network/interfaces" in {f.path for f in files}
    (root / "etc/libvirt/qemu/networks/lab.xml").write_bytes(lab_xml)
    (root / "etc/sysctl.d/ip_forward.conf").unlink()
    with (root / "etc/network/interfaces").open("a") as handle:
        handle.write("# edited\n")
    files, differ = installed_files(target, record)
    assert sorted(differ) == [
        ("/etc/libvirt/qemu/networks/lab.xml", "kept"),
        ("/etc/network/interfaces", "changed"),
        ("/etc/sysctl.d/ip_forward.conf", "gone"),
    ]
    assert "/etc/network/interfaces" not in {f.path for f in files}
    state = json.loads((root / "var/lib/kvmbridge/state.json").read_text())
    (root / "var/lib/kvmbridge/state.json").write_text(json.dumps({**state, "backup": "20000101T000000.000000Z"}))
    result = run("auto-confirm", "--root", root)
    assert result.exit_code == 2 and (root / GUARD).exists()
    assert result.stderr == (
        f"{root}/var/lib/kvmbridge/state.json: written by backup 20000101T000000.000000Z, not by the guarded "
        f"backup {backup}; cannot tell what the guarded install wrote\n"
    )


LIBVIRT_DEFINE = r"""
set -e
for d in /run/libvirt /var/lib/libvirt /var/cache/libvirt /var/log/libvirt; do mkdir -p "$d"; mount -t tmpfs tmpfs "$d"; done
mkdir -p /var/lib/libvirt/qemu /var/lib/libvirt/dnsmasq
mount --bind "$ROOT/etc/libvirt/qemu" /etc/libvirt/qemu
libvirtd --daemon --pid-file /run/libvirt/kvmbridge-test.pid
for i in $(seq 100); do [ -S /run/libvirt/libvirt-sock ] && break; sleep 0.1; done
virsh -q -c qemu:///system net-define "/etc/libvirt/qemu/networks/$NET.xml" >/dev/null
virsh -q -c qemu:///system net-autostart --disable "$NET" >/dev/null
virsh -q -c qemu:///system net-autostart "$NET" >/dev/null
kill "$(cat /run/libvirt/kvmbridge-test.pid)"
"""


def test_auto_confirm_takes_the_network_libvirt_itself_rewrote_on_net_define_but_no_other_change(root: Path) -> None:
    """Outside review finding F3 (ATTACK10b): the admin runs the `virsh net-define` install prints, libvirt
    re-saves the XML (its own header, other quoting) and `net-autostart` (after a `--disable`) makes our link
    absolute; auto-confirm
    called both "changed" and the guard reverted a good boot. Judged now by libvirt's format (as `diff` does),
    against the guarded profile's render when that render is byte for byte what was installed."""
    from kvmbridge.guard import read_guard
    from kvmbridge.guardrun import installed_files
    from kvmbridge.root import Root

    for tool in ("libvirtd", "virsh", "unshare"):
        require_tool(tool)
    guarded(root, "--auto-confirm")
    xml = root / "etc/libvirt/qemu/networks/bridge-network.xml"
    link = root / "etc/libvirt/qemu/networks/autostart/bridge-network.xml"
    installed = xml.read_bytes()
    env = {**os.environ, "ROOT": str(root), "NET": "bridge-network"}
    subprocess.run(
        ["unshare", "-m", "-n", "--propagation", "private", "sh", "-c", LIBVIRT_DEFINE],
        env=env,
        check=True,
        timeout=120,
    )
    assert xml.read_bytes() != installed and b"AUTO-GENERATED" in xml.read_bytes(), "libvirt did not rewrite it"
    assert os.readlink(link) == "/etc/libvirt/qemu/networks/bridge-network.xml"
    target = Root(root)
    record = read_guard(target)
    assert record is not None
    files, differ = installed_files(target, record)
    assert differ == () and xml.as_posix().removeprefix(root.as_posix()) in {f.path for f in files}
    rewritten = xml.read_bytes()
    xml.write_bytes(rewritten.replace(b"<forward mode='bridge'/>", b"<forward mode='nat'/>"))
    assert xml.read_bytes() != rewritten
    assert installed_files(target, record)[1] == (("/etc/libvirt/qemu/networks/bridge-network.xml", "changed"),)
    xml.write_bytes(rewritten)
    os.unlink(link)
    link.symlink_to("/etc/libvirt/qemu/networks/other.xml")
    assert installed_files(target, record)[1] == (
        ("/etc/libvirt/qemu/networks/autostart/bridge-network.xml", "changed"),
    )


def test_the_guard_units_clear_every_python_variable_systemd_could_pass(root: Path) -> None:
    """ATTACK10b F4c: `DefaultEnvironment=PYTHONPATH=/home/u/lib` in /etc/systemd put a user's folder
    first on the guard's sys.path; the units unset the variables themselves (applied last by systemd)."""
    guarded(root, "--auto-confirm")
    for unit in ("kvmbridge-guard.service", "kvmbridge-guard-check.service"):
        text = (root / UNITS / unit).read_text()
        unset = next(line for line in text.splitlines() if line.startswith("UnsetEnvironment="))
        names = set(unset.removeprefix("UnsetEnvironment=").split())
        assert {"PYTHONPATH", "PYTHONHOME", "PYTHONUSERBASE", "PYTHONPYCACHEPREFIX", "PYTHONSTARTUP"} <= names
        assert text.index("UnsetEnvironment=") < text.index("ExecStart=")


@pytest.mark.usefixtures("terminal_signals")
def test_a_signal_once_the_revert_committed_still_writes_its_record_and_report(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ATTACK9c F4: a SIGTERM (shutdown racing the deadline) right after the revert's rollback left no
    guard-expired.json and no "undo the revert" line, and the unit still ended clean."""
    import signal

    from kvmbridge import interrupts

    backup = guarded(root)
    commit = interrupts.commit

    def committed() -> None:
        commit()
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr("kvmbridge.transaction.commit", committed)
    result = run("expire-guard", "--root", root)
    monkeypatch.undo()
    assert result.exit_code == 0, result.stderr
    assert "kvmbridge: SIGTERM arrived once the work was done: it stands as reported" in result.stderr
    assert result.stdout.splitlines()[-1].startswith("kvmbridge boot guard: undo the revert with: kvmbridge rollback ")
    assert json.loads((root / EXPIRED).read_text())["backup"] == backup


@pytest.mark.usefixtures("terminal_signals")
def test_a_signal_during_confirm_never_leaves_half_the_guard_or_a_false_error(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ATTACK9c F6: a signal during the removals became "guard.json: cannot remove: interrupted" (exit 2)
    naming a file that was removed. Now the removals go together: all done (exit 0) or none (exit 4)."""
    import signal

    guarded(root)
    pristine = root.with_name("armed")
    shutil.copytree(root, pristine, symlinks=True)
    step = 0
    while True:
        step += 1
        shutil.rmtree(root)
        shutil.copytree(pristine, root, symlinks=True)
        count = signal_at_step(monkeypatch, step, signal.SIGTERM)
        result = run("confirm", "--root", root)
        monkeypatch.undo()
        left = [rel for rel in GUARD_FILES if (root / rel).exists() or (root / rel).is_symlink()]
        if count["n"] < step:  # no signal was sent: every step is covered
            break
        assert result.exit_code in (0, 4), (step, result.exit_code, result.stderr)
        assert left == ([] if result.exit_code == 0 else GUARD_FILES), (step, result.stderr)
    assert step > len(GUARD_FILES), step
