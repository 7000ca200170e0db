"""The `kvmbridge.fleet` collection over real SSH: the README's playbook against three booted Debian 12 hosts.

Three image-lab machines (systemd as PID 1, sshd, a test key) sit on the lab
LAN (198.51.100.0/24); the controller is this machine: ansible-playbook, ssh and
pip run here, and only a small relay (`tcp_relay.py`, the SSH ProxyCommand)
enters the LAN namespace. The collection is built with `ansible-galaxy
collection build` and installed from that tarball. The hosts boot once for the
module; the tests are the steps of one rollout and run in order, four playbook
runs in all: check mode; apply with a guard (reboot, status, confirm); again;
then one run where one host has a blocking finding and another gets a profile
that cuts it off, reverted by its guard. The role builds the wheel in the first
run only (its sources' hash is unchanged after that).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .conftest import REPO, require_root, require_tool
from .imagelab import REBOOT_EXIT, Lan, Machine, image
from .netns import GATEWAY, LAN_NET

PLAYBOOK = REPO / "ansible/example/site.yml"
COLLECTION = REPO / "ansible/ansible_collections/kvmbridge/fleet"
HOSTS = {"kvm01": f"{LAN_NET}.11", "kvm02": f"{LAN_NET}.12", "kvm03": f"{LAN_NET}.13"}
# Containers share the kernel's boot_id; PID 1's start time (in ticks since the kernel booted) changes per boot.
BOOT_TIME = "cut -d' ' -f22 /proc/1/stat"


def profile_text(address: str, gateway: str = GATEWAY) -> str:
    return (
        '[bridges.br0]\nports = ["eth0"]\n'
        f'ipv4 = {{ method = "static", address = "{address}/24", gateway = "{gateway}" }}\n\n'
        '[networks.lan]\nbridge = "br0"\n'
    )


def first_interfaces(address: str) -> str:
    """What the host runs before kvmbridge: its address straight on the NIC."""
    return (
        "auto lo\niface lo inet loopback\n\n"
        f"auto eth0\niface eth0 inet static\n    address {address}/24\n    gateway {GATEWAY}\n"
    )


@dataclass
class Host:
    """A lab machine that boots again whenever it reboots itself (nspawn exits 133), as a real host would."""

    name: str
    address: str
    machine: Machine
    stopping: bool = False
    exits: list[int] = field(default_factory=list)
    thread: threading.Thread | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        self.machine.boot()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        while True:
            process = self.machine.process
            if process is None:
                return
            code = process.wait()
            with self.lock:
                if self.stopping:
                    return
                self.exits.append(code)
                self.machine._stopped()
                if code != REBOOT_EXIT:
                    return
                self.machine.start()

    def stop(self) -> None:
        with self.lock:
            self.stopping = True
            self.machine.power_loss()
        if self.thread is not None:
            self.thread.join(30)

    def etc_hashes(self) -> dict[str, str]:
        """Every name under the host's /etc with a digest of its bytes or link text, read from outside."""
        out: dict[str, str] = {}
        etc = self.machine.root / "etc"
        for path in sorted(etc.rglob("*")):
            if path.is_symlink():
                out[str(path.relative_to(etc))] = "link " + os.readlink(path)
            elif path.is_file():
                out[str(path.relative_to(etc))] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                out[str(path.relative_to(etc))] = "folder"
        return out

    def guard_armed(self) -> bool:
        return (self.machine.root / "var/lib/kvmbridge/guard.json").exists()

    def addresses(self, device: str) -> list[str]:
        return [
            f"{a['local']}/{a['prefixlen']}"
            for link in self.machine.ip_json(f"addr show dev {device}")
            for a in link.get("addr_info", [])
            if a["family"] == "inet"
        ]


