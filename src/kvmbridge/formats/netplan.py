"""netplan YAML: parse it as netplan does (YAML 1.1, libyaml), check ours with `netplan generate`.

Plain YAML through PyYAML's safe loader: hosts' netplan files (cloud-init's,
an admin's) use anchors, flow and block style alike, so reading them takes
a real YAML parser; ours is one such file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from ..fileset import RenderedFile
from ..model import HostProfile
from ..verify import Verdict

NETPLAN_FILE = "/etc/netplan/60-kvmbridge.yaml"


def parse(data: bytes) -> dict[str, Any]:
    """The document as plain dicts, lists and scalars; an empty file is an empty dict."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    document = yaml.load(data, Loader=loader)  # a safe loader: C when built, else Python
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ValueError("a netplan file is a mapping")
    return document


def generate(files: Sequence[RenderedFile], profile: HostProfile, verdict: Verdict) -> None:
    """netplan's own generator reads our file alone and writes systemd-networkd units without a complaint."""
    import shutil
    import subprocess
    import tempfile

    netplan = shutil.which("netplan") or shutil.which("netplan", path="/usr/sbin:/sbin")
    if netplan is None:
        verdict.skipped.append("netplan not found (install netplan.io)")
        return
    with tempfile.TemporaryDirectory(prefix="kvmbridge-netplan-") as root:
        for f in files:
            assert f.data is not None
            dest = os.path.join(root, f.relpath)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(f.data)
        result = subprocess.run([netplan, "generate", "--root-dir", root], capture_output=True, text=True, check=False)
        complaints = [line for line in result.stderr.splitlines() if line.strip()]
        if result.returncode != 0 or complaints:
            for line in complaints or ["failed"]:
                verdict.errors.append(f"{files[0].relpath}: netplan generate: {line.replace(root, '')}")
            return
        units = os.path.join(root, "run/systemd/network")
        made = set(os.listdir(units)) if os.path.isdir(units) else set()
        missing = [name for name in profile.bridges if f"10-netplan-{name}.netdev" not in made]
        if missing:
            verdict.errors.append(f"{files[0].relpath}: netplan generate made no .netdev for {', '.join(missing)}")
            return
    verdict.checked.append("netplan (netplan generate)")
