"""diff, install, rollback and backups on real temporary roots, never this machine's /etc."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path

from kvmbridge.errors import RefusedError, RollbackFailedError, RolledBackError
from kvmbridge.install import install
from kvmbridge.profile import load_profile
from kvmbridge.render import render

from .conftest import GOLDEN, as_nobody, require_root, run, tree
from .roots import LIBVIRT_DEFAULT, OLD_INTERFACES, FaultyRoot, after_rule_findings, etc_files, seed_old_host, snapshot

ARTICLE = GOLDEN / "article.toml"
BACKUPS = "var/backups/kvmbridge"


def installed(root: Path, profile: Path = ARTICLE) -> str:
    result = run("install", profile, "--root", root)
    assert result.exit_code == 0, result.stderr
    return next(line for line in result.stdout.splitlines() if line.startswith("backup: ")).split()[1]


def expected_etc(profile: Path, tmp: Path) -> dict[str, tuple[str, bytes | str]]:
    out = tmp / f"render-{profile.stem}"
    run("render", profile, "-o", out)
    return tree(out)


def test_diff_exits_1_before_install_and_0_after(tmp_path: Path) -> None:
    root = seed_old_host(tmp_path / "root")
    before = run("diff", ARTICLE, "--root", root)
    assert before.exit_code == 1
    assert "--- a/etc/network/interfaces\n+++ b/etc/network/interfaces\n" in before.stdout
    assert "--- /dev/null\n+++ b/etc/udev/rules.d/99-bridge.rules\n" in before.stdout
    assert "update     etc/network/interfaces: eth0 inet method static → manual" in before.stdout
    assert "update     etc/sysctl.d/ip_forward.conf: net.ipv4.ip_forward 0 → 1" in before.stdout
    assert "create     new file etc/udev/rules.d/99-bridge.rules" in before.stdout
    installed(root)
    after = run("diff", ARTICLE, "--root", root)
    assert after.exit_code == 0, after.stdout
    assert after.stdout.endswith(f"in sync under {root}\n")


def test_install_writes_exactly_the_render_and_keeps_other_files(tmp_path: Path) -> None:
    root = seed_old_host(tmp_path / "root")
    installed(root)
    on_disk = tree(root / "etc")
    rendered = {f"{k.removeprefix('etc/')}": v for k, v in expected_etc(ARTICLE, tmp_path).items()}
    assert {k: v for k, v in on_disk.items() if k != "libvirt/qemu/networks/default.xml"} == rendered
    assert (root / "etc/libvirt/qemu/networks/default.xml").read_bytes() == LIBVIRT_DEFAULT


LIBVIRT_REWRITTEN = (
    b"<!--\nWARNING: THIS IS AN AUTO-GENERATED FILE. CHANGES TO IT ARE LIKELY TO BE\n"
    b"OVERWRITTEN AND LOST. Changes to this xml configuration should be made using:\n"
    b"  virsh net-edit bridge-network\n-->\n\n<network>\n  <name>bridge-network</name>\n"
    b"  <uuid>1f67881d-8ce3-5da5-858f-e0433cb813b0</uuid>\n  <forward mode='bridge'/>\n"
    b"  <bridge name='br0'/>\n</network>\n"
)


def test_libvirt_rewritten_xml_kvmbridge_never_wrote_is_equivalent_and_not_rewritten(tmp_path: Path) -> None:
    root = seed_old_host(tmp_path / "root")
    xml = root / "etc/libvirt/qemu/networks/bridge-network.xml"
    xml.write_bytes(LIBVIRT_REWRITTEN)
    result = run("diff", ARTICLE, "--root", root, "--json")
    statuses = {c["path"]: c["status"] for c in json.loads(result.stdout)["changes"]}
    assert statuses["/etc/libvirt/qemu/networks/bridge-network.xml"] == "equivalent"
    installed(root)
    assert xml.read_bytes() == LIBVIRT_REWRITTEN
    again = run("install", ARTICLE, "--root", root)
    assert again.exit_code == 0
    assert again.stdout.startswith("nothing to do")


def test_rewritten_xml_kvmbridge_wrote_is_drift_not_equivalent(tmp_path: Path) -> None:
    root = tmp_path / "root"
    installed(root)
    xml = root / "etc/libvirt/qemu/networks/bridge-network.xml"
    xml.write_bytes(LIBVIRT_REWRITTEN)
    result = run("diff", ARTICLE, "--root", root, "--json")
    assert result.exit_code == 1
    statuses = {c["path"]: c["status"] for c in json.loads(result.stdout)["changes"]}
    assert statuses["/etc/libvirt/qemu/networks/bridge-network.xml"] == "drift"
    again = run("install", ARTICLE, "--root", root)
    assert again.exit_code == 3
    assert xml.read_bytes() == LIBVIRT_REWRITTEN


def test_diff_json_lists_every_change_with_status_summary_and_diff(tmp_path: Path) -> None:
    root = seed_old_host(tmp_path / "root")
    result = run("diff", ARTICLE, "--root", root, "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["in_sync"] is False and data["root"] == str(root)
    by_path = {c["path"]: c for c in data["changes"]}
    assert by_path["/etc/network/interfaces"]["status"] == "update"
    assert by_path["/etc/sysctl.d/bridge.conf"]["status"] == "create"
    assert by_path["/etc/sysctl.d/bridge.conf"]["summary"] == ["new file etc/sysctl.d/bridge.conf"]
    assert by_path["/etc/network/interfaces"]["diff"].startswith("diff --kvmbridge a/etc/network/interfaces")
    assert set(by_path["/etc/network/interfaces"]) == {"path", "status", "blocked", "summary", "diff"}


def test_backup_holds_original_bytes_and_manifest_and_state_checksums_match(tmp_path: Path) -> None:
    root = seed_old_host(tmp_path / "root")
    old_mtime = (root / "etc/network/interfaces").stat().st_mtime_ns
    backup_id = installed(root)
    folder = root / BACKUPS / backup_id
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((root / BACKUPS).stat().st_mode) == 0o700
    copy = folder / "files/etc/network/interfaces"
    assert copy.read_bytes() == OLD_INTERFACES
    assert copy.stat().st_mtime_ns == old_mtime
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["id"] == backup_id and manifest["host"] == "kvm01" and manifest["action"] == "install"
    for entry in manifest["files"]:
        path = root / entry["path"].lstrip("/")
        if entry["sha256_after"] is None:
            continue
        data = os.readlink(path).encode() if path.is_symlink() else path.read_bytes()
        digest = hashlib.sha256((b"link:" + data) if path.is_symlink() else data).hexdigest()
        assert digest == entry["sha256_after"], entry["path"]
        if entry["existed"] and entry["kind"] == "file":
            before = (folder / "files" / entry["path"].lstrip("/")).read_bytes()
            assert hashlib.sha256(before).hexdigest() == entry["sha256_before"]
    state = json.loads((root / "var/lib/kvmbridge/state.json").read_text())
    assert state["backup"] == backup_id
    for path, digest in state["files"].items():
        target = root / path.lstrip("/")
        if not target.is_symlink():
            assert hashlib.sha256(target.read_bytes()).hexdigest() == digest


def test_modes_follow_the_table_and_existing_files_keep_theirs(tmp_path: Path) -> None:
    root = seed_old_host(tmp_path / "root")
    rendered = GOLDEN / "article/etc/libvirt/qemu/networks/bridge-network.xml"
    (root / "etc/libvirt/qemu/networks/bridge-network.xml").write_bytes(rendered.read_bytes())
    (root / "etc/libvirt/qemu/networks/bridge-network.xml").chmod(0o644)
    installed(root)
    modes = {k: v[2] for k, v in etc_files(root).items()}
    assert modes["etc/network/interfaces"] == 0o644
    assert modes["etc/sysctl.d/ip_forward.conf"] == 0o640  # existing file keeps its mode
    assert modes["etc/sysctl.d/bridge.conf"] == 0o644
    assert modes["etc/udev/rules.d/99-bridge.rules"] == 0o644
    assert modes["etc/libvirt/qemu/networks/bridge-network.xml"] == 0o600  # the contract wins
    assert os.readlink(root / "etc/libvirt/qemu/networks/autostart/bridge-network.xml") == "../bridge-network.xml"


def test_second_install_changes_nothing_and_makes_no_backup(tmp_path: Path) -> None:
    root = seed_old_host(tmp_path / "root")
    installed(root)
    before = snapshot(root)
    result = run("install", ARTICLE, "--root", root)
    assert result.exit_code == 0
    assert result.stdout == f"nothing to do: {root} already holds what {ARTICLE} renders\n"
    assert snapshot(root) == before


def test_drift_is_refused_and_force_overwrites(tmp_path: Path) -> None:
    root = seed_old_host(tmp_path / "root")
    installed(root)
    bridge_conf = root / "etc/sysctl.d/bridge.conf"
    bridge_conf.write_text("net.bridge.bridge-nf-call-iptables = 1\n")
    other = GOLDEN / "two-bridges.toml"
    before = snapshot(root)
    refused = run("install", other, "--root", root)
    assert refused.exit_code == 3
    assert refused.stderr.splitlines()[0] == f"{bridge_conf}: changed since kvmbridge wrote it (drift)"
    assert snapshot(root) == before
    assert "drift" in run("diff", other, "--root", root).stdout
    forced = run("install", other, "--root", root, "--force")
    assert forced.exit_code == 0, forced.stderr
    assert bridge_conf.read_bytes() == (GOLDEN / "two-bridges/etc/sysctl.d/bridge.conf").read_bytes()


def test_files_a_profile_no_longer_renders_are_removed(tmp_path: Path) -> None:
    root = tmp_path / "root"
    installed(root)
    installed(root, GOLDEN / "filter-on.toml")
    assert not (root / "etc/sysctl.d/bridge.conf").exists()
    assert not (root / "etc/udev/rules.d/99-bridge.rules").exists()
    assert run("diff", GOLDEN / "filter-on.toml", "--root", root).exit_code == 0


def test_symlinked_target_is_refused(tmp_path: Path) -> None:
    root = seed_old_host(tmp_path / "root")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("precious\n")
    target = root / "etc/sysctl.d/bridge.conf"
    target.symlink_to(elsewhere)
    before = snapshot(root)
    result = run("install", ARTICLE, "--root", root)
    assert result.exit_code == 3
    shown = after_rule_findings(result.stderr, "KB206")
    assert shown.splitlines()[0] == f"{target}: is a symlink (to {elsewhere}); refusing to write through it"
    assert snapshot(root) == before and elsewhere.read_text() == "precious\n"


def test_symlinked_folder_on_the_way_is_refused_even_with_force(tmp_path: Path) -> None:
    root = seed_old_host(tmp_path / "root")
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "etc/udev").symlink_to(outside)
    before = snapshot(root)
    result = run("install", ARTICLE, "--root", root, "--force")
    assert result.exit_code == 3
    assert after_rule_findings(result.stderr, "KB206").splitlines()[0] == (
        f"{root / 'etc/udev/rules.d/99-bridge.rules'}: is inside {root / 'etc/udev'}, a symlink; refusing to write "
        "through it"
    )
    assert snapshot(root) == before and list(outside.iterdir()) == []


def test_symlinked_target_is_replaced_not_written_through_with_force(tmp_path: Path) -> None:
    root = seed_old_host(tmp_path / "root")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("precious\n")
    target = root / "etc/sysctl.d/bridge.conf"
    target.symlink_to(elsewhere)
    assert run("install", ARTICLE, "--root", root, "--force").exit_code == 0
    assert not target.is_symlink() and elsewhere.read_text() == "precious\n"
    assert target.read_bytes() == (GOLDEN / "article/etc/sysctl.d/bridge.conf").read_bytes()


def test_unreadable_target_is_one_clear_error() -> None:
    require_root()
    base = Path(tempfile.mkdtemp(prefix="kvmbridge-perm-"))  # pytest's own tmp folders are 0700
    try:
        root = seed_old_host(base / "root")
        for folder in [base, root, *root.rglob("*")]:
            if folder.is_dir():
                folder.chmod(0o755)
        result = as_nobody("diff", ARTICLE, "--root", root)
        assert result.returncode == 2
        assert (
            result.stderr == f"{root / 'etc/sysctl.d/ip_forward.conf'}: cannot read: Permission denied (run as root?)\n"
        )
    finally:
        shutil.rmtree(base)


def test_directory_where_a_file_belongs_is_refused_even_with_force(tmp_path: Path) -> None:
    root = seed_old_host(tmp_path / "root")
    (root / "etc/sysctl.d/bridge.conf").mkdir()
    result = run("install", ARTICLE, "--root", root, "--force")
    assert result.exit_code == 3
    assert (
        after_rule_findings(result.stderr, "KB206").splitlines()[0]
        == f"{root / 'etc/sysctl.d/bridge.conf'}: is not a regular file"
    )


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    root = seed_old_host(tmp_path / "root")
    before = snapshot(root)
    result = run("install", ARTICLE, "--root", root, "--dry-run")
    assert result.exit_code == 0
    assert "update     etc/network/interfaces" in result.stdout
    assert result.stdout.endswith("dry run: nothing was written\n")
    assert snapshot(root) == before


def test_invalid_profile_exits_2_and_touches_nothing(tmp_path: Path) -> None:
    root = seed_old_host(tmp_path / "root")
    bad = tmp_path / "bad.toml"
    bad.write_text(ARTICLE.read_text().replace("10.0.0.1", "10.9.9.9"))
    before = snapshot(root)
    result = run("install", bad, "--root", root)
    assert result.exit_code == 2
    assert snapshot(root) == before


def test_rollback_restores_bytes_modes_and_removes_new_files(tmp_path: Path) -> None:
    root = seed_old_host(tmp_path / "root")
    before = etc_files(root)
    backup_id = installed(root)
    result = run("rollback", "--root", root)
    assert result.exit_code == 0, result.stderr
    assert f"rolled back {backup_id}" in result.stdout
    assert etc_files(root) == before
    assert not (root / "var/lib/kvmbridge/state.json").exists()
    assert not (root / "etc/udev").exists()


def test_rollback_is_itself_undoable(tmp_path: Path) -> None:
    root = seed_old_host(tmp_path / "root")
    installed(root)
    after_install = etc_files(root)
    result = run("rollback", "--root", root)
    undo_id = result.stdout.splitlines()[-1].split()[-3]
    assert run("rollback", undo_id, "--root", root).exit_code == 0
    assert etc_files(root) == after_install
    assert run("diff", ARTICLE, "--root", root).exit_code == 0


def test_rollback_refuses_when_files_changed_since_unless_force(tmp_path: Path) -> None:
    root = seed_old_host(tmp_path / "root")
    backup_id = installed(root)
    interfaces = root / "etc/network/interfaces"
    interfaces.write_text("# edited by hand\n")
    before = snapshot(root)
    result = run("rollback", backup_id, "--root", root)
    assert result.exit_code == 3
    assert result.stderr.splitlines()[0] == f"{interfaces}: changed since backup {backup_id} was taken"
    assert snapshot(root) == before
    assert run("rollback", backup_id, "--root", root, "--force").exit_code == 0
    assert interfaces.read_bytes() == OLD_INTERFACES


def test_rollback_of_unknown_id_and_without_backups(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    result = run("rollback", "--root", root)
    assert result.exit_code == 3
    assert result.stderr == f"{root / BACKUPS}: no backup sets; nothing to roll back\n"
    installed(root)
    result = run("rollback", "20000101T000000.000000Z", "--root", root)
    assert result.exit_code == 2
    assert (
        result.stderr == f"{root / BACKUPS / '20000101T000000.000000Z'}: no such backup set (see `kvmbridge backups`)\n"
    )


def test_backups_lists_each_set(tmp_path: Path) -> None:
    root = seed_old_host(tmp_path / "root")
    first = installed(root)
    second = installed(root, GOLDEN / "two-bridges.toml")
    lines = run("backups", "--root", root).stdout.splitlines()
    assert lines[0].split() == ["ID", "TIME", "HOST", "ACTION", "FILES"]
    assert [line.split()[0] for line in lines[1:]] == [first, second]
    assert lines[2].split()[2:4] == ["kvm02.example.org", "install"]


def _fault_run(root_dir: Path, fail_at: int, fail_after_first: bool = False) -> tuple[list[str], Exception | None]:
    faulty = FaultyRoot(root_dir, fail_at, fail_after_first)
    profile = load_profile(ARTICLE)
    try:
        install(profile, render(profile), faulty, profile_path=ARTICLE, force=False)
    except (RolledBackError, RollbackFailedError, RefusedError) as exc:
        return faulty.log, exc
    return faulty.log, None


def test_install_restores_every_file_when_any_write_step_fails(tmp_path: Path) -> None:
    """Deterministic fault injection at every mutating step of the transaction."""
    pristine = seed_old_host(tmp_path / "pristine")
    etc_before = etc_files(pristine)
    step = 1
    while True:
        root = tmp_path / f"run{step}"
        os.system(f"cp -a {pristine} {root}")
        _, error = _fault_run(root, step)
        if error is None:
            break
        assert isinstance(error, RolledBackError | RefusedError), (step, error)
        assert etc_files(root) == etc_before, f"step {step}"
        assert not list((root / "var/backups").glob("kvmbridge/*")), f"step {step}: a useless backup set was left"
        step += 1
    assert step > 15  # every backup, write and rename step was exercised


def test_failed_restore_exits_5_and_names_every_path_left(tmp_path: Path) -> None:
    log, _ = _fault_run(seed_old_host(tmp_path / "dry"), 10**6)
    etc = f"rename {tmp_path / 'dry/etc'}/"
    second_etc_rename = [i for i, step in enumerate(log, 1) if step.startswith(etc)][1]
    root = seed_old_host(tmp_path / "root")
    # The backup and the first write go through; every later step fails, restoring included.
    _, error = _fault_run(root, second_etc_rename, fail_after_first=True)
    assert isinstance(error, RollbackFailedError)
    assert error.exit_code == 5
    assert error.lines[0].startswith("failed: ")
    assert any("not restored" in line and "its backup:" in line for line in error.lines)
    assert error.lines[-1].startswith(f"backup set: {root / BACKUPS}/")


def test_install_as_unprivileged_user_on_live_root_is_refused() -> None:
    require_root()
    etc_before = snapshot(Path("/etc/network")) if Path("/etc/network").exists() else {}
    result = as_nobody("install", ARTICLE, "--root", "/")
    assert result.returncode == 3, result.stderr
    assert result.stderr == "/: writing the live system needs root (or use --root DIR for a staging tree)\n"
    assert (snapshot(Path("/etc/network")) if Path("/etc/network").exists() else {}) == etc_before
    assert not Path("/var/lib/kvmbridge/state.json").exists()


def test_install_is_refused_while_another_holds_the_lock(tmp_path: Path) -> None:
    import fcntl

    root = seed_old_host(tmp_path / "root")
    lock = root / "var/lib/kvmbridge/lock"
    lock.parent.mkdir(parents=True)
    with lock.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        before = snapshot(root)
        result = run("install", ARTICLE, "--root", root)
        assert result.exit_code == 3
        assert after_rule_findings(result.stderr, "KB206").startswith(
            f"{lock}: another kvmbridge install or rollback holds the lock"
        )
        assert snapshot(root) == before


def test_owner_is_kept_in_the_backup_and_restored_by_rollback(tmp_path: Path) -> None:
    require_root()
    root = seed_old_host(tmp_path / "root")
    interfaces = root / "etc/network/interfaces"
    os.chown(interfaces, 1234, 2345)
    backup_id = installed(root)
    assert (interfaces.stat().st_uid, interfaces.stat().st_gid) == (1234, 2345)  # an existing file keeps its owner
    copy = root / BACKUPS / backup_id / "files/etc/network/interfaces"
    assert (copy.stat().st_uid, copy.stat().st_gid) == (1234, 2345)
    assert run("rollback", "--root", root).exit_code == 0
    assert (interfaces.stat().st_uid, interfaces.stat().st_gid, interfaces.read_bytes()) == (1234, 2345, OLD_INTERFACES)


def test_diff_is_coloured_on_a_terminal_only(tmp_path: Path) -> None:
    import pty
    import subprocess
    import sys

    root = seed_old_host(tmp_path / "root")
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "kvmbridge", "diff", str(ARTICLE), "--root", str(root)],
        stdout=follower,
        stderr=subprocess.DEVNULL,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    assert proc.wait() == 1
    shown = b"".join(chunks).decode()
    assert "\x1b[32m+    bridge_ports eth0" in shown and "\x1b[31m-iface eth0 inet static" in shown
    assert "\x1b[" not in run("diff", ARTICLE, "--root", root).stdout


def test_install_report_names_backup_rollback_checks_and_activation(tmp_path: Path) -> None:
    root = seed_old_host(tmp_path / "root")
    result = run("install", GOLDEN / "two-bridges.toml", "--root", root)
    lines = result.stdout.splitlines()
    backup_id = next(line for line in lines if line.startswith("backup: ")).split()[1]
    assert f"undo with: kvmbridge rollback {backup_id} --root {root}" in lines
    assert "takes effect at the next boot; then check it with:" in lines
    status = f"  kvmbridge status {GOLDEN / 'two-bridges.toml'}    # bridges, ports, addresses, routes, sysctl, libvirt, files"
    assert status in lines
    assert not any(line.startswith("  ip -d link") for line in lines)  # one command, not a list to read by eye
    assert "to activate now instead (not run; over SSH this can cut your session):" in lines
    assert "  systemctl restart networking" in lines
    assert "  virsh net-define /etc/libvirt/qemu/networks/prod.xml && virsh net-start prod" in lines


def test_install_json_says_what_it_did_and_only_json_goes_to_stdout(tmp_path: Path) -> None:
    """--json: the backup ID, each file with its action, findings and guard, for scripts and the Ansible module."""
    root = seed_old_host(tmp_path / "root")
    before = snapshot(root)
    dry = run("install", ARTICLE, "--root", root, "--dry-run", "--json")
    assert dry.exit_code == 0, dry.stderr
    planned = json.loads(dry.stdout)
    assert snapshot(root) == before
    assert planned["dry_run"] is True and planned["changed"] is False and planned["backup_id"] is None
    actions = {f["path"]: f["action"] for f in planned["files"]}
    assert actions["/etc/network/interfaces"] == "update"
    assert actions["/etc/udev/rules.d/99-bridge.rules"] == "create"
    assert actions["/etc/libvirt/qemu/networks/autostart/bridge-network.xml"] == "create"

    done = run("install", ARTICLE, "--root", root, "--json")
    assert done.exit_code == 0, done.stderr
    report = json.loads(done.stdout)  # the whole of stdout: no human lines around it
    (backup_id,) = os.listdir(root / BACKUPS)
    assert report["changed"] is True and report["dry_run"] is False and report["refused"] == []
    assert report["backup_id"] == backup_id
    assert report["rollback"] == f"kvmbridge rollback {backup_id} --root {root}"
    assert {f["path"]: f["action"] for f in report["files"]} == actions
    assert {f["path"]: f["status"] for f in report["files"]}["/etc/network/interfaces"] == "update"
    assert report["guard"] == {
        "requested": False,
        "armed": False,
        "duration": None,
        "seconds": None,
        "auto_confirm": False,
        "executable": None,
    }
    assert "systemctl restart networking" in report["activate"]
    assert isinstance(report["findings"], list) and "safety_notes" in report
    assert (root / "etc/udev/rules.d/99-bridge.rules").exists()

    again = json.loads(run("install", ARTICLE, "--root", root, "--json").stdout)
    assert again["changed"] is False and again["backup_id"] is None and again["rollback"] is None
    assert {f["action"] for f in again["files"]} == {"none"}
    assert os.listdir(root / BACKUPS) == [backup_id]


def test_install_json_refused_keeps_the_findings_in_the_document_and_writes_nothing(tmp_path: Path) -> None:
    root = seed_old_host(tmp_path / "root")
    netplan = root / "etc/netplan/50-cloud-init.yaml"
    netplan.parent.mkdir(parents=True)
    netplan.write_text("network:\n  version: 2\n  ethernets:\n    eth0:\n      dhcp4: true\n")
    before = snapshot(root)
    result = run("install", ARTICLE, "--root", root, "--json")
    assert result.exit_code == 3
    report = json.loads(result.stdout)
    assert snapshot(root) == before
    assert report["changed"] is False and report["backup_id"] is None
    (finding,) = [f for f in report["findings"] if f["severity"] == "error"]
    assert finding["id"] == "KB102" and finding["subject"] == "eth0"
    assert report["refused"] and "nothing was changed" in report["refused"][0]
    assert result.stderr.strip().splitlines()[-1] == report["refused"][-1]


def test_install_json_reports_the_armed_guard(tmp_path: Path) -> None:
    from .guardroots import EXECUTABLE, guardable_root

    require_root()
    root = guardable_root(tmp_path / "root")
    result = run("install", ARTICLE, "--root", root, "--confirm-within", "10m", "--auto-confirm", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["guard"] == {
        "requested": True,
        "armed": True,
        "duration": "10m",
        "seconds": 600,
        "auto_confirm": True,
        "executable": EXECUTABLE,
    }
    assert (root / "var/lib/kvmbridge/guard.json").exists()
    assert report["backup_id"] == json.loads((root / "var/lib/kvmbridge/guard.json").read_text())["backup"]
    assert (root / "etc/systemd/system/kvmbridge-guard.timer").exists()
    assert {f["path"]: f["action"] for f in report["files"]}["/etc/network/interfaces"] == "update"


def test_a_killed_runs_set_is_work_diff_dry_run_and_install_all_name(tmp_path: Path) -> None:
    """ATTACK11b F5: files all in place but the newest backup set never finished (an install killed before
    its last step): diff exits 1 and names the set, the dry run says it would finish it, install finishes it
    (a new set, exit 0) without claiming "nothing to change", and then everything is in sync."""
    root = seed_old_host(tmp_path / "root")
    assert run("install", ARTICLE, "--root", root).exit_code == 0
    (killed,) = os.listdir(root / "var/backups/kvmbridge")
    manifest = root / "var/backups/kvmbridge" / killed / "manifest.json"
    doc = json.loads(manifest.read_text())
    doc["finished"] = False  # what a kill before the last step leaves
    manifest.write_text(json.dumps(doc))
    before = snapshot(root)
    line = f"backup set {killed} was left unfinished by a killed run: `kvmbridge install` would finish it"
    diff = run("diff", ARTICLE, "--root", root)
    assert diff.exit_code == 1 and line in diff.stdout.splitlines(), diff.stdout
    diff_json = json.loads(run("diff", ARTICLE, "--root", root, "--json").stdout)
    assert diff_json["in_sync"] is False and diff_json["unfinished"] == killed
    dry = run("install", ARTICLE, "--root", root, "--dry-run")
    assert dry.exit_code == 0
    assert f"  would finish backup set {killed}, left unfinished by a killed run" in dry.stdout.splitlines()
    assert "  nothing to change\n" not in dry.stdout
    dry_json = json.loads(run("install", ARTICLE, "--root", root, "--dry-run", "--json").stdout)
    assert dry_json["unfinished"] == killed and dry_json["refused"] == []
    assert snapshot(root) == before
    done = run("install", ARTICLE, "--root", root)
    assert done.exit_code == 0
    assert f"  finished backup set {killed}, left unfinished by a killed run" in done.stdout.splitlines()
    assert "  nothing to change\n" not in done.stdout and "backup: " in done.stdout
    assert len(os.listdir(root / "var/backups/kvmbridge")) == 2
    again = run("diff", ARTICLE, "--root", root)
    assert again.exit_code == 0 and "unfinished" not in again.stdout
    assert "nothing to do" in run("install", ARTICLE, "--root", root).stdout
