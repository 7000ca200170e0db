"""Compiled templates are code: a cache is loaded only from a private folder of the current user.

Reproducer 2 of issue 9: root rendering with a user's HOME (`sudo -E`)
unpickled whatever that user left in ~/.cache/kvmbridge/jinja, while the
user swapped folders under the check. Here a planted payload (a pickle
that creates a file when loaded) must never run, whatever folder, link or
ownership trick surrounds it.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading
from pathlib import Path

import jinja2
import pytest
from jinja2.bccache import Bucket, bc_magic

from kvmbridge.bytecode_cache import OwnedBytecodeCache

from .conftest import GOLDEN, REPO, require_root

ARTICLE = GOLDEN / "article.toml"
ATTACKER = 1234


class _Payload:
    """Unpickling this creates `path`: proof that cached code ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (subprocess.call, ("touch " + str(self.path), True))  # type: ignore[return-value]


def payload_bytes(proof: Path) -> bytes:
    return bc_magic + pickle.dumps(_Payload(proof))


def render_with(env_extra: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in ("HOME", "XDG_CACHE_HOME")}
    env |= {"PYTHONPATH": str(REPO / "src"), **env_extra}
    return subprocess.run(
        [sys.executable, "-m", "kvmbridge", "render", str(ARTICLE)], capture_output=True, env=env, check=False
    )


@pytest.fixture(scope="module")
def cache_names(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The entry names a render uses, from a render into a private cache of our own."""
    base = tmp_path_factory.mktemp("own")
    base.chmod(0o700)
    assert render_with({"XDG_CACHE_HOME": str(base)}).returncode == 0
    names = sorted(p.name for p in (base / "kvmbridge/jinja").iterdir())
    assert names, "a private cache of our own is used"
    return names


def plant(folder: Path, names: list[str], proof: Path, owner: int) -> None:
    """Payload entries under every name a render looks up, owned by `owner`."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(payload_bytes(proof))
        (folder / name).chmod(0o600)
        os.chown(folder / name, owner, owner)


@pytest.mark.parametrize("via", ["HOME", "XDG_CACHE_HOME"])
def test_root_never_loads_a_cache_from_another_users_home(tmp_path: Path, cache_names: list[str], via: str) -> None:
    require_root()
    tmp_path.chmod(0o755)
    home = tmp_path / "home"
    proof = tmp_path / "proof"
    cache = home / ".cache"
    plant(cache / "kvmbridge/jinja", cache_names, proof, ATTACKER)
    for path in [home, cache, cache / "kvmbridge", cache / "kvmbridge/jinja"]:
        os.chown(path, ATTACKER, ATTACKER)
        path.chmod(0o700)
    env = {"HOME": str(home)} if via == "HOME" else {"XDG_CACHE_HOME": str(cache)}
    result = render_with(env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(b"==> etc/network/interfaces <==")
    assert not proof.exists()


def test_a_cache_folder_that_is_a_link_or_shared_is_not_used(tmp_path: Path, cache_names: list[str]) -> None:
    require_root()
    proof = tmp_path / "proof"
    private = tmp_path / "private"
    plant(private / "kvmbridge/jinja", cache_names, proof, 0)
    for path in [private, private / "kvmbridge", private / "kvmbridge/jinja"]:
        path.chmod(0o700)
    (tmp_path / "linked").symlink_to(private)
    assert render_with({"XDG_CACHE_HOME": str(tmp_path / "linked")}).returncode == 0
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    plant(shared / "kvmbridge/jinja", cache_names, proof, 0)
    assert render_with({"XDG_CACHE_HOME": str(shared)}).returncode == 0
    assert not proof.exists()


def test_swapping_the_cache_link_during_renders_never_runs_the_payload(tmp_path: Path, cache_names: list[str]) -> None:
    """The race of the issue: ~/.cache swapped between a root-owned folder (passes a check) and the user's own."""
    require_root()
    tmp_path.chmod(0o755)
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    proof = tmp_path / "proof"
    evil, decoy = tmp_path / "evil", tmp_path / "decoy"
    plant(evil / "kvmbridge/jinja", cache_names, proof, ATTACKER)
    for path in [evil, evil / "kvmbridge", evil / "kvmbridge/jinja"]:
        path.chmod(0o700)
        os.chown(path, ATTACKER, ATTACKER)
    (decoy / "kvmbridge/jinja").mkdir(parents=True, mode=0o700)
    decoy.chmod(0o700)
    os.chown(home, ATTACKER, ATTACKER)
    (home / ".cache").symlink_to(decoy)
    stop = threading.Event()

    def swap() -> None:
        while not stop.is_set():
            for target in (evil, decoy):
                tmp = home / ".swap"
                tmp.unlink(missing_ok=True)
                tmp.symlink_to(target)
                os.rename(tmp, home / ".cache")

    swapper = threading.Thread(target=swap)
    swapper.start()
    try:
        for _ in range(8):  # the old check lost this race in 19 of 50 runs
            assert render_with({"HOME": str(home)}).returncode == 0
    finally:
        stop.set()
        swapper.join()
    assert not proof.exists()


def _bucket() -> Bucket:
    env = jinja2.Environment()
    return Bucket(env, "k", "checksum")


@pytest.mark.parametrize("trick", ["symlink", "group-writable", "other owner", "hard link"])
def test_an_entry_that_is_not_our_own_private_file_is_ignored(tmp_path: Path, trick: str) -> None:
    if trick in ("other owner",):
        require_root()
    folder = tmp_path / "cache"
    folder.mkdir(mode=0o700)
    proof = tmp_path / "proof"
    entry = folder / "__jinja2_k.cache"
    source = tmp_path / "elsewhere"
    source.write_bytes(payload_bytes(proof))
    source.chmod(0o600)
    if trick == "symlink":
        entry.symlink_to(source)
    elif trick == "hard link":
        os.link(source, entry)
    else:
        entry.write_bytes(payload_bytes(proof))
        entry.chmod(0o660 if trick == "group-writable" else 0o600)
        if trick == "other owner":
            os.chown(entry, ATTACKER, ATTACKER)
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        bucket = _bucket()
        OwnedBytecodeCache(fd).load_bytecode(bucket)
        assert bucket.code is None
    finally:
        os.close(fd)
    assert not proof.exists()
