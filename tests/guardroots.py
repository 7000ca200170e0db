"""Target roots that can carry a boot guard: systemd and a kvmbridge venv under /opt, owned by root."""

from __future__ import annotations

import os
from pathlib import Path

from .roots import seed_old_host

EXECUTABLE = "/opt/kvmbridge/bin/kvmbridge"


def guardable_root(root: Path) -> Path:
    """An old Debian host (see `seed_old_host`) plus what the guard needs: systemd and kvmbridge in a venv."""
    seed_old_host(root)
    files = {
        "usr/lib/systemd/systemd": b"\x7fELF systemd stand-in\n",
        "usr/bin/python3.11": b"\x7fELF python stand-in\n",
        "usr/lib/python3.11/os.py": b"",  # the landmark of the standard library Python looks for
        "opt/kvmbridge/pyvenv.cfg": b"home = /usr/bin\ninclude-system-site-packages = false\n",
        "opt/kvmbridge/lib/python3.11/site-packages/kvmbridge/__init__.py": b"",
        EXECUTABLE.lstrip("/"): b"#!/opt/kvmbridge/bin/python3\nfrom kvmbridge.cli import main\nmain()\n",
    }
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(0o755 if "bin/" in rel or rel.endswith("systemd") else 0o644)
    (root / "opt/kvmbridge/bin/python3").symlink_to("/usr/bin/python3.11")
    (root / "lib").symlink_to("usr/lib")
    (root / "etc/systemd/system").mkdir(parents=True)
    for folder in [root, *root.rglob("*")]:
        if folder.is_dir() and not folder.is_symlink():
            folder.chmod(0o755)
    os.chown(root, 0, 0)
    return root
