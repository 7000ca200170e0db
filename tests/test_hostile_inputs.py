"""Profiles that are not small regular files, or nest too deeply: one line, exit 2, never a hang.

Reproducer 6 of issue 9: a profile that is /dev/zero, /dev/urandom or a
FIFO gave a MemoryError or a hang; ~500 nested TOML arrays a RecursionError;
in `check` these exited 1 (a changed golden tree) instead of 2.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import GOLDEN, REPO, run, tree
from .roots import seed_old_host

COMMANDS = [["render"], ["validate"], ["diff"], ["install", "--dry-run"], ["check"]]


def hostile_profile(tmp_path: Path, kind: str) -> Path:
    if kind in ("/dev/zero", "/dev/urandom", "/dev/null"):
        return Path(kind)
    path = tmp_path / "host.toml"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "sparse 50 GB":
        with path.open("wb") as handle:
            handle.truncate(50 << 30)
    elif kind == "nested arrays":
        path.write_text("hostname = " + "[" * 500 + "]" * 500 + "\n")
    elif kind == "nested tables":
        path.write_text("x = " + "{a = " * 300 + "1" + "}" * 300 + "\n")
    elif kind == "moderately nested":
        path.write_text("[bridges.br0]\nports = " + "[" * 40 + "]" * 40 + "\n")
    return path


@pytest.mark.parametrize(
    "kind",
    [
        "/dev/zero",
        "/dev/urandom",
        "/dev/null",
        "fifo",
        "sparse 50 GB",
        "nested arrays",
        "nested tables",
        "moderately nested",
    ],
)
def test_hostile_profile_is_one_line_and_exit_2_in_every_command(tmp_path: Path, kind: str) -> None:
    profile = hostile_profile(tmp_path, kind)
    root = tmp_path / "root"
    root.mkdir()
    for command in COMMANDS:
        args: list[str | Path] = [*command, profile]
        if command[0] in ("diff", "install"):
            args += ["--root", root]
        if kind in ("fifo", "/dev/zero"):  # a real process with a timeout: a hang fails, never stalls the suite
            done = subprocess.run(
                [sys.executable, "-m", "kvmbridge", *map(str, args)],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
                env={**os.environ, "PYTHONPATH": str(REPO / "src")},
            )
            code, stdout, stderr = done.returncode, done.stdout, done.stderr
        else:
            ran = run(*args)
            code, stdout, stderr = ran.exit_code, ran.stdout, ran.stderr
        assert code == 2, (command, code, stderr)
        assert "Traceback" not in stderr and "Error" not in stderr, stderr
        lines = stderr.splitlines() if command[0] != "check" else stdout.splitlines()[1:2]
        assert len(lines) == 1, (command, stdout, stderr)
        assert lines[0].lstrip().startswith(str(profile)), (command, lines)
    assert list(root.iterdir()) == []


def test_a_profile_through_a_symlink_is_still_read(tmp_path: Path) -> None:
    link = tmp_path / "kvm01.toml"
    link.symlink_to(REPO / "golden/article.toml")
    assert run("render", link).exit_code == 0


def test_an_empty_backup_id_is_refused_not_taken_for_the_newest_set(tmp_path: Path) -> None:
    """ATTACK9c F6: `rollback ""` (an empty variable in a script) rolled back the newest set."""
    root = seed_old_host(tmp_path / "root")
    assert run("install", GOLDEN / "article.toml", "--root", root).exit_code == 0
    before = tree(root)
    result = run("rollback", "", "--root", root)
    assert result.exit_code == 2, result.stderr
    assert result.stderr == "'': not a backup ID (see `kvmbridge backups`)\n"
    assert tree(root) == before
