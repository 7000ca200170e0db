"""The root's own path: looked up once per run, and never changed as root where another user could redirect it.

ATTACK9c F7: `Root` opened `--root DIR` by name again at every step, so whoever could rename
entries in DIR's parent (a build folder in a user's HOME, a group-writable /srv/images) swapped DIR
for a link to another tree mid-run: 17 of 20 installs wrote files, backups, state and the lock as
root into the other tree. Now the root folder is pinned at first use, and as root kvmbridge changes
nothing in a tree whose path someone else could swap (the next run would not be protected by the pin).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kvmbridge.root import Root

from .conftest import GOLDEN, REPO, require_root, run, tree
from .roots import no_traceback, seed_old_host

ARTICLE = GOLDEN / "article.toml"
OTHER = GOLDEN / "two-bridges.toml"
NOBODY = 65534


def _sentinel(tmp_path: Path) -> Path:
    """Stands for `/` on a real host: must come out byte for byte as it went in."""
    sentinel = tmp_path / "sentinel"
    (sentinel / "etc/network").mkdir(parents=True)
    (sentinel / "etc/network/interfaces").write_text("SENTINEL\n")
    return sentinel


def _user_owned_parent(tmp_path: Path) -> Path:
    """A root-owned staging tree inside a folder another user owns (their HOME, a CI workspace)."""
    parent = tmp_path / "home-of-nobody"
    parent.mkdir()
    seed_old_host(parent / "img")
    os.chown(parent, NOBODY, NOBODY)
    return parent


def test_install_refuses_a_root_whose_parent_another_user_owns(tmp_path: Path) -> None:
    require_root()
    parent = tmp_path / "home-of-nobody"
    assert run("install", ARTICLE, "--root", seed_old_host(parent / "img")).exit_code == 0
    os.chown(parent, NOBODY, NOBODY)
    before = tree(parent)
    for args in (["install", OTHER], ["install", OTHER, "--dry-run"], ["rollback"]):
        result = run(*args, "--root", parent / "img")
        assert result.exit_code == 3, (args, result.stdout, result.stderr)
        assert f"{parent}: owned by uid {NOBODY}, who can swap {parent}/img for a link" in result.stderr, args
        assert no_traceback(result.stdout, result.stderr)
    assert tree(parent) == before


def test_a_group_writable_folder_on_the_way_is_refused_a_sticky_one_holding_root_s_tree_is_not(tmp_path: Path) -> None:
    require_root()
    shared = tmp_path / "srv-images"
    seed_old_host(shared / "img")
    shared.chmod(0o775)
    result = run("install", ARTICLE, "--root", shared / "img")
    assert result.exit_code == 3 and f"{shared}: writable by others" in result.stderr, result.stderr
    shared.chmod(0o1777)  # like /tmp: others cannot rename root's entries
    assert run("install", ARTICLE, "--root", shared / "img").exit_code == 0
    mine = tmp_path / "srv-images/theirs"
    seed_old_host(mine)
    os.chown(mine, NOBODY, NOBODY)  # their own entry in a sticky folder: theirs to rename
    result = run("install", ARTICLE, "--root", mine)
    assert result.exit_code == 3 and f"{shared}: writable by others" in result.stderr, result.stderr


def test_a_link_on_the_way_is_judged_where_it_leads(tmp_path: Path) -> None:
    """`/mnt/image -> /srv/x/img`: the link's own folder and every folder of its target are judged."""
    require_root()
    parent = _user_owned_parent(tmp_path)
    link = tmp_path / "mnt-image"
    link.symlink_to(parent / "img")
    result = run("install", ARTICLE, "--root", link)
    assert result.exit_code == 3 and f"owned by uid {NOBODY}" in result.stderr, result.stderr
    trusted = tmp_path / "trusted-img"
    seed_old_host(trusted)
    link.unlink()
    link.symlink_to(trusted)
    assert run("install", ARTICLE, "--root", link).exit_code == 0
    assert (trusted / "var/lib/kvmbridge/state.json").exists()