@dataclass
class Fleet:
    lan: Lan
    hosts: dict[str, Host]
    folder: Path  # the playbook folder: site.yml as printed in the README, inventory.ini, profiles/
    env: dict[str, str]
    runs: int = 0
    wheel_built_ns: int = 0  # the wheel's mtime after the first run: later runs must not build it again

    def playbook(self, *args: str, timeout: float = 900) -> Run:
        cmd = ["ansible-playbook", "-i", "inventory.ini", "site.yml", *args]
        bin_dir = str(Path(sys.executable).parent)
        env = {**self.env, "PATH": f"{bin_dir}:{self.env['PATH']}"}
        result = subprocess.run(
            cmd, cwd=self.folder, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
        self.runs += 1
        (self.folder / f"run{self.runs}.log").write_text(result.stdout + result.stderr)  # kept for a failure's story
        return Run(result.returncode, result.stdout + result.stderr)

    def profile(self, name: str) -> Path:
        return self.folder / "profiles" / f"{name}.toml"

    def wheel(self) -> Path:
        """The wheel the role built on the controller (its default folder, beside the playbook)."""
        (wheel,) = (self.folder / ".kvmbridge-wheels").glob("kvmbridge-*.whl")
        return wheel


@dataclass
class Run:
    rc: int
    output: str

    def recap(self) -> dict[str, dict[str, int]]:
        """PLAY RECAP: host -> {ok, changed, unreachable, failed, skipped, ...}."""
        out: dict[str, dict[str, int]] = {}
        for line in self.output.split("PLAY RECAP")[-1].splitlines():
            match = re.match(r"^(\S+)\s+:\s+(.*)$", line.strip())
            if match:
                out[match.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(2))}
        return out

    def task(self, title: str) -> dict[str, str]:
        """Each host's outcome of one task: ok, changed, skipping, fatal, failed."""
        outcomes: dict[str, str] = {}
        blocks = re.split(r"^TASK \[", self.output, flags=re.M)
        for block in blocks[1:]:
            if not block.startswith(title + "]") and not block.split("]")[0].endswith(" : " + title):
                continue
            for status, host in re.findall(r"^(ok|changed|skipping|fatal|failed): \[([^\]]+)\]", block, flags=re.M):
                outcomes[host] = status
        return outcomes

    def __str__(self) -> str:
        return f"exit {self.rc}\n{self.output[-6000:]}"


