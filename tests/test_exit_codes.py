"""Exit codes that tell the truth, and no traceback for what a user or an unprivileged run can cause.

Reproducers 6 and 7 of issue 9: a lock that is a link or a folder gave 4
(not "refused"); `rollback --root` on a mistyped path made a lock there;
after exit 5 a restored file shared its inode with its backup copy; as a
non-root user, `diff`/`backups`/`install --dry-run` after a first install
died with a PermissionError traceback.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from kvmbridge.errors import RefusedError, RollbackFailedError, RolledBackError
from kvmbridge.install import install
from kvmbridge.profile import load_profile
from kvmbridge.render import render
from kvmbridge.root import Root

from .conftest import GOLDEN, as_nobody, require_root, run
from .roots import OLD_INTERFACES, after_rule_findings, make_sentinel, no_traceback, seed_old_host, snapshot

ARTICLE = GOLDEN / "article.toml"
LOCK = "var/lib/kvmbridge/lock"


@pytest.mark.parametrize("kind", ["symlink", "dangling symlink", "folder", "fifo"])
@pytest.mark.parametrize("command", ["install", "rollback"])
def test_a_lock_that_is_not_a_regular_file_is_refused_with_exit_3(tmp_path: Path, kind: str, command: str) -> None:
    outside = make_sentinel(tmp_path / "outside")
    root = seed_old_host(tmp_path / "root")
    if command == "rollback":
        assert run("install", ARTICLE, "--root", root).exit_code == 0
    lock = root / LOCK
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.unlink(missing_ok=True)
    if kind == "symlink":
        lock.symlink_to(outside / "passwd")
    elif kind == "dangling symlink":
        lock.symlink_to(outside / "created-through-the-lock")
    elif kind == "folder":
        lock.mkdir()
    else:
        os.mkfifo(lock)
    before, before_outside = snapshot(root), snapshot(outside)
    args = ["install", ARTICLE] if command == "install" else ["rollback"]
    result = run(*args, "--root", root)
    assert result.exit_code == 3, (result.exit_code, result.stderr)
    shown = after_rule_findings(result.stderr, "KB206") if command == "install" else result.stderr
    assert shown.startswith(f"{lock}: ") and "nothing was changed" in result.stderr
    assert no_traceback(result.stdout, result.stderr)
    assert snapshot(root) == before
    assert snapshot(outside) == before_outside


@pytest.mark.parametrize("where", ["missing", "empty"])
def test_rollback_on_a_mistyped_root_creates_nothing_there(tmp_path: Path, where: str) -> None:
    root = tmp_path / "mistyped"
    if where == "empty":
        root.mkdir()
    result = run("rollback", "--root", root)
    assert result.exit_code == 3
    assert result.stderr.count("\n") == 1
    assert (not root.exists()) if where == "missing" else list(root.iterdir()) == []


def test_dot_dot_in_created_dirs_is_refused_before_anything_is_rolled_back(tmp_path: Path) -> None:
    """Reproducer 7: the rollback was applied, then exit 3 ("refused, nothing touched")."""
    import json

    root = seed_old_host(tmp_path / "root")
    assert run("install", ARTICLE, "--root", root).exit_code == 0
    manifest = next((root / "var/backups/kvmbridge").iterdir()) / "manifest.json"
    body = json.loads(manifest.read_text())
    body["created_dirs"] = ["/etc/udev/rules.d/..", *body["created_dirs"]]
    manifest.write_text(json.dumps(body))
    before = snapshot(root)
    result = run("rollback", "--root", root)
    assert result.exit_code == 3
    assert snapshot(root) == before


class _FailsOnce(Root):
    """ENOSPC on the udev rule's rename (a late write), then on every restore of ip_forward.conf: exit 5."""

    def _mutating(self, what: str, path: Path) -> None:
        late = what == "rename" and path.name == "99-bridge.rules" and "backups" not in path.parts
        stuck = path.name == "ip_forward.conf" and "backups" not in path.parts and getattr(self, "failed", False)
        if late and not getattr(self, "failed", False):
            self.failed = True
            raise OSError(errno.ENOSPC, "No space left on device (injected)", str(path))
        if stuck:
            raise OSError(errno.ENOSPC, "No space left on device (injected)", str(path))


def test_after_exit_5_no_restored_file_shares_its_inode_with_the_backup_copy(tmp_path: Path) -> None:
    root = seed_old_host(tmp_path / "root")
    profile = load_profile(ARTICLE)
    with pytest.raises(RollbackFailedError) as failed:
        install(profile, render(profile), _FailsOnce(root), profile_path=ARTICLE, force=False)
    assert failed.value.exit_code == 5
    assert any("ip_forward.conf: not restored" in line for line in failed.value.lines)
    interfaces = root / "etc/network/interfaces"
    assert interfaces.read_bytes() == OLD_INTERFACES
    copies = list((root / "var/backups/kvmbridge").glob("*/files/etc/network/interfaces"))
    for copy in copies:
        assert not os.path.samestat(copy.stat(), interfaces.stat())
    with interfaces.open("ab") as handle:
        handle.write(b"# an edit after the failure\n")
    for copy in copies:
        assert copy.read_bytes() == OLD_INTERFACES  # the backup did not change with the edit


