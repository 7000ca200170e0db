# Copyright (c) kvmbridge developers
# MIT License (see https://opensource.org/licenses/MIT)
"""Options every kvmbridge.fleet module shares, documented once."""

from __future__ import annotations


class ModuleDocFragment:
    # root and executable: every module runs the kvmbridge command on the managed host (module_utils COMMON_OPTIONS).
    DOCUMENTATION = r"""
options:
  root:
    description:
      - The target root on the managed host (C(--root)); a staging tree or a mounted image instead of C(/).
    type: path
    default: /
  executable:
    description:
      - The kvmbridge command on the managed host (the role M(kvmbridge.fleet.host) installs it there).
    type: path
    default: /opt/kvmbridge/bin/kvmbridge
notes:
  - Needs C(kvmbridge) on the managed host (see the role C(kvmbridge.fleet.host)) and root (C(become)).
"""

    # profile and content: the modules whose action plugin reads a profile on the controller (PROFILE_OPTIONS).
    PROFILE = r"""
options:
  profile:
    description:
      - Path of the TOML host profile on the controller (relative paths are searched like M(ansible.builtin.copy)'s
        C(src)); the action plugin reads it and sends its text.
      - Its file name is kept on the host, so a profile without C(hostname) takes the name's stem.
    type: str
    required: true
  content:
    description:
      - The profile's text. Set by the action plugin from O(profile); do not set it by hand.
    type: str
attributes:
  action:
    support: full
    description: An action plugin reads O(profile) on the controller.
"""
