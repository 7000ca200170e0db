"""The `kvmbridge.fleet` collection without hosts: README = playbook, it builds, its docs parse, ansible-lint passes."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from .conftest import GOLDEN, REPO
from .roots import seed_old_host, snapshot

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


def test_install_module_reports_what_install_json_did_on_a_local_root(tmp_path: Path) -> None:
    """The module without SSH: a local connection, temporary roots; its returns come from `install --json`."""
    good = seed_old_host(tmp_path / "good")
    untouched = seed_old_host(tmp_path / "check-mode")
    before = snapshot(untouched)
    blocked = seed_old_host(tmp_path / "blocked")
    (blocked / "etc/netplan").mkdir()
    (blocked / "etc/netplan/50-cloud-init.yaml").write_text("network:\n  ethernets:\n    eth0:\n      dhcp4: true\n")
    out = tmp_path / "results.json"
    install = {
        "profile": str(GOLDEN / "article.toml"),
        "root": "{{ item }}",
        "executable": str(Path(sys.executable).parent / "kvmbridge"),
    }
    playbook = [
        {
            "hosts": "localhost",
            "gather_facts": False,
            "tasks": [
                {
                    "name": "plan",
                    "kvmbridge.fleet.install": install,
                    "check_mode": True,
                    "diff": True,
                    "loop": [str(untouched)],
                    "register": "planned",
                },
                {
                    "name": "apply",
                    "kvmbridge.fleet.install": install,
                    "loop": [str(good), str(blocked)],
                    "register": "applied",
                    "ignore_errors": True,
                },
                {"name": "again", "kvmbridge.fleet.install": install, "loop": [str(good)], "register": "again"},
                {
                    "name": "keep",
                    "ansible.builtin.copy": {
                        "content": "{{ {'planned': planned.results, 'applied': applied.results, 'again': again.results} | to_json }}",
                        "dest": str(out),
                        "mode": "0600",
                    },
                },
            ],
        }
    ]
    (tmp_path / "site.yml").write_text(json.dumps(playbook))
    result = subprocess.run(
        [
            tool("ansible-playbook"),
            "-i",
            "localhost,",
            "-c",
            "local",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            str(tmp_path / "site.yml"),
        ],
        env={**env(), "HOME": str(tmp_path), "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp")},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    done = json.loads(out.read_text())
    (planned,) = done["planned"]
    assert planned["changed"] is True and planned["backup_id"] is None
    assert any(d["after_header"].endswith("/etc/network/interfaces") for d in planned["diff"])
    assert snapshot(untouched) == before  # check mode wrote nothing
    # the profile rules' warnings are findings too, passed on as Ansible warnings (the article's ip_forward = true)
    assert [f["id"] for f in planned["findings"]] == ["KB206"]
    assert "[WARNING]: warning: KB206 " in result.stdout + result.stderr

    first, refused = done["applied"]
    (backup_id,) = os.listdir(good / "var/backups/kvmbridge")
    assert first["changed"] is True and first["backup_id"] == backup_id
    assert first["rollback"] == f"kvmbridge rollback {backup_id} --root {good}"
    actions = {f["path"]: f["action"] for f in first["files"]}
    assert actions["/etc/network/interfaces"] == "update" and actions["/etc/udev/rules.d/99-bridge.rules"] == "create"
    assert first["guard"]["armed"] is False
    assert [f["id"] for f in first["findings"]] == ["KB206"]
    assert refused["failed"] is True and refused["msg"].startswith("error: KB102 eth0: netplan")
    assert [f["id"] for f in refused["findings"]] == ["KB206", "KB102"]
    assert refused["backup_id"] is None and not (blocked / "var/backups/kvmbridge").exists()

    (again,) = done["again"]
    assert again["changed"] is False and again["backup_id"] is None
    assert {f["action"] for f in again["files"]} == {"none"}


def _playbook(tmp_path: Path, tasks: list[dict[str, object]]) -> subprocess.CompletedProcess[str]:
    (tmp_path / "site.yml").write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}]))
    return subprocess.run(
        [
            tool("ansible-playbook"),
            "-i",
            "localhost,",
            "-c",
            "local",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            str(tmp_path / "site.yml"),
        ],
        env={**env(), "HOME": str(tmp_path), "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp")},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def test_install_module_check_mode_fails_where_install_would_and_takes_over_a_killed_run(tmp_path: Path) -> None:
    """ATTACK11b F4/F5: check mode is `install --dry-run --json`: a drifted root and a linked backups folder
    fail in check mode with install's own line (not changed=true); a root whose newest backup set a killed
    run left unfinished is work: check mode says changed, and the real task runs install, which finishes it."""
    drifted = seed_old_host(tmp_path / "drifted")
    killed = seed_old_host(tmp_path / "killed")
    linked = seed_old_host(tmp_path / "linked")
    for root in (drifted, killed):
        subprocess.run(
            [
                str(Path(sys.executable).parent / "kvmbridge"),
                "install",
                str(GOLDEN / "article.toml"),
                "--root",
                str(root),
            ],
            check=True,
            capture_output=True,
        )
    with (drifted / "etc/sysctl.d/ip_forward.conf").open("a") as handle:
        handle.write("# an admin's edit\n")
    (set_id,) = os.listdir(killed / "var/backups/kvmbridge")
    manifest = killed / "var/backups/kvmbridge" / set_id / "manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "finished": False}))
    (linked / "var/backups").mkdir(parents=True, exist_ok=True)
    (tmp_path / "elsewhere").mkdir()
    (linked / "var/backups/kvmbridge").symlink_to(tmp_path / "elsewhere")
    before = {root: snapshot(root) for root in (drifted, killed, linked)}
    out = tmp_path / "results.json"
    install = {
        "profile": str(GOLDEN / "article.toml"),
        "root": "{{ item }}",
        "executable": str(Path(sys.executable).parent / "kvmbridge"),
    }
    result = _playbook(
        tmp_path,
        [
            {
                "name": "plan",
                "kvmbridge.fleet.install": install,
                "check_mode": True,
                "loop": [str(drifted), str(linked), str(killed)],
                "register": "planned",
                "ignore_errors": True,
            },
            {"name": "apply", "kvmbridge.fleet.install": install, "loop": [str(killed)], "register": "applied"},
            {
                "name": "keep",
                "ansible.builtin.copy": {
                    "content": "{{ {'planned': planned.results, 'applied': applied.results} | to_json }}",
                    "dest": str(out),
                    "mode": "0600",
                },
            },
        ],
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    done = json.loads(out.read_text())
    drift, link, pending = done["planned"]
    assert drift["failed"] is True
    assert drift["msg"] == f"{drifted}/etc/sysctl.d/ip_forward.conf: changed since kvmbridge wrote it (drift)"
    assert link["failed"] is True and link["msg"].startswith(f"{linked}/var/backups/kvmbridge: is a symlink")
    assert pending.get("failed") is not True and pending["changed"] is True and pending["backup_id"] is None
    assert snapshot(drifted) == before[drifted] and snapshot(linked) == before[linked]
    (applied,) = done["applied"]
    assert applied["changed"] is True and applied["backup_id"] not in (None, set_id)
    assert sorted(os.listdir(killed / "var/backups/kvmbridge")) == sorted([set_id, applied["backup_id"]])


def _demo_wheel(folder: Path, value: int) -> Path:
    """demopkg 1.0 whose module says VALUE=value: two builds of one version share one file name."""
    files = {
        "demopkg.py": f"VALUE={value}\n".encode(),
        "demopkg-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: demopkg\nVersion: 1.0\n",
        "demopkg-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: x\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(
        f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}\n"
        for name, data in files.items()
    )
    files["demopkg-1.0.dist-info/RECORD"] = (record + "demopkg-1.0.dist-info/RECORD,,\n").encode()
    wheel = folder / "demopkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return wheel


def test_the_role_trusts_what_the_venv_holds_not_its_record(tmp_path: Path) -> None:
    """ATTACK11b F1: a run killed between "Copy the wheels" and pip left the new wheel beside the old install;
    pip's version check ("already satisfied") kept the old code and the role recorded the new digest. Now the
    skip rests on venv_holds_wheel.py (every RECORD file hashed where pip put it) and pip always reinstalls."""
    script = COLLECTION / "roles/host/files/venv_holds_wheel.py"
    wheels, site = tmp_path / "wheels", tmp_path / "site"
    wheels.mkdir()

    def holds(wheel: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-I",
                "-c",
                f"import sys; sys.path.insert(0, {str(site)!r}); "
                f"sys.argv = ['x', {str(wheel)!r}]; exec(open({str(script)!r}).read())",
            ],
            capture_output=True,
            text=True,
            check=False,
        )

    pip = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-index", "--no-deps"]
    assert holds(_demo_wheel(wheels, 1)).stdout == "demopkg: not installed\n"
    subprocess.run([*pip, "--target", str(site), str(wheels / "demopkg-1.0-py3-none-any.whl")], check=True)
    assert holds(wheels / "demopkg-1.0-py3-none-any.whl").returncode == 0
    rebuilt = _demo_wheel(wheels, 2)  # what the killed run copied
    stale = holds(rebuilt)
    assert (
        stale.returncode == 1
        and stale.stdout == "demopkg.py: the installed file differs from demopkg-1.0-py3-none-any.whl\n"
    )
    subprocess.run([*pip, "--target", str(site), "--upgrade", "--force-reinstall", str(rebuilt)], check=True)
    assert holds(rebuilt).returncode == 0
    (site / "demopkg.py").write_text("VALUE=3\n")  # an admin's edit, a restored /opt: the record would not know
    assert holds(rebuilt).returncode == 1
    (site / "demopkg.py").unlink()
    assert holds(rebuilt).stdout == "demopkg.py: missing from the installed demopkg\n"

    tasks = {t["name"]: t for t in yaml.safe_load((COLLECTION / "roles/host/tasks/main.yml").read_text())}
    names = list(tasks)
    pip_task = tasks["Install kvmbridge into the venv from the copied wheels only (no package index)"]
    assert "--force-reinstall" in pip_task["ansible.builtin.command"]["argv"]
    check = tasks["Check that the venv holds the recorded kvmbridge wheel"]
    assert check["ansible.builtin.script"]["executable"] == "{{ host_venv }}/bin/python"
    assert (
        "host_venv_check.rc"
        in tasks["Decide whether the venv needs the wheels again"]["ansible.builtin.set_fact"]["host_venv_current"]
    )
    assert names.index("Record which wheels the venv was installed from") == names.index(pip_task["name"]) + 1
