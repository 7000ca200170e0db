"""Interrupted transactions: signals undo like any failure; after kills, the way back survives.

Reproducer 4 of issue 9: SIGKILL right after `interfaces` was replaced,
`install` again, then the printed `rollback` left the new file in place
(the second set had recorded the half-installed state as "before"); Ctrl-C
printed `Aborted!`, exited 1 and left `interfaces` replaced with no state.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kvmbridge.errors import RolledBackError
from kvmbridge.install import install, rollback
from kvmbridge.profile import load_profile
from kvmbridge.render import render
from kvmbridge.root import Interrupted, Root, sha256_of
from kvmbridge.state import list_backups, read_state

from .conftest import GOLDEN, REPO, run, tree
from .roots import (
    FaultyRoot,
    Killed,
    KillingRoot,
    after_rule_findings,
    etc_files,
    no_traceback,
    seed_old_host,
    signal_at_step,
    snapshot,
)

pytestmark = pytest.mark.usefixtures("terminal_signals")

ARTICLE = GOLDEN / "article.toml"
OTHER = GOLDEN / "two-bridges.toml"


def steps_of_install(base: Path, profile: Path = ARTICLE) -> list[str]:
    """Every change a full install makes to a fresh copy of the old host, in order."""
    return steps_on(seed_old_host(base / "count"), profile)


def steps_on(root: Path, profile: Path = ARTICLE) -> list[str]:
    """Every change a full install makes to `root`, in order; `root` is deleted afterwards."""
    counter = KillingRoot(root, 0)
    loaded = load_profile(profile)
    install(loaded, render(loaded), counter, profile_path=profile, force=False)
    shutil.rmtree(root)
    return counter.log


def killed_install(root: Path, step: int, profile: Path = ARTICLE) -> bool:
    """Install, dying at `step`; True when it was killed before finishing."""
    loaded = load_profile(profile)
    try:
        install(loaded, render(loaded), KillingRoot(root, step), profile_path=profile, force=False)
    except Killed:
        return True
    return False


def kvmbridge(*args: str | Path, kill_at: int, sig: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "KILL_AT": str(kill_at), "KILL_SIGNAL": sig}
    command = [sys.executable, str(REPO / "tests/kill_at.py"), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, check=False, env=env)


def printed_rollback_id(stdout: str) -> str:
    line = next(line for line in stdout.splitlines() if line.startswith("undo with: kvmbridge rollback "))
    return line.split()[4]


def test_sigkill_after_interfaces_is_replaced_then_install_then_printed_rollback_brings_back_the_original(
    tmp_path: Path,
) -> None:
    """The exact reproducer, with a real process and a real SIGKILL."""
    log = steps_of_install(tmp_path)
    step = next(i for i, s in enumerate(log, 1) if s == f"rename {tmp_path}/count/etc/network/interfaces")
    root = seed_old_host(tmp_path / "root")
    old = etc_files(root)
    killed = kvmbridge("install", ARTICLE, "--root", root, kill_at=step + 1, sig="KILL")  # just after the rename
    assert killed.returncode == -signal.SIGKILL
    assert etc_files(root)["etc/network/interfaces"] != old["etc/network/interfaces"]  # the half-installed state
    again = run("install", ARTICLE, "--root", root)
    assert again.exit_code == 0, again.stderr
    undo = run("rollback", printed_rollback_id(again.stdout), "--root", root)
    assert undo.exit_code == 0, undo.stderr
    assert etc_files(root) == old


def _sequence_points(n: int, first: int) -> Iterator[int]:
    """Second-kill steps after a first kill at `first`: the same step and one spread over the run.

    Every first step meets every region of the second run across the loop, at a cost CI can afford.
    """
    yield from sorted({first, (first * 7) % n + 1})


def test_kill_at_every_step_rerun_and_kill_again_then_one_rollback_restores_the_originals(tmp_path: Path) -> None:
    """Crash sequences: kill, re-run (killed again, perhaps with another profile), finish; then roll back."""
    pristine = seed_old_host(tmp_path / "pristine")
    old = tree(pristine / "etc")
    n = len(steps_of_install(tmp_path))
    sequences = 0
    for first in range(1, n + 1):
        once = tmp_path / f"k{first}"
        shutil.copytree(pristine, once, symlinks=True)
        assert killed_install(once, first)
        for second in _sequence_points(n, first):
            for profile in (ARTICLE, OTHER) if second == first else (ARTICLE,):
                twice = tmp_path / f"k{first}-{second}-{profile.stem}"
                shutil.copytree(once, twice, symlinks=True)
                killed_install(twice, second, profile)
                # Path A: roll back the newest set straight away.
                direct = twice.with_name(twice.name + "-direct")
                shutil.copytree(twice, direct, symlinks=True)
                if list_backups(Root(direct)):
                    rollback(Root(direct), None, force=False)
                    assert tree(direct / "etc") == old, (first, second, profile.stem, "direct")
                # Path B: finish with an install (never refused for drift), then its printed rollback.
                loaded = load_profile(profile)
                result = install(loaded, render(loaded), Root(twice), profile_path=profile, force=False)
                # No new set only when nothing was left unfinished: then the newest set is the way back.
                rollback(Root(twice), result.manifest.id if result.manifest else None, force=False)
                assert tree(twice / "etc") == old, (first, second, profile.stem, "after install")
                shutil.rmtree(twice)
                shutil.rmtree(direct)
                sequences += 1
        shutil.rmtree(once)
    assert sequences >= 2 * n, sequences


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_at_any_step_undoes_the_install_and_exits_4(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sig: signal.Signals
) -> None:
    pristine = seed_old_host(tmp_path / "pristine")
    old = etc_files(pristine)
    n = len(steps_of_install(tmp_path))
    every = 1 if sig == signal.SIGINT else 4  # SIGINT at every step; the others spread over the run
    for step in range(1, n + 1, every):
        root = tmp_path / f"{sig.name}{step}"
        shutil.copytree(pristine, root, symlinks=True)
        signal_at_step(monkeypatch, step, sig)
        result = run("install", ARTICLE, "--root", root)
        monkeypatch.undo()
        assert result.exit_code == 4, (step, result.exit_code, result.stdout, result.stderr)
        assert f"interrupted by {sig.name}" in after_rule_findings(result.stderr, "KB206").splitlines()[0], (
            step,
            result.stderr,
        )
        assert "nothing changed" in result.stderr or "nothing was changed" in result.stderr
        assert no_traceback(result.stdout, result.stderr) and "Aborted!" not in result.stderr
        assert etc_files(root) == old, step
        assert list_backups(Root(root)) == [], step
        assert run("install", ARTICLE, "--root", root).exit_code == 0, step
        shutil.rmtree(root)


def test_a_signal_during_rollback_undoes_it_and_exits_4(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pristine = seed_old_host(tmp_path / "pristine")
    assert run("install", ARTICLE, "--root", pristine).exit_code == 0
    installed = etc_files(pristine)
    step = 1
    while True:
        root = tmp_path / f"r{step}"
        shutil.copytree(pristine, root, symlinks=True)
        signal_at_step(monkeypatch, step, signal.SIGTERM)
        result = run("rollback", "--root", root)
        monkeypatch.undo()
        if result.exit_code == 0:
            break
        assert result.exit_code == 4, (step, result.stderr)
        assert etc_files(root) == installed, step
        step += 1
    assert step > 20, step


@pytest.mark.parametrize("sig", ["TERM", "INT"])
def test_real_signal_to_a_running_install_prints_the_report_and_exits_4(tmp_path: Path, sig: str) -> None:
    log = steps_of_install(tmp_path)
    step = next(i for i, s in enumerate(log, 1) if s == f"rename {tmp_path}/count/etc/network/interfaces")
    root = seed_old_host(tmp_path / "root")
    old = etc_files(root)
    result = kvmbridge("install", ARTICLE, "--root", root, kill_at=step, sig=sig)
    assert result.returncode == 4, result.stderr
    assert after_rule_findings(result.stderr, "KB206").splitlines()[0] == (
        f"failed: interrupted by SIG{sig}; every file was restored as it was, nothing changed"
    )
    assert etc_files(root) == old


def test_a_killed_runs_file_the_next_profile_no_longer_renders_is_removed_and_never_left_untracked(
    tmp_path: Path,
) -> None:
    """Killed at every step of an install of ARTICLE, then OTHER installed, which renders neither
    bridge-network.xml, its autostart link nor ip_forward.conf. Before, a kill before the state.json
    rename left ARTICLE's files in place and in no state.json: never removed, never checked for drift.
    Now each path holds what a finished ARTICLE-then-OTHER leaves or what was there before kvmbridge,
    state.json records every file kvmbridge left, OTHER again is nothing to do, and the printed
    rollback brings back the original host."""
    pristine = seed_old_host(tmp_path / "pristine")
    old = tree(pristine / "etc")
    reference = tmp_path / "reference"
    shutil.copytree(pristine, reference, symlinks=True)
    for profile in (ARTICLE, OTHER):
        loaded = load_profile(profile)
        install(loaded, render(loaded), Root(reference), profile_path=profile, force=False)
    expected = tree(reference / "etc")
    other = load_profile(OTHER)
    for step in range(1, len(steps_of_install(tmp_path)) + 1):
        root = tmp_path / f"k{step}"
        shutil.copytree(pristine, root, symlinks=True)
        assert killed_install(root, step)
        result = install(other, render(other), Root(root), profile_path=OTHER, force=False)
        now = tree(root / "etc")
        for rel in {*now, *expected, *old}:
            assert now.get(rel) in (expected.get(rel), old.get(rel)), (step, rel)
        recorded = read_state(Root(root)).files
        for rel, (kind, content) in now.items():
            if old.get(rel) != (kind, content):  # kvmbridge's: recorded with what it holds
                data = content if isinstance(content, bytes) else None
                assert recorded.get(f"/etc/{rel}") == sha256_of(data, None if data else str(content)), (step, rel)
        assert install(other, render(other), Root(root), profile_path=OTHER, force=False).manifest is None, step
        rollback(Root(root), result.manifest.id if result.manifest else None, force=False)
        assert tree(root / "etc") == old, step
        shutil.rmtree(root)


def test_a_killed_rollback_s_restored_originals_stay_the_admin_s_for_the_next_install(tmp_path: Path) -> None:
    """ATTACK10b F5: a rollback killed after it put the host's own interfaces back, then an install of a
    profile that no longer renders that file: 40f714a's carry took the restored original for a file
    kvmbridge wrote and removed it (a finished rollback leaves it). A killed rollback's restores are the
    admin's again; what it had not restored yet (kvmbridge's content) is still kvmbridge's to remove."""
    netplan = GOLDEN / "netplan-article.toml"
    installed = seed_old_host(tmp_path / "installed")
    original = (installed / "etc/network/interfaces").read_bytes()
    loaded = load_profile(ARTICLE)
    install(loaded, render(loaded), Root(installed), profile_path=ARTICLE, force=False)
    ours = (installed / "etc/network/interfaces").read_bytes()
    other = load_profile(netplan)
    step, restored_seen = 0, 0
    while True:
        step += 1
        root = tmp_path / f"k{step}"
        shutil.copytree(installed, root, symlinks=True)
        try:
            rollback(KillingRoot(root, step), None, force=False)
        except Killed:
            pass
        else:
            break
        interfaces = root / "etc/network/interfaces"
        before = interfaces.read_bytes()
        install(other, render(other), Root(root), profile_path=netplan, force=True)
        if before == original:
            restored_seen += 1
            assert interfaces.read_bytes() == original, step
        else:
            assert before == ours, step
            assert not interfaces.exists(), step  # kvmbridge's own: removed as after a finished install
        shutil.rmtree(root)
    assert restored_seen, "no kill fell after the original was restored"


