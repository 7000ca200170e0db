"""The wheel carries the templates: install it into a fresh venv and render from elsewhere."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

from .conftest import GOLDEN, REPO, tree


def test_wheel_installed_in_fresh_venv_renders_from_another_directory(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(REPO)], check=True, capture_output=True
    )
    wheel = next(dist.glob("kvmbridge-*.whl"))
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    assert "kvmbridge/templates/etc/network/interfaces.j2" in names
    assert "kvmbridge/templates/etc/libvirt/qemu/networks/network.xml.j2" in names

    env = tmp_path / "venv"
    venv.create(env, with_pip=True)
    subprocess.run([str(env / "bin/pip"), "install", "--quiet", str(wheel)], check=True, capture_output=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    profile = elsewhere / "article.toml"
    profile.write_bytes((GOLDEN / "article.toml").read_bytes())
    subprocess.run([str(env / "bin/kvmbridge"), "render", "article.toml", "-o", "out"], cwd=elsewhere, check=True)
    assert tree(elsewhere / "out") == tree(GOLDEN / "article")
