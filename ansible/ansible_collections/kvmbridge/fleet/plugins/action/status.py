# Copyright (c) kvmbridge developers
# MIT License (see https://opensource.org/licenses/MIT)
"""`status` takes its profile from the controller too: the same action as `install`."""

from __future__ import annotations

from ansible_collections.kvmbridge.fleet.plugins.action.install import ActionModule as ProfileAction


class ActionModule(ProfileAction):
    """Read `profile` on the controller and send its text to kvmbridge.fleet.status."""
