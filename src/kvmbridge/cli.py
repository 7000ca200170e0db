"""The command line: with `cli_common` and `cli_guard`, the only modules that print, prompt or pick an exit code."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from . import __version__
from .cli_common import (
    echo_lines,
    force_option,
    handle_errors,
    json_option,
    print_findings,
    print_json,
    print_safety,
    profile_argument,
    root_option,
    templates_option,
)
from .cli_guard import auto_confirm_command, confirm, expire_guard, guard_request, guard_spec, guard_state, status
from .errors import EXIT_INVALID, EXIT_OK, EXIT_REFUSED


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kvmbridge")
@click.option("--debug", is_flag=True, help="Show a traceback instead of one line per error.")
def main(debug: bool) -> None:
    """Render, review and install the files that put a KVM host's VMs on the LAN (bridge mode)."""
    if debug:
        os.environ["KVMBRIDGE_DEBUG"] = "1"


@main.command()
@profile_argument
@click.option(
    "-o", "--output", type=click.Path(path_type=Path, file_okay=False), help="Write the tree under this folder."
)
@templates_option
@handle_errors
def render(profile: Path, output: Path | None, templates: Path | None) -> None:
    """Print every generated file, or write them as a tree under -o DIR."""
    from .profile import load_profile
    from .render import render as render_files

    files = render_files(load_profile(profile), templates)
    if output is None:
        out = sys.stdout.buffer
        for i, f in enumerate(files):
            out.write(f"{chr(10) if i else ''}==> {f.relpath} <==\n".encode())
            out.write(f.data if f.data is not None else f"symbolic link to {f.link}\n".encode())
        out.flush()
        return
    from .tree import write_tree

    write_tree(files, output)
    click.echo(f"wrote {len(files)} files under {output}")


@main.command()
@profile_argument
@click.option(
    "--root",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Also run the safety checks against this target root (exit 3 on an error finding).",
)
@templates_option
@json_option
@handle_errors
def validate(profile: Path, root: Path | None, templates: Path | None, as_json: bool) -> None:
    """Check the profile, render it, and check the output with ifupdown and libvirt's schema."""
    from .errors import ProfileError
    from .preflight import run_preflight
    from .views import findings_json

    try:
        pf = run_preflight(profile, templates, root, plan=False)
    except ProfileError as exc:
        if not as_json:
            raise
        print_json({"profile": str(profile), "valid": False, "errors": list(exc.lines), "warnings": [], "findings": []})
        sys.exit(exc.exit_code)
    verdict, safety = pf.verdict, pf.safety
    if as_json:
        print_json(
            {
                "profile": str(profile),
                "valid": pf.valid,
                "errors": verdict.errors,
                "warnings": [f.line() for f in pf.rule_findings],
                "checked": verdict.checked,
                "skipped": verdict.skipped,
                **findings_json(pf.rule_findings, safety),
            }
        )
    else:
        for line in verdict.errors:
            click.echo(f"{profile}: error: {line}", err=True)
        print_findings(pf.rule_findings)
        for line in verdict.skipped:
            click.echo(f"note: not checked: {line}", err=True)
        if pf.valid:
            checked = ", ".join(["profile rules", *verdict.checked])
            click.echo(f"{profile}: valid ({len(pf.files)} files; checked: {checked})")
        print_safety(safety)
    if not pf.valid:
        sys.exit(EXIT_INVALID)
    sys.exit(EXIT_REFUSED if safety is not None and safety.errors else EXIT_OK)


@main.command()
@click.option("--from-host", is_flag=True, help="Bridge the NIC that carries this host's default route.")
@templates_option
@handle_errors
def init(from_host: bool, templates: Path | None) -> None:
    """Print a commented starter profile: the source article's setup, or this host's."""
    from .starter import starter_profile

    values = None
    if from_host:
        from .hostscan import scan_host

        values = scan_host()
    click.echo(starter_profile(values, templates), nl=False)
    for line in values.warnings if values is not None else ():
        click.echo(f"warning: {line}", err=True)


