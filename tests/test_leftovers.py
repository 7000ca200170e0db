"""The session-start sweep removes what killed test runs left, and only that.

Other engineers run the labs on this machine at the same time: a namespace,
mount, folder or cgroup whose recorded owner still runs must survive the
sweep byte for byte, and so must one nobody recorded.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import require_root, require_tool
from .leftovers import Owner, claim, delete_namespace, me, mounts_under, remove_cgroup, sweep


def _dead_owner() -> Owner:
    process = subprocess.Popen(["sleep", "60"])
    owner = Owner.of(process.pid)
    process.kill()
    process.wait()
    assert owner is not None
    return owner


def _cgroup_root() -> Path:
    base = Path("/sys/fs/cgroup")
    if (base / "cgroup.controllers").exists():
        return base
    return next(p for p in (base / "unified", base / "systemd") if (p / "cgroup.procs").exists())


class _Leftovers:
    """One of each kind of lab resource, tagged, made for real."""

    def __init__(self, base: Path, label: str) -> None:
        tag = secrets.token_hex(3)
        self.netns = f"kbl-{tag}-{label}"
        self.folder = base / f"kvmbridge-kbl-{tag}-{label}"
        self.cgroup = _cgroup_root() / "kvmbridge-lab" / f"kbl-{tag}-{label}"
        self.process: subprocess.Popen[bytes] | None = None

    def claim(self, registry: Path, owner: Owner | None) -> None:
        if owner is not None:
            for kind, name in (("netns", self.netns), ("dir", str(self.folder)), ("cgroup", str(self.cgroup))):
                claim(kind, name, registry=registry, owner=owner)

    def make(self) -> None:
        subprocess.run(["ip", "netns", "add", self.netns], check=True)
        # A daemon left running in it, like a killed run's dnsmasq.
        self.process = subprocess.Popen(["ip", "netns", "exec", self.netns, "sleep", "600"])
        (self.folder / "root").mkdir(parents=True)
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(self.folder / "root")], check=True)
        (self.folder / "root/inside").write_text("data in the mount\n")
        self.cgroup.mkdir(parents=True)

    def present(self) -> bool:
        return (
            Path(f"/run/netns/{self.netns}").exists()
            and (self.folder / "root/inside").read_text() == "data in the mount\n"
            and mounts_under(self.folder) == [self.folder / "root"]
            and self.cgroup.is_dir()
            and self.process is not None
            and self.process.poll() is None
        )

    def gone(self) -> bool:
        return (
            not Path(f"/run/netns/{self.netns}").exists()
            and not self.folder.exists()
            and not mounts_under(self.folder)
            and not self.cgroup.exists()
            and self.process is not None
            and self.process.wait(10) is not None
        )

    def clean(self) -> None:
        delete_namespace(self.netns)
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
        for point in mounts_under(self.folder):
            subprocess.run(["umount", "-l", str(point)], check=False)
        shutil.rmtree(self.folder, ignore_errors=True)
        remove_cgroup(self.cgroup)


@pytest.fixture
def lab_base(tmp_path: Path) -> Iterator[Path]:
    require_root()
    require_tool("ip")
    yield tmp_path


def test_sweep_removes_a_dead_runs_leftovers_and_keeps_a_live_runs_and_unrecorded_ones(lab_base: Path) -> None:
    registry = lab_base / "owners"
    live_owner = me()
    reused = Owner(live_owner.pid, live_owner.start + 1, live_owner.boot)  # our pid, another process's start
    stale = {"dead": _Leftovers(lab_base, "dead"), "reused": _Leftovers(lab_base, "reused")}
    kept = {"live": _Leftovers(lab_base, "live"), "unrecorded": _Leftovers(lab_base, "norec")}
    owners = {"dead": _dead_owner(), "reused": reused, "live": live_owner, "unrecorded": None}
    everything = {**stale, **kept}
    try:
        for label, leftovers in everything.items():
            leftovers.claim(registry, owners[label])  # claimed before made, as the labs do
            leftovers.make()
        assert all(leftovers.present() for leftovers in everything.values())
        removed = sweep(registry)
        for label, leftovers in stale.items():
            assert leftovers.gone(), label
        for label, leftovers in kept.items():
            assert leftovers.present(), label
        assert sorted(removed) == sorted(
            f"{kind} {name}"
            for leftovers in stale.values()
            for kind, name in (
                ("netns", leftovers.netns),
                ("dir", str(leftovers.folder)),
                ("cgroup", str(leftovers.cgroup)),
            )
        )
        assert len(list(registry.glob("*.json"))) == 3  # the live run's records stay
        assert sweep(registry) == []  # nothing more to do, and still nothing of the live run's
        assert kept["live"].present()
    finally:
        for leftovers in everything.values():
            leftovers.clean()


def test_a_stale_folder_is_unmounted_before_it_is_removed(lab_base: Path) -> None:
    """A bind mount inside a dead run's folder: removing the folder must not empty the mount's source."""
    registry = lab_base / "owners"
    outside = lab_base / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep\n")
    folder = lab_base / f"kvmbridge-kbl-{secrets.token_hex(3)}-bind"
    claim("dir", str(folder), registry=registry, owner=_dead_owner())
    (folder / "root").mkdir(parents=True)
    subprocess.run(["mount", "--bind", str(outside), str(folder / "root")], check=True)
    try:
        assert sweep(registry) == [f"dir {folder}"]
        assert (outside / "precious").read_text() == "keep\n"
        assert not folder.exists()
    finally:
        for point in mounts_under(folder):
            subprocess.run(["umount", "-l", str(point)], check=False)
        shutil.rmtree(folder, ignore_errors=True)


def test_records_naming_anything_but_lab_resources_are_ignored(lab_base: Path) -> None:
    """A damaged or forged record never makes the sweep delete a namespace, cgroup or folder of another name."""
    registry = lab_base / "owners"
    victim = lab_base / "not-ours"
    victim.mkdir()
    dead = _dead_owner()
    claim("dir", str(victim), registry=registry, owner=dead)
    claim("netns", "default", registry=registry, owner=dead)
    claim("cgroup", "/sys/fs/cgroup/unified", registry=registry, owner=dead)
    (registry / "broken.json").write_text("{")
    assert sweep(registry) == []
    assert victim.is_dir()
    assert len(list(registry.glob("*.json"))) == 4  # kept: not ours to judge, nothing removed


def test_the_namespace_lab_claims_what_it_makes_and_releases_it_on_exit(lab_base: Path) -> None:
    from .leftovers import REGISTRY, _record
    from .netns import Lab

    with Lab() as lab:
        records = [_record(REGISTRY, "netns", ns) for ns in (lab.lan, lab.host, lab.vm)]
        records.append(_record(REGISTRY, "dir", str(lab.work)))
        assert all(r.is_file() for r in records)
        assert all(Owner(**json.loads(r.read_text())["owner"]) == me() for r in records)
    assert not any(r.exists() for r in records)