def test_a_second_signal_while_the_first_unwinds_never_skips_the_undo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ATTACK9c F1: a second signal landing before the undo had set its flag raised again inside
    `except`, skipped the undo and reported "nothing was changed" over a half-installed root (exit 4)."""
    pristine = seed_old_host(tmp_path / "pristine")
    old = etc_files(pristine)
    for step in range(1, len(steps_of_install(tmp_path)) + 1, 2):
        root = tmp_path / f"s{step}"
        shutil.copytree(pristine, root, symlinks=True)
        signal_at_step(monkeypatch, step, signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        result = run("install", ARTICLE, "--root", root)
        monkeypatch.undo()
        assert result.exit_code == 4, (step, result.stderr)
        assert etc_files(root) == old, step
        assert list_backups(Root(root)) == [], step
        assert no_traceback(result.stdout, result.stderr), step
        shutil.rmtree(root)


def _signal_once_committed(monkeypatch: pytest.MonkeyPatch, sig: signal.Signals) -> None:
    """A signal the moment the transaction commits: after its last change, before anything is printed."""
    from kvmbridge import interrupts

    commit = interrupts.commit

    def committed() -> None:
        commit()
        os.kill(os.getpid(), sig)

    monkeypatch.setattr(interrupts, "commit", committed)
    for module in ("kvmbridge.transaction", "kvmbridge.guardrun"):
        monkeypatch.setattr(f"{module}.commit", committed)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_once_the_install_committed_keeps_its_report_and_its_exit_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sig: signal.Signals
) -> None:
    """ATTACK9c F2/F5: a finished install was reported as "nothing was changed" (exit 4), died with a
    traceback, or died by the signal before printing the backup ID and the way back."""
    root = seed_old_host(tmp_path / "root")
    _signal_once_committed(monkeypatch, sig)
    result = run("install", ARTICLE, "--root", root)
    monkeypatch.undo()
    assert result.exit_code == 0, result.stderr
    assert any(line.startswith("undo with: kvmbridge rollback ") for line in result.stdout.splitlines())
    assert f"kvmbridge: {sig.name} arrived once the work was done: it stands as reported" in result.stderr
    assert no_traceback(result.stdout, result.stderr)
    assert run("install", ARTICLE, "--root", root).stdout.startswith("nothing to do: ")


def test_a_signal_during_the_rollback_s_cleanup_is_not_swallowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ATTACK9c F6: `remove_empty_folders` after the rollback committed caught the `Interrupted` of a
    signal as any OSError: exit 0, the signal lost without a word."""
    root = seed_old_host(tmp_path / "root")
    assert run("install", ARTICLE, "--root", root).exit_code == 0
    _signal_once_committed(monkeypatch, signal.SIGTERM)
    result = run("rollback", "--root", root)
    monkeypatch.undo()
    assert result.exit_code == 0, result.stderr
    assert "kvmbridge: SIGTERM arrived once the work was done: it stands as reported" in result.stderr