@main.command()
@profile_argument
@root_option
@templates_option
@json_option
@handle_errors
def diff(profile: Path, root: Path, templates: Path | None, as_json: bool) -> None:
    """Show what install would change under --root: unified diffs, then what they mean."""
    from .preflight import run_preflight
    from .views import change_json, diff_lines, findings_json

    pf = run_preflight(profile, templates, root)
    pf.require_valid()
    assert pf.plan is not None
    plan, safety = pf.plan, pf.safety
    unfinished = pf.pending.id if pf.pending is not None else None
    in_sync = plan.in_sync and unfinished is None  # a killed run's set is work install still has to do
    if as_json:
        changes = [change_json(c) for c in plan.changes]
        print_json(
            {
                **findings_json(pf.rule_findings, safety),
                "root": str(root),
                "in_sync": in_sync,
                "unfinished": unfinished,
                "changes": changes,
            }
        )
    else:
        echo_lines(diff_lines(plan, root, unfinished))
        print_findings(pf.rule_findings)
        print_safety(safety)
    sys.exit(0 if in_sync else 1)


@main.command()
@profile_argument
@root_option
@click.option("--dry-run", is_flag=True, help="Check and print the plan; write nothing.")
@force_option
@templates_option
@click.option(
    "--confirm-within",
    metavar="DURATION",
    default=None,
    help="Arm a boot guard: unless `kvmbridge confirm` runs within DURATION (45s, 10m, 1h) of the next boot, "
    "restore the old files and reboot.",
)
@click.option(
    "--auto-confirm", is_flag=True, help="With --confirm-within: confirm by itself when status and the gateway pass."
)
@json_option
@handle_errors
def install(  # noqa: PLR0917 (one parameter per click option)
    profile: Path,
    root: Path,
    dry_run: bool,
    force: bool,
    templates: Path | None,
    confirm_within: str | None,
    auto_confirm: bool,
    as_json: bool,
) -> None:
    """Back up, then write the files atomically for activation at the next boot."""
    from .errors import RefusedError
    from .guard import refuse_if_armed
    from .install import install as run_install
    from .install import refuse_unprivileged
    from .preflight import run_preflight
    from .views import guard_armed_lines, install_report, plan_lines, refused_json

    requested = guard_request(confirm_within, auto_confirm, templates)
    guards: list[Any] = []

    def gate(target: Any) -> None:
        refuse_unprivileged(target)
        refuse_if_armed(target)
        guards.append(guard_spec(target, profile, requested) if requested else None)

    try:
        pf = run_preflight(profile, templates, root, gate=gate)
    except RefusedError as exc:  # the gate's refusal: no plan yet, but --json still gets its document
        if as_json:
            print_json(refused_json(root, profile, dry_run, exc.lines))
        raise
    pf.require_valid()
    assert pf.target is not None and pf.plan is not None and pf.safety is not None
    target, safety, guard = pf.target, pf.safety, guards[0]
    refusal = pf.refusal(force)
    if as_json:  # the findings are in the document; a refusal is its line on stderr and exit 3 as ever
        _install_as_json(pf, refusal, guard, force=force, dry_run=dry_run)
        return
    print_findings(pf.rule_findings)
    print_safety(safety, notes=False)
    if refusal is not None:
        raise refusal
    unfinished = pf.pending.id if pf.pending is not None else None
    if dry_run:
        echo_lines(plan_lines(pf.plan, root, unfinished))
        click.echo(safety.summary())
        if guard is not None:
            click.echo(f"boot guard: would be armed ({guard.duration} after boot, runs {guard.executable})")
        click.echo("dry run: nothing was written")
        return
    result = run_install(pf.profile, pf.files, target, profile_path=profile, force=force, guard=guard)
    if result.manifest is None:
        click.echo(f"nothing to do: {root} already holds what {profile} renders")
        if guard is not None:
            click.echo("boot guard: not armed (nothing changed, nothing to guard)")
        return
    echo_lines(plan_lines(result.plan, root, unfinished, done=True))
    click.echo(safety.summary())
    echo_lines(install_report(result.plan, result.manifest.id, root, profile))
    if guard is not None:
        echo_lines(guard_armed_lines(guard, root))