@pytest.mark.parametrize("args", [["diff", ARTICLE], ["backups"], ["install", ARTICLE, "--dry-run"], ["rollback"]])
def test_non_root_commands_after_an_install_are_one_line_not_a_traceback(args: list[str | Path]) -> None:
    require_root()
    base = Path(tempfile.mkdtemp(prefix="kvmbridge-nobody-"))
    try:
        base.chmod(0o755)
        root = seed_old_host(base / "root")
        assert run("install", ARTICLE, "--root", root).exit_code == 0
        for folder in [root, *root.rglob("*")]:
            if folder.is_dir() and "backups" not in folder.parts:
                folder.chmod(0o755)
        before = snapshot(root)
        result = as_nobody(*args, "--root", root)
        assert result.returncode in (2, 3), result.stderr
        assert result.stderr.count("\n") == 1 and "Permission denied" in result.stderr, result.stderr
        assert no_traceback(result.stdout, result.stderr)
        assert snapshot(root) == before
    finally:
        shutil.rmtree(base)


class _SwapsNetworkFolder(Root):
    """Swaps etc/network for a link to `outside` at the first change to a path matching `at` (as a racing user would).

    With `fail`, that change also fails (ENOSPC), so the transaction is undone with the folder still swapped.
    """

    def __init__(self, prefix: Path, outside: Path, at: str, fail: bool = False) -> None:
        super().__init__(prefix)
        self.outside, self.at, self.fail, self.swapped = outside, at, fail, False

    def _mutating(self, what: str, path: Path) -> None:
        if self.swapped or not fnmatch.fnmatchcase(str(path.relative_to(self.prefix)), self.at):
            return
        self.swapped = True
        network = self.prefix / "etc/network"
        network.rename(network.with_name("network.real"))
        network.symlink_to(self.outside / "etc/network")
        if self.fail:
            raise OSError(errno.ENOSPC, "No space left on device (injected)", str(path))


def test_a_folder_swapped_for_a_link_before_its_file_was_written_is_exit_4_not_5(tmp_path: Path) -> None:
    """Outside review F9: exit 5 named interfaces "not restored" though it was never touched (the write
    was refused at the link, before any rename); undo read it through the swapped folder and saw "other"."""
    outside = make_sentinel(tmp_path / "outside")
    root = seed_old_host(tmp_path / "root")
    before_outside = snapshot(outside)
    profile = load_profile(ARTICLE)
    racing = _SwapsNetworkFolder(
        root, outside, at="var/backups/kvmbridge/*/manifest.json"
    )  # the backup is taken, no config file written yet
    with pytest.raises(RolledBackError) as failed:
        install(profile, render(profile), racing, profile_path=ARTICLE, force=False)
    assert racing.swapped
    assert failed.value.exit_code == 4
    assert "every file was restored as it was, nothing changed" in str(failed.value)
    assert (root / "etc/network.real/interfaces").read_bytes() == OLD_INTERFACES
    assert snapshot(outside) == before_outside
    assert not (root / "var/backups/kvmbridge").exists() or not any((root / "var/backups/kvmbridge").iterdir())


def test_exit_5_names_only_the_paths_really_left_changed(tmp_path: Path) -> None:
    """interfaces was replaced, then its folder swapped for a link and a later write failed: interfaces
    is really left changed (in the moved folder) and is the one path named; nothing else is."""
    outside = make_sentinel(tmp_path / "outside")
    root = seed_old_host(tmp_path / "root")
    before_outside = snapshot(outside)
    profile = load_profile(ARTICLE)
    racing = _SwapsNetworkFolder(root, outside, at="etc/udev/rules.d/99-bridge.rules", fail=True)
    with pytest.raises(RollbackFailedError) as failed:
        install(profile, render(profile), racing, profile_path=ARTICLE, force=False)
    left = [line for line in failed.value.lines if "not restored" in line]
    assert len(left) == 1 and left[0].startswith("  /etc/network/interfaces: not restored"), failed.value.lines
    assert (root / "etc/network.real/interfaces").read_bytes() != OLD_INTERFACES  # the truth: it is left changed
    assert (root / "etc/sysctl.d/ip_forward.conf").read_bytes() == b"net.ipv4.ip_forward = 0\n"
    assert snapshot(outside) == before_outside


class _SwapsBack(Root):
    """etc/network is a link when the transaction reads its "before"; the real folder is back at the first change,
    and the udev rule's write fails, so the transaction is undone."""

    def _mutating(self, what: str, path: Path) -> None:
        network = self.prefix / "etc/network"
        if network.is_symlink():
            network.unlink()
            network.with_name("network.real").rename(network)
        if path.name == "99-bridge.rules" and "backups" not in path.parts:
            raise OSError(errno.ENOSPC, "No space left on device (injected)", str(path))


def test_a_path_behind_a_link_when_the_transaction_starts_is_refused_not_undone_into_an_empty_file(
    tmp_path: Path,
) -> None:
    """Its "before" was unreadable: an undo would have "restored" it as an empty file with mode 0."""
    from kvmbridge.transaction import Op, apply

    outside = make_sentinel(tmp_path / "outside")
    root = seed_old_host(tmp_path / "root")
    (root / "etc/network").rename(root / "etc/network.real")
    (root / "etc/network").symlink_to(outside / "etc/network")
    before_outside = snapshot(outside)
    ops = [Op("/etc/network/interfaces", data=b"new\n"), Op("/etc/udev/rules.d/99-bridge.rules", data=b"new\n")]
    with pytest.raises(RefusedError) as refused:
        apply(_SwapsBack(root), ops, backup_id="20260101T000000.000000Z", action="install", host=None, profile=None)
    assert (
        refused.value.lines[0]
        == f"{root}/etc/network/interfaces: is not a file or lies behind a symlink; refusing to replace it"
    )
    assert (root / "etc/network.real/interfaces").read_bytes() == OLD_INTERFACES
    assert snapshot(outside) == before_outside
