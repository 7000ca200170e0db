"""The one preflight: install, install --dry-run, diff and validate --root see the same findings and the
same decision, and the pipeline itself only reads (real temporary roots, the real CLI)."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

import pytest

from kvmbridge.errors import RefusedError
from kvmbridge.preflight import run_preflight
from kvmbridge.root import Root

from .conftest import GOLDEN, run
from .roots import after_rule_findings, seed_old_host, snapshot
from .test_safety import make_root

ARTICLE = GOLDEN / "article.toml"


def finding_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(("error: KB", "warning: KB"))]


def test_every_command_reports_the_same_findings_and_writes_nothing(tmp_path: Path) -> None:
    root = make_root(tmp_path, "proxmox", "kubernetes")
    before = snapshot(root)
    pf = run_preflight(ARTICLE, None, root)
    expected = [f.line() for f in pf.findings]
    # the profile rules' warning (the article's ip_forward = true), then safety's error and warning
    assert [line.split()[1] for line in expected] == ["KB206", "KB111", "KB105"]
    validate = run("validate", ARTICLE, "--root", root)
    diff = run("diff", ARTICLE, "--root", root)
    dry = run("install", ARTICLE, "--root", root, "--dry-run")
    install = run("install", ARTICLE, "--root", root)
    for result in (validate, diff, dry, install):
        assert finding_lines(result.stderr) == expected, result.stderr
    # One decision: the error blocks validate --root and install alike; diff only shows it.
    assert (validate.exit_code, diff.exit_code, dry.exit_code, install.exit_code) == (3, 1, 3, 3)
    assert dry.stderr == install.stderr
    assert snapshot(root) == before


def test_force_lifts_the_safety_error_but_not_a_write_through_a_linked_folder(tmp_path: Path) -> None:
    root = make_root(tmp_path, "proxmox")
    pf = run_preflight(ARTICLE, None, root)
    assert isinstance(pf.refusal(force=False), RefusedError)
    assert pf.refusal(force=True) is None
    (root / "etc/sysctl.real").mkdir()
    (root / "etc/sysctl.d").symlink_to("sysctl.real")
    refusal = run_preflight(ARTICLE, None, root).refusal(force=True)
    assert refusal is not None and "a symlink; refusing to write through it" in refusal.lines[0]


def test_drift_is_refused_by_the_same_decision_for_the_dry_run_and_the_install(tmp_path: Path) -> None:
    root = seed_old_host(tmp_path / "root")
    assert run("install", ARTICLE, "--root", root).exit_code == 0
    with (root / "etc/network/interfaces").open("a") as handle:
        handle.write("# an admin's edit\n")
    pf = run_preflight(ARTICLE, None, root)
    refusal = pf.refusal(force=False)
    assert refusal is not None and refusal.lines[0].endswith("changed since kvmbridge wrote it (drift)")
    assert pf.refusal(force=True) is None
    dry, real = run("install", ARTICLE, "--root", root, "--dry-run"), run("install", ARTICLE, "--root", root)
    assert dry.exit_code == real.exit_code == 3
    assert dry.stderr == real.stderr
    assert after_rule_findings(real.stderr, "KB206") == "\n".join(refusal.lines) + "\n"


def test_the_gate_runs_before_the_root_is_read(tmp_path: Path) -> None:
    """install's own refusal (privilege, armed guard) wins over whatever the root would make the reads say."""
    root = tmp_path / "root"
    (root / "var/lib/kvmbridge/state.json").mkdir(parents=True)  # read_state would refuse this
    seen: list[Path] = []

    def gate(target: Root) -> None:
        seen.append(target.prefix)
        raise RefusedError("gate says no")

    with pytest.raises(RefusedError, match="gate says no"):
        run_preflight(ARTICLE, None, root, gate=gate)
    assert seen == [root]
    with pytest.raises(Exception, match="is not a regular file"):
        run_preflight(ARTICLE, None, root)


def test_an_invalid_profile_never_reaches_the_root_nor_the_gate(tmp_path: Path) -> None:
    profile = tmp_path / "bad.toml"
    profile.write_text(ARTICLE.read_text().replace('ports = ["eth0"]', 'ports = ["eth0"]\nmtu = 70000'))
    result = run("install", profile, "--root", tmp_path / "nowhere")
    assert result.exit_code == 2 and "mtu" in result.stderr
    assert not (tmp_path / "nowhere").exists()


def test_validate_without_root_looks_at_no_target(tmp_path: Path) -> None:
    pf = run_preflight(ARTICLE, None, None)
    assert pf.valid and pf.target is None and pf.plan is None and pf.safety is None
    assert [f.line() for f in pf.findings] == [
        f"warning: KB206 {ARTICLE}: sysctl.ip_forward: bridged VM traffic is switched, not routed: IP forwarding "
        "is only needed if this host also routes (fix: set ip_forward = false unless it does)"
    ]


def _backups_linked(root: Path) -> None:
    (root / "var/backups").mkdir(parents=True)
    (root.parent / "elsewhere").mkdir()
    (root / "var/backups/kvmbridge").symlink_to(root.parent / "elsewhere")


def _backups_a_file(root: Path) -> None:
    (root / "var/backups").mkdir(parents=True)
    (root / "var/backups/kvmbridge").write_text("")


