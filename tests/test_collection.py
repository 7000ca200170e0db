"""The `kvmbridge.fleet` collection without hosts: README = playbook, it builds, its docs parse, ansible-lint passes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO

ANSIBLE = REPO / "ansible"
COLLECTION = ANSIBLE / "ansible_collections/kvmbridge/fleet"
MODULES = ("install", "status", "confirm")


def tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    if not path.exists():
        pytest.fail(f"{name} is a test dependency (pip install -e '.[test]')", pytrace=False)
    return str(path)


def env() -> dict[str, str]:
    return {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(ANSIBLE), "ANSIBLE_NOCOLOR": "1"}


def test_readme_prints_the_example_playbook_and_inventory_byte_for_byte() -> None:
    readme = (REPO / "README.md").read_text()
    assert f"```yaml\n{(ANSIBLE / 'example/site.yml').read_text()}```\n" in readme
    assert f"```ini\n{(ANSIBLE / 'example/inventory.ini').read_text()}```\n" in readme


def test_the_collection_builds_into_a_tarball_with_its_modules_and_role(tmp_path: Path) -> None:
    subprocess.run(
        [tool("ansible-galaxy"), "collection", "build", "--output-path", tmp_path, COLLECTION],
        check=True,
        capture_output=True,
    )
    (tarball,) = tmp_path.glob("kvmbridge-fleet-*.tar.gz")
    names = subprocess.run(["tar", "-tzf", tarball], check=True, capture_output=True, text=True).stdout.split()
    for module in MODULES:
        assert f"plugins/modules/{module}.py" in names
    assert "plugins/action/install.py" in names and "roles/host/tasks/main.yml" in names
    assert not [n for n in names if n.startswith("tests/output")]


def test_every_module_documents_its_options_and_returns() -> None:
    result = subprocess.run(
        [tool("ansible-doc"), "--json", *(f"kvmbridge.fleet.{m}" for m in MODULES)],
        env=env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    docs = json.loads(result.stdout)
    for module in MODULES:
        doc = docs[f"kvmbridge.fleet.{module}"]
        assert doc["examples"].strip() and doc["return"], module
        for name, option in doc["doc"]["options"].items():
            assert option.get("description") and option.get("type"), (module, name)
    assert set(docs["kvmbridge.fleet.install"]["doc"]["options"]) >= {
        "profile",
        "confirm_within",
        "auto_confirm",
        "force",
    }


def test_ansible_lint_passes_on_the_role_and_the_example_playbook() -> None:
    result = subprocess.run(
        [tool("ansible-lint"), "--offline", "-p", "example/site.yml", "ansible_collections/kvmbridge/fleet/roles/host"],
        cwd=ANSIBLE,
        env={**env(), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