def test_nohup_install_survives_the_hang_up(tmp_path: Path) -> None:
    """A SIGHUP ignored when kvmbridge started (`nohup`) stays ignored: the transaction used to take it
    over and undo the install the admin had protected from a closing terminal."""
    log = steps_of_install(tmp_path)
    step = next(i for i, s in enumerate(log, 1) if s == f"rename {tmp_path}/count/etc/network/interfaces")
    root = seed_old_host(tmp_path / "root")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "KILL_AT": str(step), "KILL_SIGNAL": "HUP"}
    nohup = "import os, signal, sys; signal.signal(signal.SIGHUP, signal.SIG_IGN); os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
    command = [
        sys.executable,
        "-c",
        nohup,
        str(REPO / "tests/kill_at.py"),
        "install",
        str(ARTICLE),
        "--root",
        str(root),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    assert result.returncode == 0, result.stderr
    rendered = {f.path: f.data for f in render(load_profile(ARTICLE))}
    assert (root / "etc/network/interfaces").read_bytes() == rendered["/etc/network/interfaces"]


class _FullThenKilled(FaultyRoot):
    """A full disk at step `fail_at` (undone), then SIGKILL at step `kill_at` while the undone set is discarded."""

    def __init__(self, prefix: Path, fail_at: int, kill_at: int) -> None:
        super().__init__(prefix, fail_at)
        self.kill_at = kill_at

    def _mutating(self, what: str, path: Path) -> None:
        if self.count + 1 == self.kill_at:
            raise Killed(what, str(path))
        super()._mutating(what, path)


def test_a_kill_while_an_undone_set_is_discarded_never_blocks_later_installs(tmp_path: Path) -> None:
    """ATTACK9c F8: the discard removed the copies first and the manifest last; killed in between, it
    left an unfinished set without its copies, which every later install had to carry and could not:
    exit 4 forever, even with --force, and `rollback` said there was nothing to do."""
    pristine = seed_old_host(tmp_path / "pristine")
    old = tree(pristine / "etc")
    profile = load_profile(ARTICLE)
    fail_at = next(
        i for i, s in enumerate(steps_of_install(tmp_path), 1) if s.startswith("write") and "/etc/udev/" in s
    )
    probe = FaultyRoot(seed_old_host(tmp_path / "probe"), fail_at)
    with pytest.raises(RolledBackError):
        install(profile, render(profile), probe, profile_path=ARTICLE, force=False)
    discard = [i for i, s in enumerate(probe.log, 1) if i > fail_at and "/var/backups/kvmbridge/" in s]
    assert discard, probe.log
    for kill_at in discard:
        root = tmp_path / f"k{kill_at}"
        shutil.copytree(pristine, root, symlinks=True)
        with pytest.raises(Killed):
            install(
                profile, render(profile), _FullThenKilled(root, fail_at, kill_at), profile_path=ARTICLE, force=False
            )
        assert tree(root / "etc") == old, kill_at
        result = install(profile, render(profile), Root(root), profile_path=ARTICLE, force=False)
        assert result.manifest is not None, kill_at
        rollback(Root(root), result.manifest.id, force=False)
        assert tree(root / "etc") == old, kill_at
        shutil.rmtree(root)


class _SignalBeforeRename(Root):
    """A signal handled at the start of `_rename` (a point where Python runs handlers), after the
    temporary file was written and closed."""

    def _rename(self, dirfd: int, tmp: str, name: str, path: Path, *, sync: bool = True) -> None:
        if name == "99-bridge.rules":  # a new file: the undo removes it and writes nothing there
            raise Interrupted(errno.EINTR, "interrupted by SIGTERM")
        super()._rename(dirfd, tmp, name, path, sync=sync)


def test_a_signal_between_writing_and_renaming_leaves_no_temporary_file(tmp_path: Path) -> None:
    """ATTACK9c F6: the undo said "every file was restored" and left the new file's .NAME.kvmbridge-tmp."""
    root = seed_old_host(tmp_path / "root")
    old = etc_files(root)
    profile = load_profile(ARTICLE)
    with pytest.raises(RolledBackError):
        install(profile, render(profile), _SignalBeforeRename(root), profile_path=ARTICLE, force=False)
    assert etc_files(root) == old
    assert not list(root.rglob("*.kvmbridge-tmp"))


def test_a_signal_and_a_full_disk_at_the_same_step_still_undo_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ATTACK9d F2 (its exact window, the handler running at `hold()`'s call in apply's `except`, took a
    bytecode tracer to hit; this is the same pair of events at every third step): signals inside a
    transaction now act only at the next step, and there is no next step before the undo holds them."""
    pristine = seed_old_host(tmp_path / "pristine")
    old = etc_files(pristine)
    log = steps_of_install(tmp_path)
    first = next(i for i, s in enumerate(log, 1) if "/var/backups/kvmbridge/" in s)  # past the lock
    for step in range(first, len(log) + 1, 3):
        root = tmp_path / f"s{step}"
        shutil.copytree(pristine, root, symlinks=True)
        full = OSError(errno.ENOSPC, "No space left on device (injected)")
        signal_at_step(monkeypatch, step, signal.SIGINT, then=full)
        result = run("install", ARTICLE, "--root", root)
        monkeypatch.undo()
        assert result.exit_code == 4, (step, result.stderr)
        assert etc_files(root) == old, step
        assert no_traceback(result.stdout, result.stderr), step
        shutil.rmtree(root)


def test_a_signal_as_the_transaction_begins_is_one_line_and_exit_4(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ATTACK9d F5: a signal after the transaction's mode was set but before `locked`'s `try` came out
    as a traceback (exit 1)."""
    from contextlib import contextmanager

    from kvmbridge import install as install_module
    from kvmbridge import interrupts

    @contextmanager
    def undoing_then_signal() -> Iterator[None]:
        with interrupts.undoing():
            os.kill(os.getpid(), signal.SIGTERM)
            yield

    root = seed_old_host(tmp_path / "root")
    old = etc_files(root)
    monkeypatch.setattr(install_module, "undoing", undoing_then_signal)
    result = run("install", ARTICLE, "--root", root)
    monkeypatch.undo()
    assert result.exit_code == 4, result.stderr
    assert after_rule_findings(result.stderr, "KB206") == "interrupted by SIGTERM; nothing was changed\n"
    assert etc_files(root) == old


def test_a_signal_after_the_last_step_before_the_commit_is_noted_not_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ATTACK9e F1: a signal during the final manifest write (after the last step's checkpoint) was
    recorded, then dropped by commit(): exit 0 and not a word about it."""
    from kvmbridge import interrupts

    commit = interrupts.commit

    def signal_then_commit() -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        commit()

    root = seed_old_host(tmp_path / "root")
    monkeypatch.setattr("kvmbridge.transaction.commit", signal_then_commit)
    result = run("install", ARTICLE, "--root", root)
    monkeypatch.undo()
    assert result.exit_code == 0, result.stderr
    assert "kvmbridge: SIGTERM arrived once the work was done: it stands as reported" in result.stderr


def _steps_on(pristine: Path) -> list[str]:
    """Every change a full install makes to a copy of `pristine`, named as if made to `pristine` itself."""
    copy = pristine.with_name(f"{pristine.name}-count")
    shutil.copytree(pristine, copy, symlinks=True)
    return [step.replace(str(copy), str(pristine)) for step in steps_on(copy)]


@pytest.mark.parametrize("existing", ["", "var/lib"])
@pytest.mark.parametrize("how", ["SIGTERM", "ENOSPC", "ENOSPC+SIGTERM"])
def test_a_lock_never_made_leaves_no_folder_made_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str, existing: str
) -> None:
    """ATTACK9e F5: a signal (or a full disk) at the folders and the lock file of a host's first install
    said "nothing was changed" and left var/, var/lib/ and var/lib/kvmbridge/ made, empty. Only what
    this run made goes: the administrator's own empty var/lib (mode 0700) stays (ATTACK9f F5), and a
    signal during a failing step does not stop the clean-up half way (ATTACK9f F2)."""
    pristine = seed_old_host(tmp_path / "pristine")
    if existing:
        (pristine / existing).mkdir(mode=0o700, parents=True)
    log = _steps_on(pristine)
    lock = next(i for i, s in enumerate(log, 1) if s.startswith("lock "))
    missing = [f for f in ("var", "var/lib", "var/lib/kvmbridge") if not (pristine / f).exists()]
    assert log[lock - 1 - len(missing) : lock - 1] == [f"mkdir {pristine / f}" for f in missing], log[:lock]
    before = snapshot(pristine)
    for step in range(lock - len(missing), lock + 1):
        root = tmp_path / f"r{step}"
        shutil.copytree(pristine, root, symlinks=True)
        sigs = [signal.SIGTERM] if "SIGTERM" in how else []
        fault = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)) if "ENOSPC" in how else None
        signal_at_step(monkeypatch, step, *sigs, then=fault)
        result = run("install", ARTICLE, "--root", root)
        monkeypatch.undo()
        said = after_rule_findings(result.stderr, "KB206")
        if fault is None:
            assert (result.exit_code, said) == (4, "interrupted by SIGTERM; nothing was changed\n"), step
        else:
            assert result.exit_code == 3, (step, said)
            assert said.endswith("cannot create the lock file (No space left on device); nothing was changed\n"), said
        assert no_traceback(result.stdout, result.stderr), step
        assert snapshot(root) == before, log[step - 1]
        shutil.rmtree(root)
