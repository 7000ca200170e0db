"""Confinement: nothing kvmbridge does under a root (or a golden tree, or -o DIR) reaches outside it.

Each attack from issue 9 and variants of it (other names, other link
positions); a sentinel folder outside the root must be byte-identical
afterwards and no traceback may appear.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from .conftest import ARTICLE, GOLDEN, run
from .roots import make_sentinel, no_traceback, seed_old_host, snapshot

PROFILE = GOLDEN / "article.toml"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    return make_sentinel(tmp_path / "outside")


def install_ok(root: Path) -> None:
    result = run("install", PROFILE, "--root", root)
    assert result.exit_code == 0, result.stderr


# -- check --update: only GOLDEN/<stem>/ -----------------------------------------------------------


@pytest.mark.parametrize("name", ["...toml", "..toml", ".hidden.toml", ".toml"])
def test_check_update_refuses_dot_dot_and_hidden_stems_and_keeps_the_repository(tmp_path: Path, name: str) -> None:
    """Reproducer 1: `...toml` has the stem `..`: its golden tree was the repository's parent."""
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / ".git/HEAD").write_text("ref: refs/heads/main\n")
    profiles = repo / "profiles"
    profiles.mkdir()
    (profiles / "kept.txt").write_text("kept\n")
    profile = profiles / name
    profile.write_text(ARTICLE)
    before = snapshot(tmp_path)
    result = run("check", profile, "--update")
    assert result.exit_code == 2, result.output
    assert snapshot(tmp_path) == before
    assert no_traceback(result.stdout, result.stderr)
    with_golden = run("check", profile, "--update", "--golden", profiles)
    assert with_golden.exit_code == 2
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("link_at", ["host", "host/etc", "host/etc/libvirt/qemu/networks", "host/etc/sysctl.d"])
def test_check_update_refuses_a_golden_tree_that_is_or_holds_a_link(
    tmp_path: Path, outside: Path, link_at: str
) -> None:
    """Reproducer 1b: a golden tree that is (or contains) a symlink made --update write and delete outside."""
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    profile = fleet / "host.toml"
    profile.write_text(ARTICLE)
    assert run("check", profile, "--update").exit_code == 0  # a real golden tree first
    link = fleet / link_at
    shutil.rmtree(link)
    target = outside / "etc" if link_at != "host" else outside
    link.symlink_to(target)
    before_outside, before_fleet = snapshot(outside), snapshot(fleet)
    result = run("check", profile, "--update")
    assert result.exit_code == 2, result.output
    assert "symlink" in result.stderr or "not a folder" in result.stderr
    assert snapshot(outside) == before_outside
    assert snapshot(fleet) == before_fleet
    assert no_traceback(result.stdout, result.stderr)


def test_check_update_refuses_a_golden_tree_under_a_linked_folder(tmp_path: Path, outside: Path) -> None:
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    (fleet / "host.toml").write_text(ARTICLE)
    via = tmp_path / "via"
    via.symlink_to(outside)
    shutil.copy(fleet / "host.toml", outside / "host.toml")
    before = snapshot(outside)
    result = run("check", via / "host.toml", "--update")
    assert result.exit_code == 2, result.output
    assert "lies under a symlink" in result.stderr
    assert snapshot(outside) == before


def test_check_update_removes_an_extra_link_itself_never_its_target(tmp_path: Path, outside: Path) -> None:
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    profile = fleet / "host.toml"
    profile.write_text(ARTICLE)
    assert run("check", profile, "--update").exit_code == 0
    (fleet / "host/etc/extra").symlink_to(outside / "passwd")
    before = snapshot(outside)
    result = run("check", profile, "--update")
    assert result.exit_code == 0, result.stderr
    assert not (fleet / "host/etc/extra").is_symlink()
    assert snapshot(outside) == before


# -- render -o ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("link_at", ["etc", "etc/udev", "etc/libvirt/qemu/networks/autostart"])
def test_render_output_never_writes_through_a_link_inside_it(tmp_path: Path, outside: Path, link_at: str) -> None:
    out = tmp_path / "out"
    link = out / link_at
    link.parent.mkdir(parents=True)
    link.symlink_to(outside / "etc")
    before = snapshot(outside)
    result = run("render", PROFILE, "-o", out)
    assert result.exit_code == 2
    assert "cannot write" in result.stderr and result.stderr.count("\n") == 1
    assert snapshot(outside) == before


