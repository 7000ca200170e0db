# Copyright (c) kvmbridge developers
# MIT License (see https://opensource.org/licenses/MIT)
"""Run the kvmbridge command on the managed host: its command line and --json are the contract."""

from __future__ import annotations

import json
import os
import shutil
import tempfile

DEFAULT_EXECUTABLE = "/opt/kvmbridge/bin/kvmbridge"

COMMON_OPTIONS = {
    "root": {"type": "path", "default": "/"},
    "executable": {"type": "path", "default": DEFAULT_EXECUTABLE},
}

PROFILE_OPTIONS = {
    "profile": {"type": "str", "required": True},
    "content": {"type": "str"},
}


def executable(module):
    """The kvmbridge command, or fail naming the path (the role puts it there)."""
    path = module.params["executable"]
    if not os.path.isfile(path) or not os.access(path, os.X_OK):
        module.fail_json(msg=f"{path}: kvmbridge is not installed there (the role kvmbridge.fleet.host installs it)")
    return path


def run_json(module, args, ok_codes, result=None):
    """Run `kvmbridge ARGS --json`: (rc, parsed stdout); any other exit fails with kvmbridge's own line.

    `result`: what the task returns when it fails here (the plan and findings gathered so far).
    """
    cmd = [executable(module), *args, "--json"]
    rc, out, err = module.run_command(cmd, environ_update={"LC_ALL": "C.UTF-8"})
    failed = dict(result or {}, rc=rc, stdout=out, stderr=err, cmd=cmd)
    if rc not in ok_codes:
        module.fail_json(msg=last_line(err) or f"kvmbridge {args[0]} exited {rc}", **failed)
    try:
        return rc, json.loads(out)
    except ValueError:
        module.fail_json(msg=f"kvmbridge {args[0]}: output is not JSON", **failed)
    return rc, None  # not reached: fail_json exits


def last_line(text):
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


class ProfileFile:
    """The profile text the action plugin sent, as a 0600 file under a private folder.

    The file keeps the controller's file name: a profile without `hostname`
    takes it from the name's stem.
    """

    def __init__(self, module):
        name = os.path.basename(module.params["profile"])
        content = module.params["content"]
        if content is None:
            module.fail_json(msg="content: missing; the action plugin sends it (profile: a controller path)")
        if not name or name.startswith("."):
            module.fail_json(msg=f"profile: {module.params['profile']}: not a file name")
        self.folder = tempfile.mkdtemp(prefix="kvmbridge-")
        self.path = os.path.join(self.folder, name)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(content)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        shutil.rmtree(self.folder, ignore_errors=True)
        return False
