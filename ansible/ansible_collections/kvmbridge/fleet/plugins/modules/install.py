#!/usr/bin/python
# Copyright (c) kvmbridge developers
# MIT License (see https://opensource.org/licenses/MIT)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: install
short_description: Install a kvmbridge profile on a KVM host for the next boot
version_added: "0.1.0"
description:
  - Renders the bridge-mode configuration of a kvmbridge host profile (C(/etc/network/interfaces), sysctl.d files,
    the udev rule, libvirt network XML) on the managed host and installs it with C(kvmbridge install) for activation
    at the next boot, with backups, atomic writes and, optionally, a boot guard.
  - The profile is a file on the controller; the action plugin reads it and sends its text.
  - Runs C(kvmbridge install --dry-run --json) first, with the same options as the install; it refuses exactly
    where the install would (drift, a blocked target, an armed guard, a lock held, linked backup folders), and
    the host fails with the refusal's first line. Nothing to change (and no backup set left unfinished by a killed
    run) means no install at all, so a second run reports C(changed=false) and arms no guard. Otherwise runs
    C(kvmbridge install --json) and returns what it reports.
  - Findings of severity C(warning) (the profile rules' KB2xx and the safety checks' KB1xx) become Ansible
    warnings; the first C(error) finding fails the host (C(msg) is that finding's line) unless O(force=true).
  - In check mode nothing is written; C(changed) says whether an install would change a file (or finish a
    killed run's backup set); a run the install would refuse fails in check mode too.
  - In diff mode each file that would change is returned before/after, as M(ansible.builtin.template) does.
author:
  - kvmbridge developers (@kvmbridge)
extends_documentation_fragment:
  - kvmbridge.fleet.kvmbridge
  - kvmbridge.fleet.kvmbridge.profile
options:
  confirm_within:
    description:
      - Arm a boot guard (C(--confirm-within)), for example C(45s), C(10m), C(1h) (30 seconds to 24 hours).
      - Unless M(kvmbridge.fleet.confirm) runs within this time of the next boot, the host restores the backup
        of this install and reboots into its old configuration.
      - Armed only when files change; while a guard is armed, another install that would change files fails.
    type: str
  auto_confirm:
    description:
      - With O(confirm_within), the host confirms by itself once C(kvmbridge status) passes and the gateway
        answers after the boot (C(--auto-confirm)).
    type: bool
    default: false
  force:
    description:
      - Install despite blocking safety findings and files changed since kvmbridge wrote them (C(--force)).
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Runs the plan (C(kvmbridge install --dry-run)); nothing is written.
  diff_mode:
    support: full
    description: Returns each file that would change, before and after.
seealso:
  - module: kvmbridge.fleet.status
  - module: kvmbridge.fleet.confirm
"""

EXAMPLES = r"""
- name: Install this host's profile, guarded for 10 minutes after the next boot
  kvmbridge.fleet.install:
    profile: "profiles/{{ inventory_hostname }}.toml"
    confirm_within: 10m
    auto_confirm: true
  register: kvmbridge_install

- name: Only show what would change (run with --check --diff)
  kvmbridge.fleet.install:
    profile: profiles/kvm01.toml
  check_mode: true
"""

RETURN = r"""
backup_id:
  description: The backup set of this install (C(kvmbridge rollback ID) undoes it); null when nothing was written.
  returned: always
  type: str
  sample: 20261128T170733.726165Z
files:
  description: Every file the profile renders, with what the install does to it.
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: Absolute path on the target.
      type: str
      sample: /etc/network/interfaces
    status:
      description: create, update, drift, remove, unchanged or equivalent.
      type: str
      sample: update
    action:
      description: What the install did (in check mode, would do) to the file - create, update, remove or none.
      type: str
      sample: update
    blocked:
      description: Why the file cannot be written, or null.
      type: str
    summary:
      description: What the change means, one line each.
      type: list
      elements: str
      sample: ["etc/network/interfaces: eth0 inet method static -> manual"]
findings:
  description: >-
    The profile rules' warnings (KB2xx), then the safety findings against the target
    (C(kvmbridge install --dry-run --json)).
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: Stable finding ID.
      type: str
      sample: KB102
    severity:
      description: error (blocks the install) or warning.
      type: str
    subject:
      description: The file or interface concerned (for a profile rule, the profile file and key).
      type: str
    message:
      description: What is wrong.
      type: str
    fix:
      description: How to fix it.
      type: str
    line:
      description: The one-line form kvmbridge prints.
      type: str
guard:
  description: Whether a boot guard was armed by this install, its duration and the executable its units run.
  returned: always
  type: dict
  sample: {"armed": true, "confirm_within": "10m", "auto_confirm": true, "executable": "/opt/kvmbridge/bin/kvmbridge"}
rollback:
  description: The command that undoes this install on the host, or null when nothing was written.
  returned: always
  type: str
  sample: kvmbridge rollback 20261128T170733.726165Z
activate:
  description: The commands that would apply the changed files now (never run; the next boot does).
  returned: always
  type: list
  elements: str
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.kvmbridge.fleet.plugins.module_utils.kvmbridge import (
    COMMON_OPTIONS,
    PROFILE_OPTIONS,
    ProfileFile,
    executable,
    last_line,
    run_json,
)


def finding_line(finding):
    return "{severity}: {id} {subject}: {message} (fix: {fix})".format(**finding)


def read_side(path):
    """A file's text for the diff; a link as its target, as `kvmbridge diff` shows it."""
    if os.path.islink(path):
        return f"symlink -> {os.readlink(path)}\n"
    if not os.path.isfile(path):
        return ""
    with open(path, "rb") as stream:
        return stream.read().decode("utf-8", errors="replace")


def file_diffs(module, profile, root, changes):
    """Before/after of each file that would be written, from the target and from `kvmbridge render -o`."""
    rendered = os.path.join(profile.folder, "rendered")
    cmd = [executable(module), "render", profile.path, "-o", rendered]
    rc, _out, err = module.run_command(cmd, environ_update={"LC_ALL": "C.UTF-8"})
    if rc != 0:
        module.fail_json(msg=last_line(err) or f"kvmbridge render exited {rc}", rc=rc, stderr=err, cmd=cmd)
    diffs = []
    for change in changes:
        rel = change["path"].lstrip("/")
        before_path = os.path.join(root, rel)
        diffs.append(
            {
                "before_header": before_path if change["status"] != "create" else f"{before_path} (absent)",
                "after_header": before_path if change["status"] != "remove" else f"{before_path} (removed)",
                "before": read_side(before_path),
                "after": "" if change["status"] == "remove" else read_side(os.path.join(rendered, rel)),
            }
        )
    return diffs


def file_entry(change):
    return {k: change.get(k) for k in ("path", "status", "action", "blocked", "summary")}


def install_args(params, path, dry_run=False):
    args = ["install", path, "--root", params["root"]]
    if dry_run:
        args.append("--dry-run")
    if params["force"]:
        args.append("--force")
    if params["confirm_within"]:
        args += ["--confirm-within", params["confirm_within"]]
        if params["auto_confirm"]:
            args.append("--auto-confirm")
    return args


def main():
    module = AnsibleModule(
        argument_spec={
            **PROFILE_OPTIONS,
            "confirm_within": {"type": "str"},
            "auto_confirm": {"type": "bool", "default": False},
            "force": {"type": "bool", "default": False},
            **COMMON_OPTIONS,
        },
        supports_check_mode=True,
    )
    params = module.params
    if params["auto_confirm"] and not params["confirm_within"]:
        module.fail_json(msg="auto_confirm: needs confirm_within (the guard it would confirm)")
    with ProfileFile(module) as profile:
        # The dry run takes the install's own options and decision: check mode fails where install would.
        _rc, plan = run_json(module, install_args(params, profile.path, dry_run=True), ok_codes=(0, 3))
        changes = plan.get("files", [])
        findings = [{**f, "line": finding_line(f)} for f in plan.get("findings", [])]
        result = {
            "changed": False,
            "backup_id": None,
            "files": [file_entry(c) for c in changes],
            "findings": findings,
            "guard": {
                "armed": False,
                "confirm_within": params["confirm_within"],
                "auto_confirm": params["auto_confirm"],
                "executable": None,
            },
            "rollback": None,
            "activate": [],
        }
        for finding in findings:
            if finding["severity"] == "warning":
                module.warn(finding["line"])
        errors = [f for f in findings if f["severity"] == "error"]
        if errors and not params["force"]:
            module.fail_json(msg=errors[0]["line"], **result)
        refused = plan.get("refused") or []
        if refused:
            module.fail_json(msg=refused[0], **result)
        pending = [c for c in changes if c.get("action", "none") != "none"]
        if module._diff and pending:
            result["diff"] = file_diffs(module, profile, params["root"], pending)
        # A killed run's unfinished set is work too: install takes it over (new set, state, rollback chain).
        work = bool(pending) or bool(plan.get("unfinished"))
        if not work or module.check_mode:
            result["changed"] = work
            module.exit_json(**result)
        _rc, done = run_json(module, install_args(params, profile.path), ok_codes=(0,), result=result)
        guard = done.get("guard") or {}
        result.update(
            changed=bool(done.get("changed")),
            backup_id=done.get("backup_id"),
            files=[file_entry(c) for c in done.get("files", [])],
            rollback=done.get("rollback"),
            activate=done.get("activate", []),
        )
        result["guard"].update(armed=bool(guard.get("armed")), executable=guard.get("executable"))
        module.exit_json(**result)


if __name__ == "__main__":
    main()
