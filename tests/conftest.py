"""Shared fixtures: golden cases, CLI runner, and the rule that system tests fail under CI.

Tests that need real system tools call `require_tool` / `require_root`. On a
laptop a missing tool skips the test; with CI=true or
KVMBRIDGE_SYSTEM_TESTS=require it fails, because a green run that skipped
the real checks proves nothing.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from kvmbridge.cli import main

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "golden"
GOLDEN_CASES = sorted(p.stem for p in GOLDEN.glob("*.toml"))


def _renderer(case: str) -> str:
    import tomllib

    return str(tomllib.loads((GOLDEN / f"{case}.toml").read_text()).get("renderer", "ifupdown"))


RENDERER_CASES = {r: [c for c in GOLDEN_CASES if _renderer(c) == r] for r in ("ifupdown", "ifupdown2", "netplan")}
IFUPDOWN_CASES = RENDERER_CASES["ifupdown"]
SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])


def pytest_sessionstart(session: pytest.Session) -> None:
    """Sweep what killed test runs left (namespaces, mounts, scratch folders, cgroups): only what a
    record says belongs to a process that is gone, never another live run's (see tests/leftovers.py)."""
    if os.geteuid() != 0:
        return
    from .leftovers import sweep

    for line in sweep():
        sys.stderr.write(f"swept a dead test run's leftover: {line}\n")


def system_tests_required() -> bool:
    return os.environ.get("CI", "").lower() == "true" or os.environ.get("KVMBRIDGE_SYSTEM_TESTS") == "require"


def missing(reason: str) -> None:
    """Skip on a laptop; fail where the real checks are required."""
    if system_tests_required():
        pytest.fail(f"required system capability missing: {reason}", pytrace=False)
    pytest.skip(reason)


def require_tool(name: str) -> str:
    found = shutil.which(name, path=SBIN_PATH)
    if found is None:
        missing(f"{name} is not installed")
    assert found is not None
    return found


def require_file(path: Path) -> Path:
    if not path.exists():
        missing(f"{path} does not exist")
    return path


def require_root() -> None:
    if os.geteuid() != 0:
        missing("needs root")


def as_nobody(*args: str | Path, cwd: str | Path = "/") -> subprocess.CompletedProcess[str]:
    """Run the CLI as user nobody (needs root to drop to it): for permission and not-root tests."""
    command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m", "kvmbridge"]
    return subprocess.run([*command, *map(str, args)], capture_output=True, text=True, check=False, cwd=cwd)


def run(*args: str | Path) -> Result:
    """Run the CLI in-process; stderr kept apart so error lines can be checked exactly."""
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def tree(root: Path) -> dict[str, tuple[str, bytes | str]]:
    """A comparable picture of a tree: relative path → (kind, content or link text).

    Modes are left out: git does not keep 0600, so golden trees cannot carry them.
    """
    out: dict[str, tuple[str, bytes | str]] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            out[rel] = ("link", os.readlink(path))
        elif path.is_file():
            out[rel] = ("file", path.read_bytes())
    return out


def modes(root: Path) -> dict[str, int]:
    return {
        p.relative_to(root).as_posix(): p.stat().st_mode & 0o7777
        for p in root.rglob("*")
        if p.is_file() and not p.is_symlink()
    }


def write_profile(folder: Path, text: str, name: str = "host.toml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def override_template(folder: Path, name: str, text: str) -> Path:
    """A --templates folder holding one template that replaces the built-in of that name."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return folder


ARTICLE = (GOLDEN / "article.toml").read_text()


def _ctrl_c(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@pytest.fixture
def terminal_signals() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP as in a terminal, for tests that send them.

    kvmbridge keeps a signal ignored at start ignored (`nohup` must survive the hang-up), and a
    suite started in the background, under nohup or by pytest-xdist's workers inherits SIGINT
    and SIGHUP ignored: the tests would then prove nothing about Ctrl-C.
    """
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    signal.signal(signal.SIGINT, _ctrl_c)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
