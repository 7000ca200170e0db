# Copyright (c) kvmbridge developers
# MIT License (see https://opensource.org/licenses/MIT)
"""Build kvmbridge's wheel from a checkout, unless the wheel of exactly these sources is already there.

Usage: python build_wheel.py SOURCE WHEEL_DIR WHEEL_NAME
Prints `built` or `cached`. The fingerprint covers every file that goes into
the wheel (pyproject.toml, README.md, src/, templates/), so a changed checkout
always rebuilds, and a playbook run again over a fleet does not.

python build_wheel.py --digest WHEEL_DIR prints one sha256 of every wheel
there (names and bytes): the role records it in the host's venv after a
successful install, and copies and installs again only when it differs.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

INPUTS = ("pyproject.toml", "README.md", "src", "templates")
SKIPPED = ("__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache")


def fingerprint(source):
    digest = hashlib.sha256()
    for top in INPUTS:
        path = os.path.join(source, top)
        if os.path.isdir(path):
            found = []
            for folder, subfolders, files in os.walk(path):
                subfolders[:] = sorted(d for d in subfolders if d not in SKIPPED and not d.endswith(".egg-info"))
                found.extend(os.path.join(folder, name) for name in files if not name.endswith(".pyc"))
        else:
            found = [path]
        for name in sorted(found):
            digest.update(os.path.relpath(name, source).encode("utf-8", "surrogateescape") + b"\0")
            with open(name, "rb") as stream:
                digest.update(hashlib.sha256(stream.read()).digest())
    return digest.hexdigest()


def wheels_digest(wheel_dir):
    digest = hashlib.sha256()
    for name in sorted(os.listdir(wheel_dir)):
        if name.endswith(".whl"):
            with open(os.path.join(wheel_dir, name), "rb") as stream:
                digest.update(name.encode("utf-8", "surrogateescape") + b"\0" + hashlib.sha256(stream.read()).digest())
    return digest.hexdigest()


def main(source, wheel_dir, wheel_name):
    stamp = os.path.join(wheel_dir, wheel_name + ".source-sha256")
    wanted = fingerprint(source)
    try:
        with open(stamp, encoding="ascii") as stream:
            built_from = stream.read().strip()
    except OSError:
        built_from = None
    if built_from == wanted and os.path.isfile(os.path.join(wheel_dir, wheel_name)):
        print("cached")
        return 0
    os.makedirs(wheel_dir, exist_ok=True)
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", wheel_dir, source]
    result = subprocess.run(command, check=False)
    if result.returncode != 0:
        return result.returncode
    with open(stamp + ".tmp", "w", encoding="ascii") as stream:
        stream.write(wanted + "\n")
    os.replace(stamp + ".tmp", stamp)
    print("built")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--digest"]:
        print(wheels_digest(sys.argv[2]))
        sys.exit(0)
    sys.exit(main(*sys.argv[1:4]))
