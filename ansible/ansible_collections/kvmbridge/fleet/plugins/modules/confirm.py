#!/usr/bin/python
# Copyright (c) kvmbridge developers
# MIT License (see https://opensource.org/licenses/MIT)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: confirm
short_description: Disarm the kvmbridge boot guard of the last install
version_added: "0.1.0"
description:
  - Runs C(kvmbridge confirm --json) on the managed host; the guarded backup set stays.
  - C(changed) only when a guard was armed. In check mode it reports whether one is armed and changes nothing.
author:
  - kvmbridge developers (@kvmbridge)
extends_documentation_fragment:
  - kvmbridge.fleet.kvmbridge
attributes:
  check_mode:
    support: full
    description: Reports whether a guard is armed; disarms nothing.
  diff_mode:
    support: none
    description: Not supported.
seealso:
  - module: kvmbridge.fleet.install
  - module: kvmbridge.fleet.status
"""

EXAMPLES = r"""
- name: The host is as profiled after the reboot; keep this configuration
  kvmbridge.fleet.confirm:
"""

RETURN = r"""
was_armed:
  description: Whether a boot guard was armed (and, outside check mode, is now disarmed).
  returned: always
  type: bool
backup:
  description: The backup set the guard would have restored, or null.
  returned: always
  type: str
removed:
  description: The guard files removed.
  returned: always
  type: list
  elements: str
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.kvmbridge.fleet.plugins.module_utils.kvmbridge import COMMON_OPTIONS, run_json

GUARD_RECORD = "var/lib/kvmbridge/guard.json"


def main():
    module = AnsibleModule(argument_spec=dict(COMMON_OPTIONS), supports_check_mode=True)
    root = module.params["root"]
    if module.check_mode:
        armed = os.path.lexists(os.path.join(root, GUARD_RECORD))
        module.exit_json(changed=armed, was_armed=armed, backup=None, removed=[])
    _rc, done = run_json(module, ["confirm", "--root", root], ok_codes=(0,))
    if done.get("warning"):
        module.warn(done["warning"])
    module.exit_json(
        changed=bool(done.get("was_armed")),
        was_armed=bool(done.get("was_armed")),
        backup=done.get("backup"),
        removed=done.get("removed", []),
    )


if __name__ == "__main__":
    main()
