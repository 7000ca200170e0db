"""The boot guard under real systemd: Debian 12 images booted with systemd-nspawn (tests/imagelab.py).

Each scenario fails if the guard did nothing: the timer has to fire by itself
at the next boot (OnBootSec, counted from the container's start), restore the
old files byte for byte, and reboot (nspawn exits 133); confirming has to stop
it. Durations are the shortest allowed (30s) to keep CI short.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from kvmbridge.model import IPv4
from kvmbridge.profile import load_profile

from .bootcheck import profile_toml
from .conftest import GOLDEN, require_root, require_tool
from .imagelab import REBOOT_EXIT, Lan, Machine, kvmbridge_image
from .netns import GATEWAY, HOST_ADDRESS, readdress

OLD_ADDRESS = "198.51.100.3"
OLD_INTERFACES = f"""# the host before kvmbridge: eth0 with its own address
auto lo
iface lo inet loopback

auto eth0
iface eth0 inet static
    address {OLD_ADDRESS}/24
    gateway {GATEWAY}
"""
KVMBRIDGE = "/opt/kvmbridge/bin/kvmbridge"
GUARD = "var/lib/kvmbridge/guard.json"
EXPIRED = "var/lib/kvmbridge/guard-expired.json"
PROFILE_INSIDE = "/root/article.toml"


@pytest.fixture(scope="module")
def image() -> Any:
    require_root()
    for tool in ("debootstrap", "systemd-nspawn", "nsenter", "unshare", "ip", "ping", "journalctl"):
        require_tool(tool)
    return kvmbridge_image()


@pytest.fixture(scope="module")
def lan() -> Iterator[Lan]:
    with Lan() as lan:
        yield lan


@pytest.fixture
def machine(lan: Lan, image: Any) -> Iterator[Machine]:
    with Machine(lan, {"eth0": True}, image) as machine:
        yield machine


def profile_text(**ipv4_or_ports: Any) -> str:
    """The article's profile on the lab LAN (198.51.100.2 on br0 over eth0), optionally broken."""
    profile = readdress(load_profile(GOLDEN / "article.toml"))
    bridge = profile.bridges["br0"]
    if "ports" in ipv4_or_ports:
        bridge = msgspec.structs.replace(bridge, ports=tuple(ipv4_or_ports["ports"]))
    if "gateway" in ipv4_or_ports:
        ipv4 = IPv4(method="static", address=f"{HOST_ADDRESS}/24", gateway=ipv4_or_ports["gateway"], dns=(GATEWAY,))
        bridge = msgspec.structs.replace(bridge, ipv4=ipv4)
    return profile_toml(msgspec.structs.replace(profile, bridges={"br0": bridge}))


