#!/usr/bin/python
# Copyright (c) kvmbridge developers
# MIT License (see https://opensource.org/licenses/MIT)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: status
short_description: Compare a running KVM host with its kvmbridge profile
version_added: "0.1.0"
description:
  - Runs C(kvmbridge status PROFILE --json) on the managed host. It checks each bridge (up, exactly the profile's
    ports, STP, timers, MTU and MAC as written), addresses and the default route, sysctl values, libvirt networks,
    the installed files against the render, and the boot guard.
  - Fails when the host is not as profiled, with the first mismatch as C(msg), unless O(only_report=true).
  - Reads only; never changes anything, so it runs in check mode too.
author:
  - kvmbridge developers (@kvmbridge)
extends_documentation_fragment:
  - kvmbridge.fleet.kvmbridge
  - kvmbridge.fleet.kvmbridge.profile
options:
  only_report:
    description:
      - Return the mismatches without failing.
    type: bool
    default: false
  root:
    description:
      - Where the installed files and the boot guard are read (C(--root)); the network checked is always the host's.
    type: path
    default: /
attributes:
  check_mode:
    support: full
    description: Reads only; the same in check mode.
  diff_mode:
    support: none
    description: Nothing is changed, so there is nothing to diff.
seealso:
  - module: kvmbridge.fleet.install
  - module: kvmbridge.fleet.confirm
"""

EXAMPLES = r"""
- name: The host came up as its profile says
  kvmbridge.fleet.status:
    profile: "profiles/{{ inventory_hostname }}.toml"

- name: Collect the differences of every host without failing
  kvmbridge.fleet.status:
    profile: "profiles/{{ inventory_hostname }}.toml"
    only_report: true
  register: kvmbridge_status
"""

RETURN = r"""
as_profiled:
  description: True when the running host matches the profile and no guard record is damaged.
  returned: always
  type: bool
mismatches:
  description: Each way the running host differs from the profile.
  returned: always
  type: list
  elements: dict
  contains:
    subject:
      description: A bridge, key, network or file.
      type: str
    check:
      description: What was compared.
      type: str
    expected:
      description: What the profile says.
      type: str
    found:
      description: What the host has.
      type: str
    line:
      description: The one-line form kvmbridge prints.
      type: str
  sample: [{"subject": "br0", "check": "address", "expected": "198.51.100.12/24", "found": "none", "line": "..."}]
guard:
  description: The boot guard of the last install (C(armed) false when none).
  returned: always
  type: dict
guard_expired:
  description: What the boot guard did when it last fired, or null.
  returned: always
  type: dict
notes:
  description: What was not checked and why.
  returned: always
  type: list
  elements: str
checked:
  description: How many items of each kind were compared.
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.kvmbridge.fleet.plugins.module_utils.kvmbridge import (
    COMMON_OPTIONS,
    PROFILE_OPTIONS,
    ProfileFile,
    run_json,
)


def main():
    module = AnsibleModule(
        argument_spec={**PROFILE_OPTIONS, "only_report": {"type": "bool", "default": False}, **COMMON_OPTIONS},
        supports_check_mode=True,
    )
    with ProfileFile(module) as profile:
        rc, report = run_json(module, ["status", profile.path, "--root", module.params["root"]], ok_codes=(0, 1))
    result = {
        "changed": False,
        "as_profiled": rc == 0,
        "mismatches": report.get("mismatches", []),
        "guard": report.get("guard") or {},
        "guard_expired": report.get("guard_expired"),
        "notes": report.get("notes", []),
        "checked": report.get("checked", {}),
    }
    if rc != 0 and not module.params["only_report"]:
        first = result["mismatches"][0]["line"] if result["mismatches"] else "the boot guard record is unusable"
        count = len(result["mismatches"])
        module.fail_json(msg=f"not as profiled ({count} difference(s)): {first}", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
