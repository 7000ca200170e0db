"""Crash consistency, concurrency and a full disk, with real processes on real trees."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from .conftest import GOLDEN, REPO, require_root, require_tool, tree
from .guardroots import guardable_root
from .roots import after_rule_findings, etc_files, seed_old_host

ARTICLE = GOLDEN / "article.toml"
TMP_SUFFIX = ".kvmbridge-tmp"
GUARD_RECORD = "var/lib/kvmbridge/guard.json"
TIMER_LINK = "etc/systemd/system/timers.target.wants/kvmbridge-guard.timer"


def kvmbridge(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    command = [sys.executable, "-m", "kvmbridge", *map(str, args)]
    if env:
        command = [sys.executable, str(REPO / "tests/kill_at.py"), *map(str, args)]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {}), "PYTHONPATH": str(REPO / "src")},
    )


Tree = dict[str, tuple[str, bytes | str]]


def rendered_etc(profile: Path, out: Path) -> Tree:
    assert kvmbridge("render", profile, "-o", out).returncode == 0
    return tree(out / "etc")


def killed_at_every_step(start: Path, work: Path, *args: str | Path) -> Iterator[tuple[int, Path]]:
    """Run `kvmbridge ARGS --root COPY` on a fresh copy of `start`, SIGKILLed at step 1, 2, ...

    Yields (step, the killed copy) until the command runs through.
    """
    step = 1
    while True:
        root = work / f"step{step}"
        shutil.copytree(start, root, symlinks=True)
        result = kvmbridge(*args, "--root", root, env={"KILL_AT": str(step)})
        if result.returncode == 0:
            return
        assert result.returncode == -signal.SIGKILL, result.stderr
        yield step, root
        step += 1


def assert_old_or_new(root: Path, old: Tree, new: Tree, step: int) -> None:
    for path, content in tree(root / "etc").items():
        if not path.endswith(TMP_SUFFIX):
            assert content in (old.get(path), new.get(path)), f"step {step}: {path} is neither old nor new"


def test_sigkill_at_every_step_leaves_old_or_new_files_and_a_recoverable_root(tmp_path: Path) -> None:
    pristine = seed_old_host(tmp_path / "pristine")
    old = tree(pristine / "etc")
    new = rendered_etc(ARTICLE, tmp_path / "render")
    kept = {"libvirt/qemu/networks/default.xml": old["libvirt/qemu/networks/default.xml"]}
    killed = 0
    for step, root in killed_at_every_step(pristine, tmp_path / "runs", "install", ARTICLE):
        killed += 1
        assert_old_or_new(root, old, new, step)
        # Recovery 1: installing again completes the job, with no drift refusal and no stray temp file.
        again = root.with_name(f"again{step}")
        shutil.copytree(root, again, symlinks=True)
        finish = kvmbridge("install", ARTICLE, "--root", again)
        assert finish.returncode == 0, (step, finish.stderr)
        assert tree(again / "etc") == new | kept, f"step {step}"
        assert kvmbridge("diff", ARTICLE, "--root", again).returncode == 0
        # Recovery 2: rolling back returns to the old files (or finds nothing to undo before the manifest).
        undo = kvmbridge("rollback", "--root", root)
        assert undo.returncode in (0, 3), (step, undo.stderr)
        assert tree(root / "etc") == old, f"step {step}"
    assert killed >= 20, killed


def test_sigkill_at_every_step_of_a_rollback_and_the_rollback_can_be_finished(tmp_path: Path) -> None:
    pristine = seed_old_host(tmp_path / "pristine")
    old = tree(pristine / "etc")
    installed = tmp_path / "installed"
    shutil.copytree(pristine, installed, symlinks=True)
    assert kvmbridge("install", ARTICLE, "--root", installed).returncode == 0
    new = tree(installed / "etc")
    install_id = kvmbridge("backups", "--root", installed).stdout.splitlines()[1].split()[0]
    killed = 0
    for step, root in killed_at_every_step(installed, tmp_path / "runs", "rollback", install_id):
        killed += 1
        assert_old_or_new(root, old, new, step)
        finish = kvmbridge("rollback", install_id, "--root", root)
        assert finish.returncode == 0, (step, finish.stderr)
        assert tree(root / "etc") == old, f"step {step}"  # stray temporary files removed too
    assert killed >= 15, killed


def test_two_concurrent_installs_end_in_exactly_one_profiles_render(tmp_path: Path) -> None:
    a, b = ARTICLE, GOLDEN / "two-bridges.toml"
    renders = [rendered_etc(a, tmp_path / "ra"), rendered_etc(b, tmp_path / "rb")]
    import os

    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    outcomes = set()
    for attempt in range(6):
        root = tmp_path / f"root{attempt}"
        root.mkdir()
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "kvmbridge", "install", str(p), "--root", str(root)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            for p in (a, b)
        ]
        results = [(p.wait(), p.stderr.read() if p.stderr else "") for p in procs]
        codes = tuple(code for code, _ in results)
        outcomes.add(codes)
        assert codes in ((0, 0), (0, 3), (3, 0)), results
        for code, err in results:
            if code == 3:
                assert "another kvmbridge install or rollback holds the lock" in err
        on_disk = tree(root / "etc")
        assert on_disk in renders, f"attempt {attempt}: a mix of both profiles"
    assert outcomes  # every attempt ran both processes to completion


def test_full_disk_fails_with_exit_4_and_leaves_every_file_as_it_was(tmp_path: Path) -> None:
    require_root()
    unshare = require_tool("unshare")
    require_tool("mount")
    seed = seed_old_host(tmp_path / "seed")
    expected = {k: v for k, v in etc_files(seed).items()}
    script = r"""