def test_a_folder_swapped_for_a_link_after_it_was_opened_does_not_redirect_tree_writes(
    tmp_path: Path, outside: Path
) -> None:
    """render -o opens each folder once (no link followed) and writes its files from that descriptor:
    a link swapped in for the folder afterwards leads nowhere; the writes land in the folder opened."""
    from kvmbridge.root import Root

    tree = tmp_path / "tree"
    root = Root(tree)
    before = snapshot(outside)
    with root.opened_folder("/etc/sysctl.d") as dirfd:
        (tree / "etc/sysctl.d").rename(tree / "etc/moved")
        (tree / "etc/sysctl.d").symlink_to(outside)
        root.write_file_at("/etc/sysctl.d/bridge.conf", dirfd, b"x = 1\n", 0o644, sync=False)
        root.write_symlink_at("/etc/sysctl.d/link.conf", dirfd, "bridge.conf", sync=False)
    assert snapshot(outside) == before
    assert (tree / "etc/moved/bridge.conf").read_bytes() == b"x = 1\n"
    assert os.readlink(tree / "etc/moved/link.conf") == "bridge.conf"
    with pytest.raises(OSError, match="symlink"), root.opened_folder("/etc/sysctl.d"):
        pass  # opened again, the link is refused
    assert snapshot(outside) == before


def test_render_output_rewrites_a_tree_in_place_with_the_same_bytes_and_modes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run("render", PROFILE, "-o", out).exit_code == 0
    first = snapshot(out)
    (out / "etc/network/interfaces").write_text("stale\n")
    assert run("render", PROFILE, "-o", out).exit_code == 0
    assert snapshot(out) == first


def test_render_output_folder_itself_may_be_a_link(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    assert run("render", PROFILE, "-o", tmp_path / "link").exit_code == 0
    assert (real / "etc/network/interfaces").is_file()


def test_render_output_replaces_a_planted_file_link_instead_of_writing_through_it(
    tmp_path: Path, outside: Path
) -> None:
    out = tmp_path / "out"
    (out / "etc/network").mkdir(parents=True)
    (out / "etc/network/interfaces").symlink_to(outside / "passwd")
    before = snapshot(outside)
    assert run("render", PROFILE, "-o", out).exit_code == 0
    assert not (out / "etc/network/interfaces").is_symlink()
    assert snapshot(outside) == before


# -- rollback, state and backups -------------------------------------------------------------------


@pytest.mark.parametrize(
    "swapped", ["etc/udev", "etc/udev/rules.d", "etc/libvirt/qemu/networks", "etc/network", "etc", "var/lib/kvmbridge"]
)
def test_rollback_refuses_a_folder_swapped_for_a_link_after_install(
    tmp_path: Path, outside: Path, swapped: str
) -> None:
    """Reproducer 3: a folder swapped for a link after a real install made rollback write outside the root."""
    root = seed_old_host(tmp_path / "root")
    install_ok(root)
    folder = root / swapped
    moved = outside / "moved"
    shutil.move(folder, moved)
    folder.symlink_to(moved)
    before = snapshot(outside)
    result = run("rollback", "--root", root)
    assert result.exit_code == 3, (result.exit_code, result.stderr)
    assert "symlink" in result.stderr
    assert snapshot(outside) == before
    assert no_traceback(result.stdout, result.stderr)
    forced = run("rollback", "--root", root, "--force")
    assert forced.exit_code == 3
    assert snapshot(outside) == before


@pytest.mark.parametrize("entry", ["/etc/passwd", "/etc/network/../../../outside/passwd", "//etc/network/interfaces"])
def test_state_listing_a_path_kvmbridge_never_writes_is_refused(tmp_path: Path, outside: Path, entry: str) -> None:
    """Reproducer 3b: a state.json listing /etc/passwd made install delete it."""
    root = seed_old_host(tmp_path / "root")
    (root / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    state = root / "var/lib/kvmbridge/state.json"
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps({"version": 1, "files": {entry: "0" * 64}}))
    before_root, before_outside = snapshot(root), snapshot(outside)
    commands: list[list[str | Path]] = [["install", PROFILE], ["install", PROFILE, "--force"], ["diff", PROFILE]]
    for args in commands:
        result = run(*args, "--root", root)
        assert result.exit_code in (2, 3), (args, result.stderr)
        assert "state.json" in result.stderr.splitlines()[0]
        assert no_traceback(result.stdout, result.stderr)
    assert snapshot(root) == before_root
    assert snapshot(outside) == before_outside


@pytest.mark.parametrize("linked", ["var/backups", "var/backups/kvmbridge", "var/lib/kvmbridge", "var/lib", "var"])
def test_linked_own_areas_are_never_written_through(tmp_path: Path, outside: Path, linked: str) -> None:
    """Reproducer 3c: symlinked var/backups or var/lib/kvmbridge were written through."""
    root = seed_old_host(tmp_path / "root")
    link = root / linked
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside / "var")
    before = snapshot(outside)
    result = run("install", PROFILE, "--root", root, "--force")
    assert result.exit_code == 3, (result.exit_code, result.stderr)
    assert snapshot(outside) == before
    assert no_traceback(result.stdout, result.stderr)
    assert (root / "etc/network/interfaces").read_bytes().startswith(b"# The host's own configuration")


