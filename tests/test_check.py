"""`check`: golden trees for a fleet, the plan's change kinds (create/update/remove), --update, --json,
folders and globs, pre-commit."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import GOLDEN, REPO, run, tree
from .fleet import write_fleet


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    """Three golden cases copied with their trees into a fleet folder."""
    hosts = tmp_path / "hosts"
    hosts.mkdir()
    for case in ("article", "dhcp-hwaddress", "two-bridges"):
        shutil.copy(GOLDEN / f"{case}.toml", hosts)
        shutil.copytree(GOLDEN / case, hosts / case, symlinks=True)
    return hosts


def test_clean_fleet_exits_0_with_one_line_per_host(fleet: Path) -> None:
    result = run("check", fleet)
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        f"ok      {fleet / 'article.toml'}",
        f"ok      {fleet / 'dhcp-hwaddress.toml'}",
        f"ok      {fleet / 'two-bridges.toml'}",
        "3 profiles: 3 ok, 0 changed, 0 invalid",
    ]


def test_changed_file_is_an_update_with_diff_and_meaning(fleet: Path) -> None:
    profile = fleet / "article.toml"
    profile.write_text(
        profile.read_text().replace("stp = false", "stp = true\nforward_delay = 15").replace("forward_delay = 0\n", "")
    )
    result = run("check", fleet)
    assert result.exit_code == 1
    out = result.stdout
    assert f"changed {profile} (1 file(s) differ from {fleet / 'article'})" in out
    assert "  update: etc/network/interfaces\n" in out
    assert "    etc/network/interfaces: br0 inet bridge_stp off → on\n" in out
    assert "\n-    bridge_stp off\n" in out and "\n+    bridge_stp on\n" in out
    assert out.endswith("3 profiles: 2 ok, 1 changed, 0 invalid\n")


def test_missing_and_extra_files_are_create_and_remove(fleet: Path) -> None:
    (fleet / "two-bridges/etc/sysctl.d/bridge.conf").unlink()
    (fleet / "two-bridges/etc/stray.conf").write_text("x\n")
    result = run("check", fleet / "two-bridges.toml")
    assert result.exit_code == 1
    assert "  create: etc/sysctl.d/bridge.conf\n" in result.stdout
    assert "  remove: etc/stray.conf\n" in result.stdout


def test_check_and_diff_speak_one_vocabulary(fleet: Path) -> None:
    """A golden tree read as a root: `check` names each file as `diff` plans it, and never says drift."""
    golden = fleet / "two-bridges"
    (golden / "etc/sysctl.d/bridge.conf").unlink()
    (golden / "etc/stray.conf").write_text("x\n")
    interfaces = golden / "etc/network/interfaces"
    interfaces.write_text(interfaces.read_text().replace("bridge_stp off", "bridge_stp on", 1))
    for xml in golden.glob("etc/libvirt/qemu/networks/*.xml"):
        xml.chmod(0o600)  # as rendered: a root's mode counts for diff; git does not keep it for check
    checked = json.loads(run("check", fleet / "two-bridges.toml", "--json").stdout)["profiles"][0]
    diffed = json.loads(run("diff", fleet / "two-bridges.toml", "--root", golden, "--json").stdout)
    planned = {c["path"]: c["status"] for c in diffed["changes"] if c["status"] != "unchanged"}
    assert checked["status"] == "changed"
    assert (
        {f["path"]: f["status"] for f in checked["files"] if f["path"] in planned}
        == planned
        == {
            "/etc/sysctl.d/bridge.conf": "create",
            "/etc/network/interfaces": "update",
        }
    )
    # diff plans only what kvmbridge would write; the golden tree's extra file is check's `remove`.
    assert {f["path"]: f["status"] for f in checked["files"]}["/etc/stray.conf"] == "remove"


def test_missing_golden_tree_is_all_creates(tmp_path: Path) -> None:
    shutil.copy(GOLDEN / "article.toml", tmp_path)
    result = run("check", tmp_path / "article.toml")
    assert result.exit_code == 1
    assert result.stdout.count("  create: ") == 6


def test_invalid_profile_among_valid_ones_exits_2_and_all_are_reported(fleet: Path) -> None:
    (fleet / "broken.toml").write_text('[bridges.br0]\nports = ["eth0"]\nstpp = true\n')
    (fleet / "article/etc/network/interfaces").write_text("# hand edit\n")
    result = run("check", fleet)
    assert result.exit_code == 2
    lines = result.stdout.splitlines()
    assert f"invalid {fleet / 'broken.toml'}" in lines
    assert f"  {fleet / 'broken.toml'}: bridges.br0.stpp: unknown key; did you mean 'stp'?" in lines
    assert any(line.startswith(f"changed {fleet / 'article.toml'}") for line in lines)
    assert lines[-1] == "4 profiles: 2 ok, 1 changed, 1 invalid"


def test_update_rewrites_changed_trees_and_removes_what_is_no_longer_rendered(fleet: Path) -> None:
    profile = fleet / "article.toml"
    profile.write_text(profile.read_text().replace("filter_bridged_traffic = false", "filter_bridged_traffic = true"))
    (fleet / "dhcp-hwaddress/etc/network/interfaces").write_text("stale\n")
    untouched = tree(fleet / "two-bridges")
    result = run("check", fleet, "--update")
    assert result.exit_code == 0
    assert result.stdout.splitlines()[-1] == "3 profiles: 1 ok, 2 updated, 0 invalid"
    assert not (fleet / "article/etc/udev").exists()
    assert not (fleet / "article/etc/sysctl.d/bridge.conf").exists()
    assert (fleet / "dhcp-hwaddress/etc/network/interfaces").read_bytes() == (
        GOLDEN / "dhcp-hwaddress/etc/network/interfaces"
    ).read_bytes()
    assert tree(fleet / "two-bridges") == untouched
    assert run("check", fleet).exit_code == 0


def test_json_output_schema(fleet: Path) -> None:
    (fleet / "article/etc/sysctl.d/ip_forward.conf").write_text("net.ipv4.ip_forward = 0\n")
    result = run("check", fleet, "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert set(data) == {"updated", "counts", "profiles"}
    assert data["counts"] == {"ok": 2, "changed": 1, "invalid": 0}
    article = next(p for p in data["profiles"] if p["profile"].endswith("article.toml"))
    assert set(article) == {"profile", "golden", "status", "errors", "files"}
    assert article["status"] == "changed"
    assert article["files"] == [
        {
            "path": "/etc/sysctl.d/ip_forward.conf",
            "status": "update",
            "summary": ["etc/sysctl.d/ip_forward.conf: net.ipv4.ip_forward 0 → 1"],
            "diff": article["files"][0]["diff"],
        }
    ]
    assert article["files"][0]["diff"].startswith("diff --kvmbridge a/etc/sysctl.d/ip_forward.conf")


def test_glob_and_golden_dir_arguments(fleet: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "trees"
    shutil.copytree(fleet / "article", elsewhere / "article", symlinks=True)
    result = run("check", str(fleet / "art*.toml"), "--golden", elsewhere)
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [f"ok      {fleet / 'article.toml'}", "1 profiles: 1 ok, 0 changed, 0 invalid"]
    nothing = run("check", str(fleet / "nope*.toml"))
    assert (nothing.exit_code, nothing.stderr) == (2, f"{fleet / 'nope*.toml'}: no profile matches\n")


def test_golden_folder_of_this_repository_is_clean() -> None:
    result = run("check", GOLDEN)
    assert result.exit_code == 0, result.stdout


def test_fleet_of_50_checked_broken_diagnosed_fixed_and_clean(tmp_path: Path) -> None:
    hosts = tmp_path / "fleet"
    profiles = write_fleet(hosts, 50)
    assert run("check", hosts, "--update").exit_code == 0  # first reviewed golden trees
    assert run("check", hosts).stdout.endswith("50 profiles: 50 ok, 0 changed, 0 invalid\n")
    # Break: one host changes its address, another loses a rendered file, a third is hand-edited.
    p7 = profiles[6]
    p7.write_text(p7.read_text().replace("10.0.6.2/24", "10.0.6.3/24"))
    (hosts / "host0011/etc/libvirt/qemu/networks/lan.xml").unlink()
    (hosts / "host0021/etc/sysctl.d/ip_forward.conf").write_text("net.ipv4.ip_forward = 0\n")
    broken = run("check", hosts)
    assert broken.exit_code == 1
    out = broken.stdout
    assert "etc/network/interfaces: br0 inet address 10.0.6.2/24 → 10.0.6.3/24" in out
    assert f"changed {hosts / 'host0011.toml'}" in out and "  create: etc/libvirt/qemu/networks/lan.xml" in out
    assert "etc/sysctl.d/ip_forward.conf: net.ipv4.ip_forward 0 → 1" in out
    assert out.endswith("50 profiles: 47 ok, 3 changed, 0 invalid\n")
    assert run("check", hosts, "--update").exit_code == 0
    assert run("check", hosts).stdout.endswith("50 profiles: 50 ok, 0 changed, 0 invalid\n")


def test_pre_commit_hook_runs_check_in_a_temporary_repository(tmp_path: Path) -> None:
    pre_commit = shutil.which("pre-commit") or str(Path(sys.executable).parent / "pre-commit")
    assert Path(pre_commit).exists(), "pre-commit is a test dependency (pip install -e '.[test]')"
    repo = tmp_path / "fleet-repo"
    repo.mkdir()
    shutil.copy(GOLDEN / "article.toml", repo)
    shutil.copytree(GOLDEN / "article", repo / "article", symlinks=True)
    env = {
        **os.environ,
        "PRE_COMMIT_HOME": str(tmp_path / "cache"),
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.org",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.org",
    }

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, env=env)

    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "fleet")
    source = _committed_copy(tmp_path / "kvmbridge-src", env)

    def try_repo() -> subprocess.CompletedProcess[str]:
        command = [pre_commit, "try-repo", str(source), "kvmbridge-check", "--all-files"]
        return subprocess.run(command, cwd=repo, capture_output=True, text=True, env=env, check=False)

    clean = try_repo()
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "kvmbridge golden check" in clean.stdout and "Passed" in clean.stdout
    profile = repo / "article.toml"
    profile.write_text(profile.read_text().replace("stp = false", "stp = false\nmtu = 9000"))
    git("add", ".")
    drifted = try_repo()
    assert drifted.returncode == 1, drifted.stdout
    assert "Failed" in drifted.stdout and "br0 inet mtu added: 9000" in drifted.stdout


def _committed_copy(dest: Path, env: dict[str, str]) -> Path:
    """pre-commit installs a hook repository from its git HEAD: snapshot the working tree as one commit."""
    ignore = shutil.ignore_patterns(
        ".venv",
        ".git",
        "__pycache__",
        ".mypy_cache",
        ".ruff_cache",
        ".pytest_cache",
        ".hypothesis",
        "*.egg-info",
        "dist",
        "build",
    )
    shutil.copytree(REPO, dest, ignore=ignore, symlinks=True)
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "snapshot"]):
        subprocess.run(["git", *args], cwd=dest, check=True, capture_output=True, env=env)
    return dest


def test_two_profiles_sharing_a_golden_tree_are_refused(fleet: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(GOLDEN / "article.toml", other)
    result = run("check", fleet / "article.toml", other / "article.toml", "--golden", tmp_path / "trees")
    assert result.exit_code == 2
    assert result.stderr == (
        f"{other / 'article.toml'}: shares its golden tree {tmp_path / 'trees/article'} with "
        f"{fleet / 'article.toml'}; rename one of them\n"
    )


def test_parallel_check_prints_and_exits_exactly_as_the_serial_one(tmp_path: Path) -> None:
    """600 profiles over 1 and 2 workers (and the default): same lines, same order, same exit code, text and JSON."""
    hosts = tmp_path / "fleet"
    profiles = write_fleet(hosts, 600)
    assert run("check", hosts, "--update", "-j", "2").exit_code == 0
    assert run("check", hosts, "-j", "2").stdout.endswith("600 profiles: 600 ok, 0 changed, 0 invalid\n")
    profiles[6].write_text(profiles[6].read_text().replace("10.0.6.2/24", "10.0.6.3/24"))
    (hosts / "host0311/etc/libvirt/qemu/networks/lan.xml").unlink()
    (hosts / "host0598/etc/stray.conf").write_text("x\n")
    (hosts / "host0450.toml").write_text('[bridges.br0]\nports = ["eth0"]\nstpp = true\n')
    outputs = {}
    for jobs in ("1", "2", "3", None):
        for fmt in ((), ("--json",)):
            args = ("check", hosts, *fmt) + (("-j", jobs) if jobs else ())
            result = run(*args)
            outputs[jobs, fmt] = (result.exit_code, result.stdout, result.stderr)
    serial = outputs["1", ()]
    assert serial[0] == 2 and serial[1].endswith("600 profiles: 596 ok, 3 changed, 1 invalid\n")
    lines = serial[1].splitlines()
    assert lines.index(f"invalid {hosts / 'host0450.toml'}") < next(
        i for i, line in enumerate(lines) if line.startswith(f"changed {hosts / 'host0598.toml'}")
    )
    for (jobs, fmt), got in outputs.items():
        assert got == outputs["1", fmt], (jobs, fmt)


def test_an_error_in_a_worker_is_reported_like_the_serial_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An error raised while checking one profile stops the check with the same line and exit code, serial or not."""
    import kvmbridge.check
    from kvmbridge.errors import KvmbridgeError

    hosts = tmp_path / "fleet"
    write_fleet(hosts, 40)
    assert run("check", hosts, "--update").exit_code == 0
    real = kvmbridge.check.check_profile

    def failing(profile: Path, tree: Path, templates: Path | None) -> kvmbridge.check.HostCheck:
        if profile.name == "host0031.toml":
            raise KvmbridgeError(f"{tree}: cannot read: Input/output error")
        return real(profile, tree, templates)

    monkeypatch.setattr(kvmbridge.check, "check_profile", failing)
    serial, parallel = run("check", hosts, "-j", "1"), run("check", hosts, "-j", "2")
    assert serial.exit_code == parallel.exit_code == 2
    assert serial.stderr == parallel.stderr == f"{hosts / 'host0031'}: cannot read: Input/output error\n"
    assert parallel.stdout == serial.stdout == ""