def test_the_attackers_race_writes_nothing_outside_the_tree(tmp_path: Path) -> None:
    """The reproducer: another user exchanges DIR and a link to the sentinel as fast as they can."""
    require_root()
    sentinel = _sentinel(tmp_path)
    before = tree(sentinel)
    parent = _user_owned_parent(tmp_path)
    other = parent / "other"
    other.symlink_to(sentinel)
    os.chown(other, NOBODY, NOBODY, follow_symlinks=False)
    exchange = (
        "import ctypes, sys\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "a, b = sys.argv[1].encode(), sys.argv[2].encode()\n"
        "while True: libc.renameat2(-100, a, -100, b, 2)\n"
    )
    as_nobody = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    attacker = subprocess.Popen([*as_nobody, sys.executable, "-c", exchange, str(parent / "img"), str(other)])
    try:
        codes = []
        for _ in range(10):
            env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
            command = [sys.executable, "-m", "kvmbridge", "install", str(ARTICLE), "--root", str(parent / "img")]
            codes.append(subprocess.run(command, capture_output=True, text=True, check=False, env=env).returncode)
    finally:
        attacker.kill()
        attacker.wait()
    assert set(codes) == {3}, codes
    assert tree(sentinel) == before


class _SwappingRoot(Root):
    """Renames the tree away and puts a link to the sentinel in its place at the Nth change."""

    def __init__(self, prefix: Path, sentinel: Path, at: int) -> None:
        super().__init__(prefix)
        self.sentinel, self.at, self.count = sentinel, at, 0

    def _mutating(self, what: str, path: Path) -> None:
        self.count += 1
        if self.count == self.at:
            self.prefix.rename(self.prefix.with_name("moved"))
            self.prefix.symlink_to(self.sentinel)


@pytest.mark.parametrize("at", [1, 5, 20])
def test_the_root_is_pinned_a_swap_mid_run_changes_nothing_about_where_writes_go(tmp_path: Path, at: int) -> None:
    from kvmbridge.install import install
    from kvmbridge.profile import load_profile
    from kvmbridge.render import render

    sentinel = _sentinel(tmp_path)
    before = tree(sentinel)
    root = seed_old_host(tmp_path / "img")
    profile = load_profile(ARTICLE)
    install(profile, render(profile), _SwappingRoot(root, sentinel, at), profile_path=ARTICLE, force=False)
    assert tree(sentinel) == before
    moved = tmp_path / "moved"
    assert (moved / "var/lib/kvmbridge/state.json").exists()
    assert (moved / "etc/network/interfaces").read_bytes().startswith(b"# Generated from article.toml")
    shutil.rmtree(moved)


def test_a_root_swapped_between_the_pin_and_the_first_change_is_refused(tmp_path: Path) -> None:
    """The trust walk must reach the folder pinned by the first read: else the path changed under us."""
    from kvmbridge.errors import RefusedError

    require_root()
    root = seed_old_host(tmp_path / "img")
    target = Root(root)
    assert target.kind("/etc/network/interfaces") == "file"  # pinned here
    root.rename(tmp_path / "moved")
    root.mkdir()
    with pytest.raises(RefusedError, match="changed while kvmbridge looked it up"):
        target.write_file("/etc/kvmbridge-probe", b"x\n", 0o644)
    assert not list(root.iterdir()) and not (tmp_path / "moved/etc/kvmbridge-probe").exists()


def test_a_container_root_under_proc_is_the_container_s_not_the_host_s(tmp_path: Path) -> None:
    """ATTACK9d F1: the first pin followed /proc/PID/root by its text ("/" for any pivot_root'ed
    process), so `--root /proc/PID/root/...` wrote into the host's tree of the same name."""
    require_root()
    probe, fifo, nsroot = tmp_path / "probe", tmp_path / "fifo", tmp_path / "nsroot"
    probe.mkdir()
    nsroot.mkdir()
    os.mkfifo(fifo)
    script = (
        f"mount -t tmpfs t {nsroot} && mkdir -p {nsroot}{probe} {nsroot}/old && cd {nsroot} && "
        f"pivot_root . old && : > /pivoted && read x < /old{fifo}"  # builtins: nothing to exec in the new root
    )
    container = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", script])
    try:
        inside = Path(f"/proc/{container.pid}/root{probe}")
        deadline = time.monotonic() + 30
        while not Path(f"/proc/{container.pid}/root/pivoted").exists():  # before it, /proc/PID/root is ours
            assert time.monotonic() < deadline and container.poll() is None, "no container"
            time.sleep(0.05)
        result = run("render", ARTICLE, "-o", inside / "out")
        assert result.exit_code == 0, result.stderr
        assert (inside / "out/etc/network/interfaces").is_file()
        seed_old_host(inside / "img")
        result = run("install", ARTICLE, "--root", inside / "img")
        assert result.exit_code == 0, result.stderr
        assert (inside / "img/var/lib/kvmbridge/state.json").is_file()
        assert list(probe.iterdir()) == []  # the host's folder of the same name: untouched
    finally:
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # wakes the container's `read`
        except OSError:
            container.kill()
        container.wait(timeout=30)


