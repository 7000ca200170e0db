"""Where the boot guard lives under a root: fixed paths, named once (confinement and the guard share them)."""

from __future__ import annotations

GUARD = "/var/lib/kvmbridge/guard.json"
EXPIRED = "/var/lib/kvmbridge/guard-expired.json"
UNIT_DIR = "/etc/systemd/system"
TIMER = f"{UNIT_DIR}/kvmbridge-guard.timer"
SERVICE = f"{UNIT_DIR}/kvmbridge-guard.service"
CHECK = f"{UNIT_DIR}/kvmbridge-guard-check.service"
TIMER_LINK = f"{UNIT_DIR}/timers.target.wants/kvmbridge-guard.timer"
CHECK_LINK = f"{UNIT_DIR}/multi-user.target.wants/kvmbridge-guard-check.service"
# Removal order for `confirm`: guard.json first, so an interrupted confirm leaves inert units
# (their ConditionPathExists= fails), never a live timer without its record.
GUARD_FILES = (GUARD, TIMER_LINK, CHECK_LINK, TIMER, SERVICE, CHECK)
UNIT_FILES = frozenset((TIMER, SERVICE, CHECK, TIMER_LINK, CHECK_LINK))
