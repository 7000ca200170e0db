# Copyright (c) kvmbridge developers
# MIT License (see https://opensource.org/licenses/MIT)
"""Read `profile` on the controller and send its text to the module on the managed host."""

from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = dict(self._task.args)
        profile = args.get("profile")
        if not profile:
            raise AnsibleActionFail("profile: required (a TOML profile on the controller)")
        try:
            path = self._find_needle("files", profile)
            with open(path, "rb") as stream:
                args["content"] = to_text(stream.read(), errors="surrogate_or_strict")
        except (OSError, UnicodeError) as exc:
            raise AnsibleActionFail(f"{profile}: cannot read the profile: {exc}") from exc
        except Exception as exc:  # _find_needle raises AnsibleError subclasses for a missing file
            raise AnsibleActionFail(f"{profile}: {exc}") from exc
        module = self._task.action.rsplit(".", 1)[-1]
        result.update(
            self._execute_module(module_name=f"kvmbridge.fleet.{module}", module_args=args, task_vars=task_vars)
        )
        return result