def test_a_missing_root_is_never_made_through_another_user_s_link(tmp_path: Path) -> None:
    """ATTACK9d F3: a missing `-o`/`--root` was made with makedirs by name, through a link the user
    planted, before the pin could judge it: root-owned folders appeared wherever the link pointed."""
    require_root()
    home, victim = tmp_path / "home-alice", tmp_path / "victim"
    home.mkdir()
    victim.mkdir()
    (home / "out").symlink_to(victim)
    os.chown(home, NOBODY, NOBODY)
    os.chown(home / "out", NOBODY, NOBODY, follow_symlinks=False)
    commands: list[list[str | Path]] = [
        ["render", ARTICLE, "-o", home / "out/sub/tree"],
        ["install", ARTICLE, "--root", home / "out/x"],
    ]
    for args in commands:
        result = run(*args)
        assert result.exit_code in (2, 3), (args, result.stderr)
        assert f"{home}: owned by uid {NOBODY}" in result.stderr, (args, result.stderr)
        assert no_traceback(result.stdout, result.stderr)
    assert list(victim.iterdir()) == []


def test_render_into_a_link_loop_is_one_line(tmp_path: Path) -> None:
    """ATTACK9d F7: pathlib's RuntimeError for a link loop came out as a traceback."""
    (tmp_path / "l1").symlink_to("l2")
    (tmp_path / "l2").symlink_to("l1")
    result = run("render", ARTICLE, "-o", tmp_path / "l1")
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith(f"{tmp_path}/l1: cannot follow this path (") and result.stderr.count("\n") == 1


def test_without_proc_mounted_no_link_is_taken_for_a_magic_one(tmp_path: Path) -> None:
    """ATTACK9e F3: with /proc an empty folder of `/` (a chroot, an image build), every link shared its
    device, so the walk took the kernel's hop for all of them and never judged where they led."""
    require_root()
    alice = tmp_path / "alice"
    seed_old_host(alice / "img")
    os.chown(alice, NOBODY, NOBODY)
    link = tmp_path / "lnk"
    link.symlink_to(alice / "img")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    script = f"umount -l /proc && exec {sys.executable} -m kvmbridge install {ARTICLE} --root {link}"
    result = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert result.returncode == 3, result.stderr
    assert f"{alice}: owned by uid {NOBODY}" in result.stderr
    assert not (alice / "img/var/lib/kvmbridge").exists()


def test_a_missing_root_is_not_made_in_a_folder_another_user_owns(tmp_path: Path) -> None:
    """ATTACK9e F4: the walk judged the path up to the deepest existing folder but not that folder as
    the holder of the first one made: root-owned out/ and out/t/ were left behind a refusal."""
    require_root()
    home = tmp_path / "home-nobody"
    home.mkdir()
    os.chown(home, NOBODY, NOBODY)
    result = run("render", ARTICLE, "-o", home / "out/t")
    assert result.exit_code in (2, 3) and f"{home}: owned by uid {NOBODY}" in result.stderr, result.stderr
    assert list(home.iterdir()) == []


@pytest.mark.usefixtures("terminal_signals")
def test_a_signal_met_by_the_first_trust_judgement_is_not_swallowed(tmp_path: Path) -> None:
    """ATTACK9e F2: `redirectable()` caught the checkpoint's Interrupted as any OSError: the signal was
    lost and the judgement skipped (rollback went on to exit 0)."""
    from kvmbridge import interrupts
    from kvmbridge.root import Interrupted

    root = Root(seed_old_host(tmp_path / "img"))
    with interrupts.undoing():
        os.kill(os.getpid(), signal.SIGTERM)
        with pytest.raises(Interrupted):
            root.redirectable()