def test_an_oversized_golden_file_is_that_profiles_update_and_update_removes_it(tmp_path: Path) -> None:
    """ATTACK11b F6: a stray 9 MiB file in one golden tree (and one in place of a rendered file) is listed, never
    read: that profile is `changed` (remove / update), the rest of the fleet still gets its verdicts, serial and
    parallel alike, and `--update` removes or replaces it."""
    hosts = tmp_path / "fleet"
    write_fleet(hosts, 40)
    assert run("check", hosts, "--update").exit_code == 0
    stray, inplace = hosts / "host0031/etc/extra.tar", hosts / "host0032/etc/network/interfaces"
    for path in (stray, inplace):
        with path.open("wb") as stream:
            stream.truncate(9 << 20)  # sparse: past Root's read limit without writing 9 MiB
    serial, parallel = run("check", hosts, "-j", "1"), run("check", hosts, "-j", "2")
    assert serial.exit_code == parallel.exit_code == 1, serial.stderr
    assert serial.stdout == parallel.stdout and serial.stderr == parallel.stderr == ""
    lines = serial.stdout.splitlines()
    assert "  remove: etc/extra.tar" in lines and "  update: etc/network/interfaces" in lines
    assert lines[-1] == "40 profiles: 38 ok, 2 changed, 0 invalid"
    assert run("check", hosts, "--update", "-j", "2").exit_code == 0
    assert not stray.exists() and inplace.stat().st_size < 4096
    assert run("check", hosts).exit_code == 0


