"""The command line: the only module that prints, prompts or picks an exit code."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from . import __version__
from .errors import EXIT_INVALID, EXIT_OK, KvmbridgeError

F = TypeVar("F", bound=Callable[..., Any])

profile_argument = click.argument("profile", type=click.Path(path_type=Path, dir_okay=True))
templates_option = click.option(
    "--templates",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=None,
    help="Folder of templates that override the built-in ones by name.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")


def handle_errors(func: F) -> F:
    """Turn our typed errors into lines on stderr and the contract's exit code."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except KvmbridgeError as exc:
            if os.environ.get("KVMBRIDGE_DEBUG"):
                raise
            for line in exc.lines:
                click.echo(line, err=True)
            sys.exit(exc.exit_code)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kvmbridge")
def main() -> None:
    """Render, review and install the files that put a KVM host's VMs on the LAN (bridge mode)."""


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
@templates_option
@json_option
@handle_errors
def validate(profile: Path, templates: Path | None, as_json: bool) -> None:
    """Check the profile, render it, and check the output with ifupdown and libvirt's schema."""
    from .advice import profile_warnings
    from .errors import ProfileError
    from .profile import load_profile
    from .render import render as render_files
    from .verify import verify

    try:
        model = load_profile(profile)
    except ProfileError as exc:
        if not as_json:
            raise
        _print_json({"profile": str(profile), "valid": False, "errors": list(exc.lines), "warnings": []})
        sys.exit(exc.exit_code)
    files = render_files(model, templates)
    verdict = verify(files, ["lo", *model.bridges])
    warnings = [f"{profile}: {key}: {msg}" for key, msg in profile_warnings(model)]
    if as_json:
        _print_json(
            {
                "profile": str(profile),
                "valid": not verdict.errors,
                "errors": verdict.errors,
                "warnings": warnings,
                "checked": verdict.checked,
                "skipped": verdict.skipped,
            }
        )
    else:
        for line in verdict.errors:
            click.echo(f"{profile}: error: {line}", err=True)
        for line in warnings:
            click.echo(f"warning: {line}", err=True)
        for line in verdict.skipped:
            click.echo(f"note: not checked: {line}", err=True)
        if not verdict.errors:
            checked = ", ".join(["profile rules", *verdict.checked])
            click.echo(f"{profile}: valid ({len(files)} files; checked: {checked})")
    sys.exit(EXIT_INVALID if verdict.errors else EXIT_OK)


@main.command()
@templates_option
@handle_errors
def init(templates: Path | None) -> None:
    """Print a commented starter profile: the source article's setup."""
    from .starter import starter_profile

    click.echo(starter_profile(templates=templates), nl=False)


def _print_json(value: object) -> None:
    import json

    click.echo(json.dumps(value, indent=2, sort_keys=True))