def test_manifest_entry_through_a_linked_folder_is_refused(tmp_path: Path, outside: Path) -> None:
    """Reproducer 3d: a manifest entry through a symlinked folder made rollback create files outside."""
    root = seed_old_host(tmp_path / "root")
    install_ok(root)
    (root / "etc/evil").symlink_to(outside / "etc")
    folder = next((root / "var/backups/kvmbridge").iterdir())
    manifest = json.loads((folder / "manifest.json").read_text())
    for entry in manifest["files"]:
        if entry["path"] == "/etc/udev/rules.d/99-bridge.rules":
            entry["path"] = "/etc/evil/udev/rules.d/99-bridge.rules"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    before = snapshot(outside)
    for args in (["rollback"], ["rollback", "--force"], ["backups"]):
        result = run(*args, "--root", root)
        assert result.exit_code == 3, (args, result.stderr)
        assert "is not a path kvmbridge writes" in result.stderr
        assert no_traceback(result.stdout, result.stderr)
    assert snapshot(outside) == before


def test_the_root_itself_may_be_a_link(tmp_path: Path) -> None:
    real = seed_old_host(tmp_path / "real")
    (tmp_path / "image").symlink_to(real)
    install_ok(tmp_path / "image")
    assert (real / "etc/udev/rules.d/99-bridge.rules").is_file()
    assert run("rollback", "--root", tmp_path / "image").exit_code == 0
    assert not (real / "etc/udev").exists()


SWAPPER = """
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
a, b = sys.argv[1].encode(), sys.argv[2].encode()
while True:
    libc.renameat2(-100, a, -100, b, 2)  # RENAME_EXCHANGE: the folder and the link trade places atomically
"""


def test_check_update_never_writes_or_deletes_through_a_golden_tree_swapped_for_a_link_mid_run(
    tmp_path: Path, outside: Path
) -> None:
    """Outside review finding: the link checks ran before the writes, which re-opened GOLDEN/<stem> by name."""
    import subprocess
    import sys

    before_outside = snapshot(outside)
    for attempt in range(25):
        fleet = tmp_path / f"fleet{attempt}"
        (fleet / "host").mkdir(parents=True)
        profile = fleet / "host.toml"
        profile.write_text(ARTICLE)
        (fleet / "hostlink").symlink_to(outside)
        swapper = subprocess.Popen([sys.executable, "-c", SWAPPER, fleet / "host", fleet / "hostlink"])
        try:
            result = run("check", profile, "--update")
        finally:
            swapper.kill()
            swapper.wait()
        assert result.exit_code in (0, 1, 2), result.output
        assert no_traceback(result.stdout, result.stderr)
        assert snapshot(outside) == before_outside, f"attempt {attempt}: wrote or deleted outside the golden tree"