def test_golden_entries_that_are_not_regular_files_are_updates_not_reads(fleet: Path, tmp_path: Path) -> None:
    """A FIFO is never opened for reading in a way that blocks, a link is compared by its text, never followed,
    and a folder where a file belongs is an update; the regular files beside them are still read whole."""
    tree = fleet / "article/etc"
    outside = tmp_path / "outside"
    outside.write_text("not a golden file\n")
    (tree / "sysctl.d/ip_forward.conf").unlink()
    os.mkfifo(tree / "sysctl.d/ip_forward.conf")
    (tree / "udev/rules.d/99-bridge.rules").unlink()
    (tree / "udev/rules.d/99-bridge.rules").symlink_to(outside)
    (tree / "sysctl.d/bridge.conf").unlink()
    (tree / "sysctl.d/bridge.conf").mkdir()
    for jobs in ("1", "2"):
        result = run("check", fleet, "--jobs", jobs)
        assert result.exit_code == 1, result.stdout + result.stderr
        lines = result.stdout.splitlines()
        assert f"changed {fleet / 'article.toml'} (3 file(s) differ from {fleet / 'article'})" in lines
        for path in ("etc/sysctl.d/ip_forward.conf", "etc/udev/rules.d/99-bridge.rules", "etc/sysctl.d/bridge.conf"):
            assert f"  update: {path}" in lines, result.stdout
        assert "not a golden file" not in result.stdout
        assert lines[-1] == "3 profiles: 2 ok, 1 changed, 0 invalid"