def snapshot_source(folder: Path) -> Path:
    """What goes into the wheel, copied once: the role builds from this copy, so a checkout that moves
    while the module runs (an integration checkout others merge into) cannot make a later run rebuild and
    reinstall, which would read as a change on every host."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    folder.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, folder / name)
    for name in ("src", "templates"):
        shutil.copytree(REPO / name, folder / name, ignore=ignore)
    return folder


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    require_root()
    for tool in ("debootstrap", "systemd-nspawn", "nsenter", "ip", "ssh", "ssh-keygen"):
        require_tool(tool)
    for tool in ("ansible-playbook", "ansible-galaxy"):
        if not (Path(sys.executable).parent / tool).exists():
            pytest.fail(f"{tool} is a test dependency (pip install -e '.[test]')", pytrace=False)
    debian = image("base")  # Debian 12 with sshd and python3-venv, without kvmbridge: the role puts it there
    work = tmp_path_factory.mktemp("fleet")
    source = snapshot_source(work / "source")
    key = work / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    collections = work / "collections"
    bin_dir = Path(sys.executable).parent
    build = subprocess.run(
        [bin_dir / "ansible-galaxy", "collection", "build", "--output-path", work, COLLECTION],
        capture_output=True,
        text=True,
        check=True,
    )
    tarball = next(work.glob("kvmbridge-fleet-*.tar.gz"))
    subprocess.run(
        [bin_dir / "ansible-galaxy", "collection", "install", "-p", collections, tarball],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "Created collection" in build.stdout
    with contextlib.ExitStack() as stack:
        lan = stack.enter_context(Lan())
        hosts: dict[str, Host] = {}
        for name, address in HOSTS.items():
            machine = stack.enter_context(Machine(lan, {"eth0": True}, debian))
            root = machine.root
            (root / "etc/network/interfaces").write_text(first_interfaces(address))
            (root / "etc/hostname").write_text(f"{name}\n")
            ssh = root / "root/.ssh"
            ssh.mkdir(mode=0o700, parents=True, exist_ok=True)
            (ssh / "authorized_keys").write_text(key.with_suffix(".pub").read_text())
            (ssh / "authorized_keys").chmod(0o600)
            subprocess.run(["ssh-keygen", "-A", "-f", str(root)], check=True, capture_output=True)
            host = Host(name, address, machine)
            stack.callback(host.stop)
            hosts[name] = host
        threads = [threading.Thread(target=h.start) for h in hosts.values()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for host in hosts.values():
            assert lan.wait_ping(host.address, 60), f"{host.name} is not on the LAN: {host.machine.console()[-2000:]}"
        folder = work / "site"
        (folder / "profiles").mkdir(parents=True)
        (folder / "site.yml").write_bytes(PLAYBOOK.read_bytes())
        for name, address in HOSTS.items():
            (folder / "profiles" / f"{name}.toml").write_text(profile_text(address))
        relay = f"nsenter --net=/run/netns/{lan.name} {sys.executable} {REPO / 'tests/tcp_relay.py'} %h %p"
        ssh_args = f"-o ProxyCommand={shlex.quote(relay)} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
        inventory = ["[kvm_hosts]", *(f"{n} ansible_host={a}" for n, a in HOSTS.items()), "", "[kvm_hosts:vars]"]
        inventory += [
            "ansible_user=root",
            "ansible_become=false",  # root already; the minimal image has no sudo
            f"ansible_ssh_private_key_file={key}",
            f"ansible_ssh_common_args={shlex.quote(ssh_args)}",
            "ansible_python_interpreter=/usr/bin/python3",
            f"host_kvmbridge_source={source}",
            "host_confirm_within=10m",
            f"kvmbridge_boot_time_command={shlex.quote(BOOT_TIME)}",
        ]
        (folder / "inventory.ini").write_text("\n".join(inventory) + "\n")
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "HOME": str(work),
            "LANG": "C.UTF-8",
            "ANSIBLE_COLLECTIONS_PATH": str(collections),
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(work / "cp"),
            "ANSIBLE_LOCAL_TEMP": str(work / "tmp"),
            "ANSIBLE_PIPELINING": "true",
            "ANSIBLE_FORCE_COLOR": "false",
            "ANSIBLE_NOCOLOR": "true",
            "ANSIBLE_RETRY_FILES_ENABLED": "false",
        }
        yield Fleet(lan, hosts, folder, env)


def settled_etc_hashes(host: Host) -> dict[str, str]:
    """/etc once libvirtd has started and written its own files (its nwfilter set, through `.xml.new`
    temporaries): socket-activated, it may start during the check and write them then, which is
    libvirt's doing, not the check's. So start it first, and wait until /etc stops changing."""
    host.machine.run("virsh -c qemu:///system net-list --all >/dev/null")
    last = host.etc_hashes()
    for _ in range(30):
        time.sleep(1)
        now = host.etc_hashes()
        if now == last:
            return now
        last = now
    raise AssertionError("the host's /etc kept changing for 30 s before the check")


def test_check_mode_writes_nothing_and_the_diff_shows_the_interfaces_change(fleet: Fleet) -> None:
    before = {name: settled_etc_hashes(host) for name, host in fleet.hosts.items()}
    run = fleet.playbook("--check", "--diff")
    assert run.rc == 0, run
    for name, host in fleet.hosts.items():
        after = host.etc_hashes()
        changed = sorted(p for p in before[name].keys() | after.keys() if before[name].get(p) != after.get(p))
        assert not changed, f"check mode changed {name}:/etc: {changed}"
    assert run.task("Install this host's profile for the next boot") == dict.fromkeys(HOSTS, "changed"), run
    assert run.output.count("+++ after: /etc/network/interfaces") == 3, run
    for name, address in HOSTS.items():
        shown = run.output.split(f"+# Generated from {name}.toml by kvmbridge")[1].split("changed: [")[0]
        assert "-iface eth0 inet static\n" in shown and "+iface eth0 inet manual\n" in shown, run
        assert f"+iface br0 inet static\n     address {address}/24\n" in shown, run
        assert "+    bridge_ports eth0\n" in shown, run
    assert run.task("Reboot the hosts whose files changed") == dict.fromkeys(HOSTS, "skipping"), run
    assert not any(host.guard_armed() for host in fleet.hosts.values())
    fleet.wheel_built_ns = fleet.wheel().stat().st_mtime_ns


def test_apply_with_a_guard_reboots_checks_and_confirms_every_host(fleet: Fleet) -> None:
    run = fleet.playbook()
    assert run.rc == 0, run
    assert run.task("Install this host's profile for the next boot") == dict.fromkeys(HOSTS, "changed"), run
    assert run.task("Reboot the hosts whose files changed") == dict.fromkeys(HOSTS, "changed"), run
    assert run.task("Check that each host runs as its profile says") == dict.fromkeys(HOSTS, "ok"), run
    assert run.task("Disarm the boot guard") == dict.fromkeys(HOSTS, "changed"), run
    for host in fleet.hosts.values():
        assert host.exits == [REBOOT_EXIT], (host.name, host.exits)
        assert host.addresses("br0") == [f"{host.address}/24"], host.name
        assert not host.guard_armed(), host.name
        assert (host.machine.root / "opt/kvmbridge/bin/kvmbridge").stat().st_uid == 0


def test_running_it_again_changes_nothing(fleet: Fleet) -> None:
    run = fleet.playbook()
    assert run.rc == 0, run
    recap = run.recap()
    assert set(recap) == set(HOSTS), run
    assert all(counts["changed"] == 0 and counts["failed"] == 0 for counts in recap.values()), run
    assert all(host.exits == [REBOOT_EXIT] for host in fleet.hosts.values())
    assert fleet.wheel().stat().st_mtime_ns == fleet.wheel_built_ns, "the role built the wheel again"


@dataclass
class LastRun:
    """The run of the last two steps, and what kvm02 and kvm03 held before it."""

    run: Run
    kvm02_interfaces: bytes
    kvm03_interfaces: bytes
    kvm03_backups: list[str]


def backup_sets(host: Host) -> list[str]:
    folder = host.machine.root / "var/backups/kvmbridge"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.fixture(scope="module")
def blocked_and_cut_off(fleet: Fleet) -> LastRun:
    """One run for the last two steps: kvm03 has a blocking finding (a netplan file owning eth0), and kvm02
    gets a profile moving it to a subnet whose gateway nobody answers, installed with a 30 s guard.

    kvm03 must fail alone at the install while kvm01 and kvm02 go on; kvm02 then fails its status check
    (Ansible cannot reach it at the new address) until its guard reverts it.
    """
    kvm02, kvm03 = fleet.hosts["kvm02"], fleet.hosts["kvm03"]
    netplan = kvm03.machine.root / "etc/netplan/50-cloud-init.yaml"
    netplan.parent.mkdir(exist_ok=True)
    netplan.write_text("network:\n  version: 2\n  ethernets:\n    eth0:\n      dhcp4: true\n")
    profile = fleet.profile("kvm02")
    previous = profile.read_text()
    # KB101 (this SSH session would lose its address) is the finding this rollout forces past, on kvm02 alone
    # (inventory host_vars beat the inventory's group vars): kvm03's finding must still block.
    profile.write_text(profile_text("203.0.113.12", gateway="203.0.113.1"))
    (fleet.folder / "host_vars").mkdir(exist_ok=True)
    forced = fleet.folder / "host_vars/kvm02.yml"
    forced.write_text("host_confirm_within: 30s\nhost_force: true\n")
    before = LastRun(
        Run(-1, ""),
        (kvm02.machine.root / "etc/network/interfaces").read_bytes(),
        (kvm03.machine.root / "etc/network/interfaces").read_bytes(),
        backup_sets(kvm03),
    )
    try:
        before.run = fleet.playbook()
    finally:
        netplan.unlink()
        profile.write_text(previous)
        forced.unlink()
    return before


def test_a_blocking_finding_fails_that_host_alone(fleet: Fleet, blocked_and_cut_off: LastRun) -> None:
    run = blocked_and_cut_off.run
    assert run.rc == 2, run
    assert run.task("Install this host's profile for the next boot") == {
        "kvm01": "ok",
        "kvm02": "changed",
        "kvm03": "fatal",
    }, run
    assert re.search(r'fatal: \[kvm03\]: FAILED! => .*"msg": "error: KB102 eth0: netplan', run.output), run
    kvm03 = fleet.hosts["kvm03"]
    assert (kvm03.machine.root / "etc/network/interfaces").read_bytes() == blocked_and_cut_off.kvm03_interfaces
    assert backup_sets(kvm03) == blocked_and_cut_off.kvm03_backups, "kvm03 was written to"
    # The others finish: kvm01 every step; kvm02 goes on to its reboot (its guard's story is the next test).
    assert run.task("Check that each host runs as its profile says")["kvm01"] == "ok", run
    assert run.task("Disarm the boot guard") == {"kvm01": "ok"}, run
    recap = run.recap()
    assert recap["kvm03"]["failed"] == 1 and recap["kvm01"]["failed"] == 0, run
    assert "kvm03" not in run.task("Check that each host runs as its profile says"), run


def test_a_profile_that_cuts_a_host_off_is_reverted_by_its_guard(fleet: Fleet, blocked_and_cut_off: LastRun) -> None:
    """kvm02 moved to a subnet whose gateway nobody answers: no confirm reaches it; the guard restores it."""
    host = fleet.hosts["kvm02"]
    interfaces = host.machine.root / "etc/network/interfaces"
    run = blocked_and_cut_off.run
    assert run.rc == 2, run
    assert run.task("Install this host's profile for the next boot")["kvm02"] == "changed", run
    assert run.task("Reboot the hosts whose files changed")["kvm02"] == "changed", run
    assert run.task("Check that each host runs as its profile says")["kvm02"] == "fatal", run
    assert "kvm02" not in run.task("Disarm the boot guard"), run
    # Booted into the bad files, reverted by the guard, booted again into the old ones.
    assert host.exits == [REBOOT_EXIT] * 3, host.exits
    assert interfaces.read_bytes() == blocked_and_cut_off.kvm02_interfaces
    assert (host.machine.root / "var/lib/kvmbridge/guard-expired.json").exists()
    assert host.addresses("br0") == [f"{host.address}/24"]
    # Ansible reached it again at the old address: the reboot task ended there, and status looked.
    assert f"expected 203.0.113.12/24, found {host.address}/24" in run.output, run
    assert fleet.wheel().stat().st_mtime_ns == fleet.wheel_built_ns, "the role built the wheel again"