def _lock_a_fifo(root: Path) -> None:
    (root / "var/lib/kvmbridge").mkdir(parents=True)
    os.mkfifo(root / "var/lib/kvmbridge/lock")


@pytest.mark.parametrize("spoil", [_backups_linked, _backups_a_file, _lock_a_fifo, "held"])
def test_the_dry_run_refuses_where_install_would_and_json_always_prints_a_document(
    tmp_path: Path, spoil: object
) -> None:
    """ATTACK11b F2: linked/non-folder backups, a FIFO lock, a lock another install holds: the dry run
    (text and --json) refuses with install's line and exit 3, --json prints its document, no lock file is left."""
    root = tmp_path / "root"
    root.mkdir()
    holder = None
    if spoil == "held":
        (root / "var/lib/kvmbridge").mkdir(parents=True)
        (root / "var/lib/kvmbridge/lock").write_text("")
        holder = os.open(root / "var/lib/kvmbridge/lock", os.O_RDWR)
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
    else:
        assert callable(spoil)
        spoil(root)
    before = snapshot(root)
    try:
        dry = run("install", ARTICLE, "--root", root, "--dry-run")
        real = run("install", ARTICLE, "--root", root)
        assert (dry.exit_code, real.exit_code) == (3, 3), dry.stdout + dry.stderr
        assert dry.stderr == real.stderr
        assert "nothing was changed" in real.stderr or "holds the lock" in real.stderr
        for args in (["--dry-run", "--json"], ["--json"]):
            result = run("install", ARTICLE, "--root", root, *args)
            assert result.exit_code == 3
            doc = json.loads(result.stdout)
            refused = after_rule_findings(real.stderr, "KB206").splitlines()  # --json: findings in the document
            assert doc["refused"] == refused and doc["changed"] is False
            assert [f["id"] for f in doc["findings"]] == ["KB206"]
    finally:
        if holder is not None:
            os.close(holder)
    assert snapshot(root) == before  # no lock file, no backup folder


def test_install_json_prints_a_document_when_the_gate_refuses(tmp_path: Path) -> None:
    """An armed guard is refused before any plan exists: --json still gets a document naming the refusal."""
    root = tmp_path / "root"
    (root / "var/lib/kvmbridge").mkdir(parents=True)
    (root / "var/lib/kvmbridge/guard.json").write_text("{not json")
    for args in (["--dry-run", "--json"], ["--json"]):
        result = run("install", ARTICLE, "--root", root, *args)
        assert result.exit_code == 3
        assert json.loads(result.stdout)["refused"] == result.stderr.splitlines()


RISKY = """
[bridges.br0]
ports = ["eth0", "eth1"]
ipv4 = { method = "dhcp" }

[bridges.br1]
ports = ["eth2"]
stp = true
forward_delay = 2
ipv6 = { method = "auto" }

[sysctl]
ip_forward = true
"""


def test_profile_rule_warnings_are_findings_every_command_prints_without_changing_an_exit_code(
    tmp_path: Path,
) -> None:
    """Each risky-but-legal choice is one `warning: KB2xx FILE: KEY: ... (fix: ...)` line, the same in validate,
    diff, install --dry-run and install, and in their --json findings; the exit codes stay those of a clean run."""
    import json

    profile = tmp_path / "risky.toml"
    profile.write_text(RISKY)
    pf = run_preflight(profile, None, None)
    lines = [f.line() for f in pf.findings]
    assert [(line.split()[1], line.split()[3]) for line in lines] == [
        ("KB201", "bridges.br0.hwaddress:"),
        ("KB204", "bridges.br0.stp:"),
        ("KB202", "bridges.br1.hwaddress:"),
        ("KB205", "bridges.br1.max_age:"),
        ("KB206", "sysctl.ip_forward:"),
    ]
    assert all(line.startswith("warning: KB2") and f" {profile}: " in line and "(fix: " in line for line in lines)
    assert 'fix: set hwaddress = "eth0"' in lines[0] and 'fix: set hwaddress = "eth2"' in lines[2]
    root = tmp_path / "root"
    root.mkdir()
    results = {
        "validate": run("validate", profile),
        "validate --root": run("validate", profile, "--root", root),
        "diff": run("diff", profile, "--root", root),
        "install --dry-run": run("install", profile, "--root", root, "--dry-run"),
    }
    assert not any(root.iterdir())
    results["install"] = run("install", profile, "--root", root)
    results["install again"] = run("install", profile, "--root", root)
    for name, result in results.items():
        assert finding_lines(result.stderr) == lines, (name, result.stderr)
    assert {name: r.exit_code for name, r in results.items()} == {
        "validate": 0,
        "validate --root": 0,
        "diff": 1,
        "install --dry-run": 0,
        "install": 0,
        "install again": 0,
    }
    as_dicts = [f.as_dict() for f in pf.findings]
    assert json.loads(run("validate", profile, "--json").stdout)["findings"] == as_dicts
    assert json.loads(run("validate", profile, "--json").stdout)["warnings"] == lines
    assert json.loads(run("diff", profile, "--root", root, "--json").stdout)["findings"] == as_dicts
    dry = json.loads(run("install", profile, "--root", root, "--dry-run", "--json").stdout)
    assert dry["findings"] == as_dicts and dry["changed"] is False