def guarded_install(machine: Machine, text: str, *extra: str, within: str = "30s") -> dict[str, bytes | None]:
    """Give the image the old host's config, then install `text` from outside with a 30s guard.

    Returns what each path of the backup set held before (None: absent), to compare byte for byte.
    """
    (machine.root / "etc/network/interfaces").write_text(OLD_INTERFACES)
    profile = machine.root / PROFILE_INSIDE.lstrip("/")
    profile.write_text(text)
    command = [sys.executable, "-m", "kvmbridge", "install", str(profile), "--root", str(machine.root)]
    result = subprocess.run([*command, "--confirm-within", within, *extra], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    backup = next(line for line in result.stdout.splitlines() if line.startswith("backup: ")).split()[1]
    manifest = json.loads((machine.root / f"var/backups/kvmbridge/{backup}/manifest.json").read_text())
    before: dict[str, bytes | None] = {}
    for entry in manifest["files"]:
        copy = machine.root / f"var/backups/kvmbridge/{backup}/files{entry['path']}"
        before[entry["path"]] = copy.read_bytes() if entry["existed"] and entry["kind"] == "file" else None
    assert before["/etc/network/interfaces"] == OLD_INTERFACES.encode()
    return before


def assert_reverted(machine: Machine, before: dict[str, bytes | None]) -> dict[str, Any]:
    """The old files are back byte for byte, the guard is gone, and guard-expired.json says why."""
    for path, data in before.items():
        now = machine.root / path.lstrip("/")
        if data is None:
            assert not now.exists() and not now.is_symlink(), f"{path} should be gone again"
        else:
            assert now.read_bytes() == data, f"{path} is not back byte for byte"
    assert not (machine.root / GUARD).exists()
    report: dict[str, Any] = json.loads((machine.root / EXPIRED).read_text())
    assert report["reason"] == "not confirmed within 30s after boot"
    assert "/etc/network/interfaces" in report["restored"]
    return report


def inside(machine: Machine, *args: str) -> subprocess.CompletedProcess[str]:
    return machine.run(shlex.join([KVMBRIDGE, *args]), check=False)


def journal(machine: Machine, *units: str) -> str:
    """The machine's persistent journal, read from outside (it survives the container's reboots)."""
    command = ["journalctl", "-D", str(machine.root / "var/log/journal"), "-o", "cat", "--no-pager"]
    for unit in units:
        command += ["-u", unit]
    return subprocess.run(command, capture_output=True, text=True, check=False).stdout


def guard_armed(machine: Machine) -> None:
    """The timer is loaded and waiting in the booted system (proof the guard is live, not just files)."""
    assert machine.run("systemctl is-active kvmbridge-guard.timer", check=False).stdout.strip() == "active"


def fire_now(machine: Machine) -> str:
    """What the timer does at its deadline, started by hand: the service's condition result."""
    machine.run("systemctl start kvmbridge-guard.service", check=False)
    return machine.run("systemctl show -P ConditionResult kvmbridge-guard.service").stdout.strip()


def test_confirmed_inside_the_next_boot_keeps_the_new_configuration(machine: Machine, lan: Lan) -> None:
    guarded_install(machine, profile_text())
    machine.boot()
    guard_armed(machine)
    status = inside(machine, "status", PROFILE_INSIDE)
    assert status.returncode == 0, status.stdout + status.stderr
    assert any(line.startswith("boot guard: armed for backup ") for line in status.stdout.splitlines())
    report = json.loads(inside(machine, "status", PROFILE_INSIDE, "--json").stdout)
    assert report["as_profiled"] is True and report["guard"]["armed"] is True
    assert inside(machine, "backups").stdout.splitlines()[-1].startswith("boot guard: armed for backup ")
    confirmed = inside(machine, "confirm")
    assert confirmed.returncode == 0 and confirmed.stdout.startswith("confirmed: the boot guard for backup ")
    assert fire_now(machine) == "no"  # the deadline passing now does nothing: no revert, no reboot
    assert machine.process is not None and machine.process.poll() is None
    machine.reboot()
    assert lan.wait_ping(HOST_ADDRESS), "the confirmed configuration did not come back after the reboot"
    assert machine.run("systemctl is-active kvmbridge-guard.timer", check=False).stdout.strip() != "active"
    assert not (machine.root / EXPIRED).exists()
    assert inside(machine, "status", PROFILE_INSIDE).returncode == 0


def test_unconfirmed_missing_port_reverts_even_after_a_power_loss(machine: Machine, lan: Lan) -> None:
    before = guarded_install(machine, profile_text(ports=["eth7"]))  # eth7 does not exist: br0 has no way out
    machine.boot()
    guard_armed(machine)
    assert not lan.ping(HOST_ADDRESS) and not lan.ping(OLD_ADDRESS)  # locked out
    machine.power_loss()  # the plug is pulled before the guard's deadline
    assert (machine.root / GUARD).exists()
    started = time.monotonic()
    machine.start()
    code = machine.wait_exit(timeout=120)
    assert code == REBOOT_EXIT, f"nspawn exited {code}, not {REBOOT_EXIT}: {machine.console()[-2000:]}"
    assert time.monotonic() - started >= 30, "the guard fired before its OnBootSec deadline"
    report = assert_reverted(machine, before)
    assert report["duration"] == "30s"
    log = journal(machine, "kvmbridge-guard.service")
    assert f"kvmbridge boot guard: not confirmed within 30s after boot: restored backup {report['backup']}" in log
    machine.boot()
    assert lan.wait_ping(OLD_ADDRESS), "the old configuration is not reachable at the old address"
    assert not lan.ping(HOST_ADDRESS)
    assert machine.run("systemctl is-active kvmbridge-guard.timer", check=False).stdout.strip() != "active"


def test_unconfirmed_wrong_gateway_reverts_at_its_deadline_and_the_old_host_comes_back(
    machine: Machine, lan: Lan
) -> None:
    """No --auto-confirm and nobody confirms: the timer alone reverts a boot that came up but cannot route."""
    before = guarded_install(machine, profile_text(gateway="198.51.100.254"))  # nobody answers at .254
    started = time.monotonic()
    machine.boot()
    guard_armed(machine)
    assert lan.wait_ping(HOST_ADDRESS)  # up on the LAN, yet its way out is wrong: only the deadline saves it
    assert machine.run("ping -c1 -W1 198.51.100.254", check=False).returncode != 0
    code = machine.wait_exit(timeout=120)
    assert code == REBOOT_EXIT, f"nspawn exited {code}, not {REBOOT_EXIT}: {machine.console()[-2000:]}"
    assert time.monotonic() - started >= 30, "the guard fired before its OnBootSec deadline"
    report = assert_reverted(machine, before)
    assert (report["duration"], report["profile"]) == ("30s", "article.toml")
    assert (machine.root / f"var/backups/kvmbridge/{report['undo']}/manifest.json").is_file()
    log = journal(machine, "kvmbridge-guard.service")
    assert f"kvmbridge boot guard: not confirmed within 30s after boot: restored backup {report['backup']}" in log
    assert f"undo the revert with: kvmbridge rollback {report['undo']}" in log
    machine.boot()
    assert lan.wait_ping(OLD_ADDRESS), "the old configuration is not reachable at the old address"
    assert not lan.ping(HOST_ADDRESS)
    assert machine.run("systemctl is-active kvmbridge-guard.timer", check=False).stdout.strip() != "active"
    status = inside(machine, "status", PROFILE_INSIDE).stdout  # what an admin at the console sees
    assert (
        f"boot guard: expired at {report['time']}: not confirmed within 30s after boot; "
        f"restored backup {report['backup']} (undo with: kvmbridge rollback {report['undo']})"
    ) in status, status


def test_auto_confirm_with_a_wrong_gateway_leaves_the_guard_to_revert(machine: Machine) -> None:
    before = guarded_install(machine, profile_text(gateway="198.51.100.254"), "--auto-confirm")  # nobody at .254
    machine.start()
    code = machine.wait_exit(timeout=120)
    assert code == REBOOT_EXIT, f"nspawn exited {code}, not {REBOOT_EXIT}: {machine.console()[-2000:]}"
    assert_reverted(machine, before)
    log = journal(machine, "kvmbridge-guard-check.service")
    assert "br0: gateway 198.51.100.254: expected an answer, found none" in log, log
    assert "kvmbridge boot guard: not confirmed after " in log  # the check ran, failed, and left the timer


def test_auto_confirm_confirms_a_good_boot_by_itself_off_the_critical_path(machine: Machine, lan: Lan) -> None:
    # 2m: the check retries for up to 105s, so a slow (loaded) machine still confirms; it usually takes ~2s.
    guarded_install(machine, profile_text(), "--auto-confirm", within="2m")
    # ATTACK10b F4c: what DefaultEnvironment= hands every unit must not reach the guard's Python
    # (PYTHONVERBOSE would write Python's import trace to the check's journal).
    conf = machine.root / "etc/systemd/system.conf.d/kvmbridge-test.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text("[Manager]\nDefaultEnvironment=PYTHONVERBOSE=1 PYTHONPATH=/nowhere\n")
    machine.boot()
    deadline = time.monotonic() + 110
    while (machine.root / GUARD).exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not (machine.root / GUARD).exists(), machine.run(
        "journalctl -b -u kvmbridge-guard-check", check=False
    ).stdout
    journal = ""
    for _ in range(50):  # the check's last line reaches the journal just after guard.json goes
        journal = machine.run("journalctl -b -o cat -u kvmbridge-guard-check.service", check=False).stdout
        if "the host came up as profiled; confirmed backup" in journal:
            break
        time.sleep(0.2)
    assert "the host came up as profiled; confirmed backup" in journal, journal
    assert "zipimport" not in journal and "# code object from" not in journal, journal[:2000]
    assert machine.run("systemctl show -P Environment", check=False).stdout.split().count("PYTHONVERBOSE=1") == 1
    assert fire_now(machine) == "no"
    chain = machine.run("systemd-analyze critical-chain --no-pager", check=False).stdout
    assert "kvmbridge" not in chain, chain  # the boot never waits for the guard or its check
    after = machine.run("systemctl show -P After multi-user.target").stdout.split()
    assert not [unit for unit in after if unit.startswith("kvmbridge")]
    machine.reboot()
    assert lan.wait_ping(HOST_ADDRESS)
    assert not (machine.root / EXPIRED).exists()


def test_the_image_s_own_venv_is_trusted_and_a_writable_one_is_refused(machine: Machine) -> None:
    text = profile_text()
    guarded_install(machine, text)  # pip's venv under /opt/kvmbridge passes the checks as it is
    assert (
        subprocess.run(
            [sys.executable, "-m", "kvmbridge", "confirm", "--root", str(machine.root)], check=False
        ).returncode
        == 0
    )
    site = next((machine.root / "opt/kvmbridge/lib").glob("python3*/site-packages/kvmbridge/cli.py"))
    site.chmod(0o646)
    profile = machine.root / PROFILE_INSIDE.lstrip("/")
    profile.write_text(text.replace('hostname = "kvm01"', 'hostname = "kvm02"'))
    command = [sys.executable, "-m", "kvmbridge", "install", str(profile), "--root", str(machine.root)]
    result = subprocess.run([*command, "--confirm-within", "1m"], capture_output=True, text=True, check=False)
    assert result.returncode == 3
    assert f"{site}: writable by others; its code runs as root at boot" in result.stderr