def _killed_worker(part: object, templates: object, send: object) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_killed_worker_is_one_line_and_exit_2_not_drift(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ATTACK11b F3: a worker SIGKILLed (as by the OOM killer) is a tool failure: one line naming the first
    profile it held, exit 2 (the contract's error code), never 1 (= "golden trees differ", run --update)."""
    import kvmbridge.check

    hosts = tmp_path / "fleet"
    write_fleet(hosts, 4)
    assert run("check", hosts, "--update").exit_code == 0
    monkeypatch.setattr(kvmbridge.check, "_work", _killed_worker)
    for update in ((), ("--update",)):
        before = tree(hosts)
        result = run("check", hosts, "-j", "2", *update)
        assert result.exit_code == 2, result.stderr
        assert result.stderr.splitlines() == [
            f"{hosts / 'host0002.toml'}: the check worker for it and the next 1 profile(s) died without an answer "
            "(killed? out of memory?); nothing was checked or updated"
        ]
        assert result.stdout == "" and tree(hosts) == before


def test_a_newline_in_a_profile_or_golden_file_name_cannot_forge_a_verdict_line(fleet: Path) -> None:
    """ATTACK11b F8: check's text names every path as one printable line (repr when it is not printable)."""
    forged = fleet / "x\nok      fake.toml"
    forged.write_text("garbage=[\n")
    (fleet / "article/etc/x\nok      extra").write_text("stray\n")
    result = run("check", fleet)
    assert result.exit_code == 2
    lines = result.stdout.splitlines()
    assert "ok      fake.toml" not in lines and "ok      extra" not in lines, result.stdout
    assert f"invalid {str(forged)!r}" in lines
    assert f"  remove: {'etc/x' + chr(10) + 'ok      extra'!r}" in lines
    assert all(line.isprintable() for line in lines)


def test_one_profile_named_twice_is_checked_once_and_one_tree_through_a_link_is_refused(tmp_path: Path) -> None:
    """ATTACK11b F7: `a/x.toml a/../a/x.toml` is one profile (one verdict, one update); two profiles whose
    golden trees are one folder reached through a link are refused before anything is written."""
    folder = tmp_path / "a"
    folder.mkdir()
    shutil.copy(GOLDEN / "article.toml", folder / "x.toml")
    result = run("check", folder / "x.toml", tmp_path / "a/../a/x.toml", "--update")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "1 profiles: 0 ok, 1 updated, 0 invalid"
    (tmp_path / "b").mkdir()
    shutil.copy(GOLDEN / "article.toml", tmp_path / "b/x.toml")
    (tmp_path / "b/x").symlink_to(folder / "x")  # b/x.toml's golden tree is a/x under another name
    before = tree(tmp_path)
    shared = run("check", folder / "x.toml", tmp_path / "b/x.toml", "--update")
    assert shared.exit_code == 2
    assert (
        shared.stderr
        == f"{tmp_path / 'b/x.toml'}: shares its golden tree {tmp_path / 'b/x'} with {folder / 'x.toml'}; rename one of them\n"
    )
    assert tree(tmp_path) == before