def _install_as_json(pf: Any, refusal: Any, guard: Any, *, force: bool, dry_run: bool) -> None:
    """Every outcome, refusals included, prints one document before the exit code says the rest."""
    from .errors import RefusedError
    from .install import install as run_install
    from .views import install_json

    root, profile = pf.root, pf.profile_path
    unfinished = pf.pending.id if pf.pending is not None else None
    rules = pf.rule_findings
    report = install_json(
        pf.plan,
        pf.safety,
        root,
        profile,
        rules=rules,
        backup_id=None,
        guard=guard,
        dry_run=dry_run,
        unfinished=unfinished,
    )
    if refusal is not None or dry_run:
        print_json({**report, "refused": list(refusal.lines) if refusal is not None else []})
        if refusal is not None:
            raise refusal
        return
    try:
        result = run_install(pf.profile, pf.files, pf.target, profile_path=profile, force=force, guard=guard)
    except RefusedError as exc:  # refused under the lock (a race since the preflight): still a document
        print_json({**report, "refused": list(exc.lines)})
        raise
    backup_id = result.manifest.id if result.manifest is not None else None
    finished = unfinished if backup_id is not None else None
    print_json(
        install_json(
            result.plan,
            pf.safety,
            root,
            profile,
            rules=rules,
            backup_id=backup_id,
            guard=guard,
            unfinished=finished,
        )
    )


@main.command()
@click.argument("backup_id", required=False)
@root_option
@force_option
@handle_errors
def rollback(backup_id: str | None, root: Path, force: bool) -> None:
    """Restore backup set ID (default: the newest): old files back, new files removed."""
    from .install import rollback as run_rollback
    from .root import Root
    from .views import rollback_report

    chosen, undo = run_rollback(Root(root), backup_id, force=force)
    if undo is None:
        click.echo(f"nothing to do: {root} already matches the state before {chosen.id}")
        return
    echo_lines(rollback_report(chosen, undo, root))


@main.command()
@root_option
@handle_errors
def backups(root: Path) -> None:
    """List backup sets: ID, time, host, action, files."""
    from .root import Root
    from .state import list_backups, read_manifest
    from .views import backups_table

    target = Root(root)
    ids = list_backups(target)
    if not ids:
        click.echo(f"no backup sets under {target.path('/var/backups/kvmbridge')}")
        return
    guard, _ = guard_state(target)
    echo_lines(backups_table([read_manifest(target, backup_id) for backup_id in ids], guard))


@main.command()
@click.argument("profiles", nargs=-1, required=True)
@click.option(
    "--golden",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Folder of golden trees (DIR/<stem>/); default: each profile's own folder.",
)
@click.option("--update", is_flag=True, help="Rewrite the changed golden trees to match the render.")
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes (default: one per core once there are a few hundred profiles).",
)
@templates_option
@json_option
@handle_errors
def check(
    *,
    profiles: tuple[str, ...],
    golden: Path | None,
    update: bool,
    jobs: int | None,
    templates: Path | None,
    as_json: bool,
) -> None:
    """Render each profile and compare it with its reviewed golden tree (files, folders, globs)."""
    from .check import check_fleet, expand_profiles, update_goldens
    from .views import check_counts, check_json, check_lines

    results = check_fleet(expand_profiles(profiles), golden, templates, jobs)
    if update:
        update_goldens(results)
    if as_json:
        print_json(check_json(results, update))
    else:
        echo_lines(check_lines(results, update))
    counts = check_counts(results)
    if counts["invalid"]:
        sys.exit(EXIT_INVALID)
    sys.exit(1 if counts["changed"] and not update else 0)


for command in (status, confirm, expire_guard, auto_confirm_command):
    main.add_command(command)
