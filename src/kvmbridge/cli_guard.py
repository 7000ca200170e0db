"""The commands after the reboot and of the boot guard: status, confirm, and the two the guard's units run.

Also install's `--confirm-within` parsing and the guard it would arm. Part of the command line (see `cli`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from .cli_common import (
    echo_lines,
    handle_errors,
    json_option,
    print_json,
    profile_argument,
    root_option,
    templates_option,
)
from .errors import KvmbridgeError


def guard_request(
    confirm_within: str | None, auto_confirm: bool, templates: Path | None
) -> tuple[int, str, bool] | None:
    """--confirm-within and --auto-confirm as (seconds, duration, auto), checked before anything is read."""
    from .errors import UsageError
    from .guard import parse_duration

    if confirm_within is None:
        if auto_confirm:
            raise UsageError("--auto-confirm: needs --confirm-within DURATION (the guard it would confirm)")
        return None
    seconds = parse_duration(confirm_within)
    if auto_confirm and templates is not None:
        raise UsageError(
            "--auto-confirm: cannot be combined with --templates (the check at boot renders the built-in templates)"
        )
    return seconds, confirm_within, auto_confirm


def guard_spec(target: Any, profile: Path, request: tuple[int, str, bool]) -> Any:
    """The guard's executable and profile copy, refused (exit 3) where it could not be trusted to run at boot."""
    from .guard import GuardSpec, refuse_unreadable
    from .guardtarget import choose_executable, refuse_untrusted
    from .profile import read_profile_text

    executable = choose_executable(target)
    refuse_untrusted(target, executable)
    seconds, duration, auto = request
    spec = GuardSpec(seconds, duration, auto, executable, profile.name, read_profile_text(profile))
    refuse_unreadable(spec)  # install checks it again; the dry run must refuse where install would
    return spec


@click.command()
@profile_argument
@click.option(
    "--root",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("/"),
    show_default=True,
    help="Where to read the installed files and the boot guard (the network checked is always this host's).",
)
@templates_option
@json_option
@handle_errors
def status(profile: Path, root: Path, templates: Path | None, as_json: bool) -> None:
    """Compare the running host with the profile: bridges, addresses, routes, sysctl, libvirt, files, guard."""
    from .livefacts import gather_facts
    from .livestatus import compare
    from .profile import load_profile
    from .render import render as render_files
    from .root import Root
    from .views import status_json, status_lines

    model = load_profile(profile)
    files = render_files(model, templates)
    target = Root(root)
    result = compare(model, files, gather_facts(model, files, target))
    guard, expired = guard_state(target)
    if as_json:
        print_json(status_json(profile, model, root, result, guard=guard, expired=expired))
    else:
        echo_lines(status_lines(profile, model, result, guard=guard, expired=expired))
    sys.exit(0 if result.as_profiled and not isinstance(guard, str) else 1)


def guard_state(target: Any) -> tuple[Any, Any]:
    """The armed guard (a record, None, or the line saying why its record is unusable) and the last expiry."""
    from .guard import read_expired, read_guard

    try:
        guard: Any = read_guard(target)
    except KvmbridgeError as exc:
        guard = exc.lines[0]
    return guard, read_expired(target)


@click.command()
@root_option
@json_option
@handle_errors
def confirm(root: Path, as_json: bool) -> None:
    """Disarm the boot guard of the last install (its backup set stays)."""
    from .guardrun import confirm as run_confirm
    from .root import Root
    from .views import confirm_json, confirm_lines

    done = run_confirm(Root(root))
    if as_json:
        print_json(confirm_json(done, root))
    else:
        echo_lines(confirm_lines(done, root))


@click.command(name="expire-guard", hidden=True)
@root_option
@handle_errors
def expire_guard(root: Path) -> None:
    """Run by kvmbridge-guard.service at the deadline: restore the guarded backup set (systemd then reboots)."""
    from .guardrun import expire
    from .root import Root

    report = expire(Root(root))
    click.echo(
        f"kvmbridge boot guard: {report.reason}: restored backup {report.backup} "
        f"({len(report.restored)} file(s) restored, {len(report.removed)} removed); rebooting into it"
    )
    click.echo(
        f"kvmbridge boot guard: undo the revert with: kvmbridge rollback {report.undo} "
        "(brings this install back without its guard)"
    )


@click.command(name="auto-confirm", hidden=True)
@root_option
@handle_errors
def auto_confirm_command(root: Path) -> None:
    """Run by kvmbridge-guard-check.service: confirm when status and the gateway pass, else leave the guard."""
    from .guardrun import auto_confirm
    from .root import Root

    record, check, attempts = auto_confirm(Root(root))
    if record is None or check is None:
        click.echo("kvmbridge boot guard: no guard armed; nothing to confirm")
        return
    if check.passed:
        click.echo(f"kvmbridge boot guard: the host came up as profiled; confirmed backup {record.backup} by itself")
        return
    for line in check.lines():
        click.echo(line, err=True)
    click.echo(
        f"kvmbridge boot guard: not confirmed after {attempts} check(s); "
        f"it reverts backup {record.backup} {record.duration} after boot",
        err=True,
    )
    sys.exit(1)
