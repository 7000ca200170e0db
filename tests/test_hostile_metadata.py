"""state.json and manifest.json are data, not orders: tampered ones are one clear line, nothing touched.

Reproducers from issue 9 (`"path": 5`, `host` as an object, a state value
`{}`, `..` in created_dirs, a state listing /etc/passwd) and a hypothesis
fuzzer over paths, types and links; a sentinel folder outside the root
stays byte-identical and no traceback appears, also in `backups`.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kvmbridge.confine import is_managed
from kvmbridge.profile import load_profile
from kvmbridge.render import render

from .conftest import GOLDEN, GOLDEN_CASES, run
from .roots import make_sentinel, no_traceback, seed_old_host, snapshot

PROFILE = GOLDEN / "article.toml"
STATE = "var/lib/kvmbridge/state.json"
EMPTY_SHA = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def installed_root(base: Path) -> Path:
    root = seed_old_host(base / "root")
    result = run("install", PROFILE, "--root", root)
    assert result.exit_code == 0, result.stderr
    return root


def manifest_file(root: Path) -> Path:
    return sorted((root / "var/backups/kvmbridge").iterdir())[-1] / "manifest.json"


def edit_manifest(root: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = manifest_file(root)
    body = json.loads(path.read_text())
    change(body)
    path.write_text(json.dumps(body))


def _set_entry(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(body: dict[str, Any]) -> None:
        body["files"][0][key] = value

    return change


def _set_top(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(body: dict[str, Any]) -> None:
        body[key] = value

    return change


MANIFEST_TAMPERING = {
    "path is a number": _set_entry("path", 5),
    "path outside": _set_entry("path", "/etc/passwd"),
    "path is the lock": _set_entry("path", "/var/lib/kvmbridge/lock"),
    "path is another own file": _set_entry("path", "/var/lib/kvmbridge/notes"),
    "path with dot-dot": _set_entry("path", "/etc/network/../../outside/passwd"),
    "relative path": _set_entry("path", "etc/network/interfaces"),
    "host is an object": _set_top("host", {"a": 1}),
    "files is a string": _set_top("files", "x"),
    "dot-dot in created_dirs": _set_top("created_dirs", ["/etc/udev/.."]),
    "root in created_dirs": _set_top("created_dirs", ["/"]),
    "foreign folder in created_dirs": _set_top("created_dirs", ["/home"]),
    "kind unknown": _set_entry("kind", "fifo"),
    "mode negative": _set_entry("mode", -1),
    "sha not hex": _set_entry("sha256_before", "zz"),
    "id of another set": _set_top("id", "../../../etc"),
    "time with escape": _set_top("time", "\x1b[2J"),
    "not json": lambda body: body.clear(),
}


@pytest.mark.parametrize("name", list(MANIFEST_TAMPERING))
def test_tampered_manifest_is_one_line_and_touches_nothing(tmp_path: Path, name: str) -> None:
    """Reproducers 6 and 7: tracebacks that broke `backups`; `..` in created_dirs applied, then exit 3."""
    outside = make_sentinel(tmp_path / "outside")
    root = installed_root(tmp_path)
    if name == "not json":
        manifest_file(root).write_bytes(b"\x00{not json")
    else:
        edit_manifest(root, MANIFEST_TAMPERING[name])
    before, before_outside = snapshot(root), snapshot(outside)
    for args in (["rollback"], ["rollback", "--force"], ["backups"]):
        result = run(*args, "--root", root)
        assert result.exit_code in (2, 3), (name, args, result.exit_code, result.stdout, result.stderr)
        assert "manifest.json" in result.stderr.splitlines()[0], (name, args, result.stderr)
        assert no_traceback(result.stdout, result.stderr)
        assert snapshot(root) == before, (name, args)
    assert snapshot(outside) == before_outside


STATE_TAMPERING: dict[str, Any] = {
    "files value is an object": {"files": {"/etc/network/interfaces": {}}},
    "files is a list": {"files": ["/etc/network/interfaces"]},
    "path outside": {"files": {"/etc/passwd": "0" * 64}},
    "path is the lock": {"files": {"/var/lib/kvmbridge/lock": EMPTY_SHA}},
    "path is the guard record": {"files": {"/var/lib/kvmbridge/guard.json": EMPTY_SHA}},
    "path is the state itself": {"files": {"/var/lib/kvmbridge/state.json": EMPTY_SHA}},
    "path is relative": {"files": {"etc/network/interfaces": "0" * 64}},
    "backup is a path": {"files": {}, "backup": "../../etc"},
    "no files": {"version": 1},
}


@pytest.mark.parametrize("name", list(STATE_TAMPERING))
def test_tampered_state_is_one_line_and_touches_nothing(tmp_path: Path, name: str) -> None:
    outside = make_sentinel(tmp_path / "outside")
    root = installed_root(tmp_path)
    (root / STATE).write_text(json.dumps(STATE_TAMPERING[name]))
    before, before_outside = snapshot(root), snapshot(outside)
    commands: list[list[str | Path]] = [
        ["install", GOLDEN / "filter-on.toml"],
        ["diff", PROFILE],
        ["install", PROFILE, "--dry-run"],
    ]
    for args in commands:
        result = run(*args, "--root", root)
        assert result.exit_code in (2, 3), (name, args, result.exit_code, result.stderr)
        assert "state.json" in result.stderr.splitlines()[0]
        assert no_traceback(result.stdout, result.stderr)
    assert snapshot(root) == before
    assert snapshot(outside) == before_outside


@pytest.mark.parametrize("kind", ["fifo", "folder", "huge"])
def test_state_that_is_not_a_small_regular_file_is_one_line_not_a_hang(tmp_path: Path, kind: str) -> None:
    root = installed_root(tmp_path)
    state = root / STATE
    state.unlink()
    if kind == "fifo":
        os.mkfifo(state)
    elif kind == "folder":
        state.mkdir()
    else:
        with state.open("wb") as handle:
            handle.truncate(50 << 30)
    result = run("diff", PROFILE, "--root", root)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"{state}: ") and result.stderr.count("\n") == 1


def test_every_rendered_destination_is_a_managed_path() -> None:
    """The confinement list must cover every file a profile can render, or rollback would refuse our own sets."""
    for case in GOLDEN_CASES:
        for f in render(load_profile(GOLDEN / f"{case}.toml")):
            assert is_managed(f.path), f.path


# -- fuzzing ---------------------------------------------------------------------------------------

PATHS = st.sampled_from(
    [
        "/etc/passwd",
        "/etc/network/interfaces",
        "/etc/udev/rules.d/99-bridge.rules",
        "/etc/libvirt/qemu/networks/x.xml",
        "/etc/libvirt/qemu/networks/../../../../outside/passwd",
        "/../outside/passwd",
        "/etc/link/passwd",
        "/var/lib/kvmbridge/state.json",
        "/var/backups/kvmbridge/x",
        "",
        "/",
        "/etc/network/interfaces\n",
    ]
) | st.text(max_size=30)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10) | PATHS,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)
SHA = st.sampled_from(["0" * 64, "f" * 64]) | st.none() | JSON


@st.composite
def manifests(draw: st.DrawFn) -> Any:
    entry = st.fixed_dictionaries(
        {
            "path": PATHS | JSON,
            "existed": st.booleans() | JSON,
            "kind": st.sampled_from(["missing", "file", "symlink", "other"]) | JSON,
            "sha256_before": SHA,
            "sha256_after": SHA,
            "mode": st.sampled_from([0o644, None, -1, 2**40]) | JSON,
            "link_before": st.sampled_from([None, "../../outside", "/outside"]) | JSON,
        }
    )
    body = {
        "id": draw(st.sampled_from(["ID", "../x", 5])),
        "time": "2026-01-01T00:00:00Z",
        "host": draw(st.none() | JSON),
        "profile": draw(st.none() | JSON),
        "action": draw(st.sampled_from(["install", "rollback", "x"])),
        "files": draw(st.lists(entry, max_size=3) | JSON),
        "created_dirs": draw(st.lists(PATHS, max_size=3) | JSON),
    }
    return draw(st.just(body) | JSON)


@st.composite
def states(draw: st.DrawFn) -> Any:
    body = {"version": 1, "files": draw(st.dictionaries(PATHS, SHA, max_size=3) | JSON), "backup": draw(JSON)}
    return draw(st.just(body) | JSON)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(manifest=manifests(), state=states(), link=st.booleans())
def test_fuzzed_state_and_manifest_never_touch_anything_outside_the_root(
    tmp_path_factory: pytest.TempPathFactory, manifest: Any, state: Any, link: bool
) -> None:
    base = tmp_path_factory.mktemp("fuzz")
    outside = make_sentinel(base / "outside")
    root = base / "root"
    shutil.copytree(_installed_template(tmp_path_factory), root, symlinks=True)
    if link:
        (root / "etc/link").symlink_to(outside)
    folder = sorted((root / "var/backups/kvmbridge").iterdir())[-1]
    body = dict(manifest, id=folder.name) if isinstance(manifest, dict) and manifest.get("id") == "ID" else manifest
    (folder / "manifest.json").write_text(json.dumps(body))
    (root / STATE).write_text(json.dumps(state))
    before = snapshot(outside)
    for args in (["rollback", "--force"], ["backups"], ["install", GOLDEN / "filter-on.toml", "--force"]):
        result = run(*args, "--root", root)
        assert result.exit_code in (0, 2, 3, 4), (args, result.stderr)
        assert no_traceback(result.stdout, result.stderr), result.stderr
        assert snapshot(outside) == before, args


_TEMPLATE: dict[str, Path] = {}


def _installed_template(factory: pytest.TempPathFactory) -> Path:
    if "root" not in _TEMPLATE:
        _TEMPLATE["root"] = installed_root(factory.mktemp("template"))
    return _TEMPLATE["root"]


@pytest.mark.parametrize("mode", [0o6755, 0o7777, 0o4644, 0o1777])
def test_a_forged_manifest_mode_never_restores_a_setuid_setgid_or_sticky_file(tmp_path: Path, mode: int) -> None:
    """kvmbridge's files never need those bits; restoring them as root would hand out a set-uid root binary."""
    root = installed_root(tmp_path)

    def forge(body: dict[str, Any]) -> None:
        for entry in body["files"]:
            if entry["path"] == "/etc/network/interfaces":
                entry.update(mode=mode, uid=None, gid=None)

    edit_manifest(root, forge)
    result = run("rollback", "--root", root)
    assert no_traceback(result.stdout, result.stderr)
    restored = root / "etc/network/interfaces"
    assert result.exit_code == 0, result.stderr
    assert restored.stat().st_mode & 0o7000 == 0, oct(restored.stat().st_mode)
    assert restored.stat().st_mode & 0o777 == mode & 0o777