set -e
mount -t tmpfs -o size="$SIZE",mode=0755 tmpfs "$R"
cp -a "$SEED/." "$R/"
set +e
"$PY" -m kvmbridge install "$PROFILE" --root "$R" >"$OUT/stdout" 2>"$OUT/stderr"
echo $? >"$OUT/rc"
cd "$R" && find . -path ./var -prune -o \( -type f -o -type l \) -print | sort | while read -r f; do
  if [ -L "$f" ]; then echo "link $f $(readlink "$f")"; else echo "file $f $(sha256sum <"$f" | cut -c1-64) $(stat -c %a "$f")"; fi
done >"$OUT/tree"
cd / && umount "$R"
"""
    codes: dict[int, int] = {}
    for size_kib in range(24, 100, 4):
        out = tmp_path / f"out{size_kib}"
        mountpoint = tmp_path / f"mnt{size_kib}"
        out.mkdir()
        mountpoint.mkdir()
        import os

        env = {
            **os.environ,
            "SIZE": f"{size_kib}k",
            "R": str(mountpoint),
            "SEED": str(seed),
            "OUT": str(out),
            "PY": sys.executable,
            "PROFILE": str(ARTICLE),
            "PYTHONPATH": str(REPO / "src"),
        }
        subprocess.run([unshare, "--mount", "--propagation", "private", "bash", "-c", script], env=env, check=True)
        rc = int((out / "rc").read_text())
        codes[rc] = codes.get(rc, 0) + 1
        assert rc in (0, 4), (size_kib, (out / "stderr").read_text())
        if rc == 4:
            listing = {}
            for line in (out / "tree").read_text().splitlines():
                kind, path, *rest = line.split(" ")
                listing[path.removeprefix("./")] = (kind, *rest)
            seen = {p: (v[0], v[1], f"{v[2]:o}") for p, v in expected.items()}
            assert listing == {p: (k, h, m) for p, (k, h, m) in seen.items()}, size_kib
            failed = after_rule_findings((out / "stderr").read_text(), "KB206")  # the article's ip_forward warning
            assert failed.count("\n") == 1, failed
    assert codes.get(4, 0) >= 3, codes
    assert codes.get(0, 0) >= 1, codes  # the range reaches a size where the install fits


def test_a_power_cut_at_any_step_of_a_guarded_install_leaves_the_old_files_or_a_guard_that_restores_them(
    tmp_path: Path,
) -> None:
    """Nothing runs kvmbridge between a cut and the next boot: that boot must find the old configuration,
    or a complete guard whose timer brings it back (outside review finding: the guard was written last)."""
    require_root()
    pristine = guardable_root(tmp_path / "pristine")
    old = _configuration(pristine)
    killed = fired = 0
    for step, root in killed_at_every_step(pristine, tmp_path / "runs", "install", ARTICLE, "--confirm-within", "10m"):
        killed += 1
        if (root / TIMER_LINK).is_symlink() and (root / GUARD_RECORD).is_file():
            fired += 1
            expired = kvmbridge("expire-guard", "--root", root)  # what kvmbridge-guard.service runs at the deadline
            assert expired.returncode == 0, (step, expired.stderr)
        assert _configuration(root) == old, f"step {step}: the next boot runs a new configuration with no guard"
    assert killed >= 20 and fired > 0, (killed, fired)


def _configuration(root: Path) -> Tree:
    """What the next boot reads from etc/, less the guard's own units and stray temporary files."""
    return {
        path: content
        for path, content in tree(root / "etc").items()
        if not path.startswith("systemd/") and not path.endswith(TMP_SUFFIX)
    }
